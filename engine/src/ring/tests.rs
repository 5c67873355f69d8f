use super::*;

fn ring(capacity: usize) -> RingBuilder<u64> {
    RingBuilder::new(capacity).expect("power of two")
}

#[test]
fn capacity_must_be_a_power_of_two() {
    assert_eq!(
        RingBuilder::<u64>::new(0).err(),
        Some(RingError::Capacity(0))
    );
    assert_eq!(
        RingBuilder::<u64>::new(12).err(),
        Some(RingError::Capacity(12))
    );
    assert_eq!(ring(4).build().err(), Some(RingError::NoSubscribers));
    // More than any machine has: an error, not an abort.
    assert!(matches!(
        RingBuilder::<u64>::new(1 << 62).err(),
        Some(RingError::Allocation { capacity, .. }) if capacity == 1 << 62
    ));
}

#[test]
fn wraps_around_many_times_in_order() {
    let mut b = ring(4);
    let mut sub = b.subscriber("s");
    let mut publisher = b.build().expect("subscribed");
    let mut expected = 0u64;
    for round in 0..1000u64 {
        for i in 0..3 {
            publisher
                .try_publish(|slot| *slot = round * 3 + i)
                .expect("room");
        }
        sub.poll(|v, seq, _| {
            assert_eq!((*v, seq), (expected, expected));
            expected += 1;
        });
    }
    assert_eq!(expected, 3000);
}

#[test]
fn writer_never_overwrites_a_slot_a_gating_subscriber_holds() {
    let mut b = ring(4);
    let mut slow = b.subscriber("slow");
    let mut fast = b.subscriber("fast");
    let mut publisher = b.build().expect("subscribed");
    for v in 0..4 {
        publisher.try_publish(|slot| *slot = v).expect("room");
    }
    fast.poll(|_, _, _| {});
    // `slow` still holds sequence 0: the ring is full for the writer.
    assert_eq!(
        publisher.try_publish(|slot| *slot = 99),
        Err(ClaimError::Full { free: 0 })
    );
    assert!(matches!(
        publisher.try_claim(1),
        Err(ClaimError::Full { .. })
    ));
    // Reading one frees exactly one slot.
    assert_eq!(slow.poll_up_to(1, |v, _, _| assert_eq!(*v, 0)), 1);
    assert_eq!(publisher.try_publish(|slot| *slot = 4), Ok(4));
    assert!(publisher.try_publish(|slot| *slot = 5).is_err());
    let mut seen = Vec::new();
    slow.poll(|v, _, _| seen.push(*v));
    assert_eq!(seen, [1, 2, 3, 4]);
}

#[test]
fn downstream_never_sees_what_upstream_has_not_finished() {
    let mut b = ring(8);
    let mut a = b.subscriber("a");
    let mut c = b.subscriber("c");
    let mut d = b.subscriber_after("d", &[&a, &c]);
    let mut publisher = b.build().expect("subscribed");
    for v in 0..6 {
        publisher.try_publish(|slot| *slot = v).expect("room");
    }
    assert_eq!(d.poll(|_, _, _| {}), 0, "nothing finished upstream yet");
    assert_eq!(a.poll_up_to(4, |_, _, _| {}), 4);
    assert_eq!(d.poll(|_, _, _| {}), 0, "c has finished nothing");
    assert_eq!(c.poll_up_to(2, |_, _, _| {}), 2);
    assert_eq!(d.available(), 2, "the slower upstream bounds the barrier");
    let mut seen = Vec::new();
    d.poll(|v, _, _| seen.push(*v));
    assert_eq!(seen, [0, 1]);
    // The writer is gated by `d` alone now (a and c are depended on), and d is at 2.
    for v in 6..10 {
        publisher
            .try_publish(|slot| *slot = v)
            .expect("room up to d + 8");
    }
    assert!(publisher.try_publish(|slot| *slot = 10).is_err());
}

