//! loom models of the ring's protocol: claim, publish, gating, dependency barriers.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p tickwire-engine --test loom --release`.
//! loom explores every interleaving of the threads' atomic operations (under the C11 memory
//! model, including the weak orderings) and checks every slot access against the
//! happens-before order the atomics establish: a write to a slot that a subscriber may still
//! be reading, or a read of a slot the writer has not published, fails the model.
//!
//! **Preemption bound: 3** (`PREEMPTIONS`). loom's own guidance is that bounds of 2-3 find
//! nearly all bugs while keeping the search finite. Every model wraps its ring at least once,
//! so the writer must wait for (gate on) the subscribers: two-thread models use 2 slots and
//! 3-4 events; three-thread models use 1 slot and 2 events, which wraps as well and keeps
//! the search to seconds (with 2 slots and 3 events it ran for over 10 minutes).
#![cfg(loom)]

use loom::thread;
use tickwire_engine::ring::{ClaimError, RingBuilder};

const PREEMPTIONS: usize = 3;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(PREEMPTIONS);
    // Waiting loops (`yield_now` while full or empty) add branches on every turn; loom's
    // default cap of 1,000 is too low for three threads waiting on each other.
    builder.max_branches = 50_000;
    builder.check(f);
}

/// Publishes `values` one by one, yielding while the ring is full.
fn publish_all(publisher: &mut tickwire_engine::ring::Publisher<u64>, values: &[u64]) {
    for &v in values {
        loop {
            match publisher.try_publish(|slot| *slot = v) {
                Ok(_) => break,
                Err(ClaimError::Full { .. }) => thread::yield_now(),
                Err(e) => panic!("unexpected {e}"),
            }
        }
    }
}

/// Reads `n` values in order, yielding while nothing is available.
fn read_n(subscriber: &mut tickwire_engine::ring::Subscriber<u64>, n: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    while seen.len() < n {
        if subscriber.poll(|v, _, _| seen.push(*v)) == 0 {
            thread::yield_now();
        }
    }
    seen
}

#[test]
fn one_writer_one_reader_wrapping_a_two_slot_ring() {
    model(|| {
        let mut ring = RingBuilder::<u64>::new(2).expect("power of two");
        let mut reader = ring.subscriber("reader");
        let mut publisher = ring.build().expect("has a subscriber");
        let writer = thread::spawn(move || publish_all(&mut publisher, &[1, 2, 3]));
        assert_eq!(read_n(&mut reader, 3), [1, 2, 3]);
        writer.join().expect("writer");
    });
}

#[test]
fn batch_claims_publish_all_or_nothing() {
    model(|| {
        let mut ring = RingBuilder::<u64>::new(2).expect("power of two");
        let mut reader = ring.subscriber("reader");
        let mut publisher = ring.build().expect("has a subscriber");
        let writer = thread::spawn(move || {
            for base in [10, 20] {
                loop {
                    match publisher.try_claim(2) {
                        Ok(mut claim) => {
                            *claim.slot_mut(0) = base;
                            *claim.slot_mut(1) = base + 1;
                            claim.commit();
                            break;
                        }
                        Err(ClaimError::Full { .. }) => thread::yield_now(),
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
            }
        });
        let seen = read_n(&mut reader, 4);
        assert_eq!(seen, [10, 11, 20, 21]);
        writer.join().expect("writer");
    });
}

#[test]
fn pipeline_writer_is_gated_by_the_downstream_subscriber() {
    model(|| {
        let mut ring = RingBuilder::<u64>::new(2).expect("power of two");
        let mut first = ring.subscriber("first");
        let mut second = ring.subscriber_after("second", &[&first]);
        let mut publisher = ring.build().expect("has subscribers");
        let writer = thread::spawn(move || publish_all(&mut publisher, &[1, 2, 3]));
        // Both subscribers on this thread, `first` one event at a time: `second` must see
        // each event only after `first` finished it, and the writer (gated by `second`
        // alone) must never overwrite a slot `second` is about to read; loom flags that
        // as a concurrent access to the slot.
        let (mut upstream, mut downstream) = (Vec::new(), Vec::new());
        while downstream.len() < 3 {
            let a = first.poll_up_to(1, |v, _, _| upstream.push(*v));
            let b = second.poll(|v, _, _| downstream.push(*v));
            assert!(
                downstream.len() <= upstream.len(),
                "downstream passed upstream"
            );
            if a + b == 0 {
                thread::yield_now();
            }
        }
        assert_eq!((upstream, downstream), (vec![1, 2, 3], vec![1, 2, 3]));
        writer.join().expect("writer");
    });
}

#[test]
fn two_readers_gate_the_writer_independently() {
    model(|| {
        let mut ring = RingBuilder::<u64>::new(2).expect("power of two");
        let mut a = ring.subscriber("a");
        let mut b = ring.subscriber("b");
        let mut publisher = ring.build().expect("has subscribers");
        let writer = thread::spawn(move || publish_all(&mut publisher, &[1, 2, 3]));
        // `a` reads eagerly, `b` lags one event behind: the writer must wait for `b` too.
        let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
        while seen_b.len() < 3 {
            let n = a.poll(|v, _, _| seen_a.push(*v));
            let m = if seen_a.len() > seen_b.len() + 1 || seen_a.len() == 3 {
                b.poll_up_to(1, |v, _, _| seen_b.push(*v))
            } else {
                0
            };
            if n + m == 0 {
                thread::yield_now();
            }
        }
        assert_eq!((seen_a, seen_b), (vec![1, 2, 3], vec![1, 2, 3]));
        writer.join().expect("writer");
    });
}

#[test]
fn closing_lets_the_reader_drain_then_finish() {
    model(|| {
        let mut ring = RingBuilder::<u64>::new(2).expect("power of two");
        let mut reader = ring.subscriber("reader");
        let mut publisher = ring.build().expect("has a subscriber");
        let writer = thread::spawn(move || {
            publish_all(&mut publisher, &[7, 8]);
            drop(publisher);
        });
        let mut seen = Vec::new();
        while !reader.is_drained() {
            if reader.poll(|v, _, _| seen.push(*v)) == 0 {
                thread::yield_now();
            }
        }
        assert_eq!(seen, [7, 8], "drained means everything published was read");
        writer.join().expect("writer");
    });
}