#[test]
fn batches_end_where_the_available_events_end() {
    let mut b = ring(16);
    let mut sub = b.subscriber("s");
    let mut publisher = b.build().expect("subscribed");
    let mut claim = publisher.try_claim(5).expect("room");
    for i in 0..5 {
        *claim.slot_mut(i) = i as u64;
    }
    claim.commit();
    let mut ends = Vec::new();
    assert_eq!(sub.poll_up_to(3, |_, seq, end| ends.push((seq, end))), 3);
    assert_eq!(sub.poll(|_, seq, end| ends.push((seq, end))), 2);
    assert_eq!(
        ends,
        [(0, false), (1, false), (2, true), (3, false), (4, true)]
    );
}

#[test]
fn claims_and_batches_that_wrap_the_ring_split_in_two_runs() {
    let mut b = ring(8);
    let mut sub = b.subscriber("s");
    let mut publisher = b.build().expect("subscribed");
    for v in 0..6 {
        publisher.try_publish(|slot| *slot = v).expect("room");
    }
    assert_eq!(sub.poll(|_, _, _| {}), 6);
    // Sequences 6..13 sit in slots 6, 7, then 0..5.
    let mut claim = publisher.try_claim(7).expect("room");
    let (first, second) = claim.as_mut_slices();
    assert_eq!((first.len(), second.len()), (2, 5));
    for (k, slot) in first.iter_mut().chain(second).enumerate() {
        *slot = 100 + k as u64;
    }
    claim.commit();
    let mut seen = Vec::new();
    assert_eq!(sub.poll(|v, seq, end| seen.push((*v, seq, end))), 7);
    let expected: Vec<_> = (0..7u64).map(|k| (100 + k, 6 + k, k == 6)).collect();
    assert_eq!(
        seen, expected,
        "in order across the wrap, end of batch on the last"
    );
    let mut claim = publisher.try_claim(3).expect("room");
    let (first, second) = claim.as_mut_slices();
    assert_eq!((first.len(), second.len()), (3, 0), "no wrap: one slice");
}

#[test]
fn uncommitted_claims_publish_nothing_and_partial_commits_publish_a_prefix() {
    let mut b = ring(8);
    let mut sub = b.subscriber("s");
    let mut publisher = b.build().expect("subscribed");
    {
        let mut claim = publisher.try_claim(3).expect("room");
        *claim.slot_mut(0) = 7;
    } // dropped without commit
    assert_eq!(sub.available(), 0);
    let mut claim = publisher.try_claim_up_to(100).expect("room");
    assert_eq!(claim.len(), 8, "capped at what is free");
    *claim.slot_mut(0) = 1;
    *claim.slot_mut(1) = 2;
    claim.commit_first(2);
    let mut seen = Vec::new();
    sub.poll(|v, _, _| seen.push(*v));
    assert_eq!(seen, [1, 2]);
    assert_eq!(publisher.published(), 2);
    assert_eq!(publisher.try_claim(9).err(), Some(ClaimError::TooLarge));
}

#[test]
fn peek_and_advance_read_one_at_a_time() {
    let mut b = ring(4);
    let mut sub = b.subscriber("s");
    let mut publisher = b.build().expect("subscribed");
    assert!(sub.peek().is_none());
    publisher.try_publish(|slot| *slot = 42).expect("room");
    assert_eq!(sub.peek(), Some(&42));
    sub.advance();
    assert!(sub.peek().is_none());
    assert_eq!(sub.sequence(), 1);
}

#[test]
fn dropping_the_writer_lets_subscribers_drain_then_finish() {
    let mut b = ring(8);
    let mut sub = b.subscriber("s");
    let mut publisher = b.build().expect("subscribed");
    publisher.try_publish(|slot| *slot = 1).expect("room");
    drop(publisher);
    assert!(!sub.is_drained(), "one event still to read");
    assert_eq!(sub.poll(|_, _, _| {}), 1);
    assert!(sub.is_drained() && sub.is_finished());
}

#[test]
fn dropping_a_subscriber_mid_stream_halts_the_writer_instead_of_hanging_it() {
    let mut b = ring(2);
    let sub = b.subscriber("s");
    let mut publisher = b.build().expect("subscribed");
    publisher.try_publish(|slot| *slot = 1).expect("room");
    drop(sub);
    publisher.try_publish(|slot| *slot = 2).expect("room");
    assert_eq!(publisher.publish(|slot| *slot = 3), Err(ClaimError::Halted));
    assert!(publisher.is_halted());
}

#[test]
fn blocking_publish_waits_for_a_subscriber_on_another_thread() {
    let mut b = ring(8);
    let mut sub = b.subscriber("s");
    let mut publisher = b.build().expect("subscribed");
    const N: u64 = 100_000;
    let reader = std::thread::spawn(move || {
        let mut expected = 0u64;
        let mut idler = crate::idle::Idler::new(crate::idle::IdleStrategy::YIELDING);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while expected < N {
            let n = sub.poll(|v, _, _| {
                assert_eq!(*v, expected);
                expected += 1;
            });
            if n == 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "reader timed out at {expected}"
                );
                idler.idle_standalone();
            } else {
                idler.reset();
            }
        }
        expected
    });
    for v in 0..N {
        publisher.publish(|slot| *slot = v).expect("not halted");
    }
    assert_eq!(reader.join().expect("reader ok"), N);
}

#[test]
fn a_parked_downstream_subscriber_wakes_on_upstream_progress_not_its_timeout() {
    use crate::agent::{HandlerAgent, Layout, ThreadSpec};
    use crate::idle::IdleStrategy;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    // Parks that only a wake-up ends within the test: the safety-net timeout is far longer.
    let blocking = IdleStrategy::Blocking {
        timeout: Duration::from_secs(60),
    };
    let mut b = ring(4);
    let upstream = b.subscriber("upstream");
    let downstream = b.subscriber_after("downstream", &[&upstream]);
    let mut publisher = b.build().expect("subscribed");
    let seen = Arc::new(AtomicU64::new(0));
    let seen_by_handler = Arc::clone(&seen);
    let pipeline = Layout::new()
        .thread(
            ThreadSpec::new("upstream")
                .idle(blocking)
                .agent(HandlerAgent::new(upstream, |_: &u64, _, _| {
                    // Slow enough that `downstream` parks before `upstream` finishes.
                    std::thread::sleep(Duration::from_millis(5));
                })),
        )
        .thread(
            ThreadSpec::new("downstream")
                .idle(blocking)
                .agent(HandlerAgent::new(downstream, move |_: &u64, _, _| {
                    seen_by_handler.fetch_add(1, Ordering::Relaxed);
                })),
        )
        .spawn()
        .expect("valid layout");
    // Let both threads park on the empty ring, then fill it and publish nothing more: only
    // `upstream`'s progress can wake `downstream` now.
    std::thread::sleep(Duration::from_millis(50));
    for v in 0..4 {
        publisher.try_publish(|slot| *slot = v).expect("room");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.load(Ordering::Relaxed) < 4 {
        assert!(
            Instant::now() < deadline,
            "downstream saw {} of 4 events: it was not woken by upstream's progress",
            seen.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(publisher);
    pipeline
        .join_timeout(Duration::from_secs(20))
        .expect("pipeline drains");
}

#[test]
fn a_monitor_sees_the_cursor_and_each_subscribers_lag() {
    let mut ring = RingBuilder::<u64>::new(8).expect("power of two");
    let mut fast = ring.subscriber("fast");
    let _slow = ring.subscriber_after("slow", &[&fast]);
    let monitor = ring.monitor("md");
    let mut publisher = ring.build().expect("has subscribers");
    for i in 0..5 {
        publisher.publish(|slot| *slot = i).expect("room");
    }
    assert_eq!(fast.poll_up_to(3, |_, _, _| {}), 3);
    assert_eq!(monitor.name(), "md");
    assert_eq!(monitor.published(), 5);
    let lags: Vec<_> = monitor.lags().collect();
    assert_eq!(lags, vec![("fast", 2), ("slow", 5)]);
}
