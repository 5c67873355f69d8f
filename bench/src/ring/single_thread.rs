//! The ring's code path without the cores: one thread publishes 1024 events (one per
//! publish, or in claims of 64), then reads them, and again. There is no cache line to
//! move between cores, so this measures the instructions of the publish and poll paths
//! alone, tickwire against the `disruptor` crate's producer and `EventPoller` (its
//! managed consumer threads cannot run on the publishing thread). Steadier than the
//! threaded scenarios on a busy machine; not a substitute for them.

use std::hint::black_box;
use std::time::{Duration, Instant};

use disruptor::{BusySpin, Producer, build_single_producer};
use tickwire_engine::event::Event;
use tickwire_engine::ring::RingBuilder;

use super::RING;
use super::harness::expected_sum;

/// Events published between two polls.
const ROUND: u64 = 1024;

/// Publishes and polls `events` events on tickwire's ring, `batch` per claim (1: one per
/// `publish`). Returns the time taken.
///
/// # Panics
///
/// If the subscriber did not see every event.
#[inline(never)]
pub fn tickwire(events: u64, batch: usize) -> Duration {
    let mut builder = RingBuilder::<Event>::new(RING).unwrap_or_else(|e| panic!("{e}"));
    let mut subscriber = builder.subscriber("same-thread");
    let mut publisher = builder.build().unwrap_or_else(|e| panic!("{e}"));
    let (mut count, mut sum) = (0u64, 0u64);
    let start = Instant::now();
    let mut i = 0;
    while i < events {
        let round_end = (i + ROUND).min(events);
        while i < round_end {
            if batch <= 1 {
                let value = i;
                if let Err(e) = publisher.try_publish(|e| e.exchange_ts = value) {
                    panic!("single-thread tickwire publish {i}: {e}");
                }
                i += 1;
            } else {
                let n = (batch as u64).min(round_end - i) as usize;
                let mut claim = match publisher.try_claim(n) {
                    Ok(claim) => claim,
                    Err(e) => panic!("single-thread tickwire claim {i}: {e}"),
                };
                let (first, second) = claim.as_mut_slices();
                for (k, slot) in first.iter_mut().chain(second).enumerate() {
                    slot.exchange_ts = i + k as u64;
                }
                claim.commit();
                i += n as u64;
            }
        }
        subscriber.poll(|e, _, _| {
            count += 1;
            sum = sum.wrapping_add(e.exchange_ts);
        });
    }
    let elapsed = start.elapsed();
    check("tickwire", black_box(count), sum, events);
    elapsed
}

/// As [`tickwire`], on the `disruptor` crate (`publish` / `batch_publish`, `EventPoller`).
///
/// # Panics
///
/// If the poller did not see every event.
#[inline(never)]
pub fn disruptor(events: u64, batch: usize) -> Duration {
    let (mut poller, builder) =
        build_single_producer(RING, super::PeerEvent::default, BusySpin).new_event_poller();
    let mut producer = builder.build();
    let (mut count, mut sum) = (0u64, 0u64);
    let start = Instant::now();
    let mut i = 0;
    while i < events {
        let round_end = (i + ROUND).min(events);
        while i < round_end {
            if batch <= 1 {
                let value = i;
                if producer.try_publish(|e| e.seq = value).is_err() {
                    panic!("single-thread disruptor publish {i}: full");
                }
                i += 1;
            } else {
                let n = (batch as u64).min(round_end - i) as usize;
                let base = i;
                let published = producer.try_batch_publish(n, |slots| {
                    for (k, e) in slots.enumerate() {
                        e.seq = base + k as u64;
                    }
                });
                if published.is_err() {
                    panic!("single-thread disruptor batch at {i}: full");
                }
                i += n as u64;
            }
        }
        if let Ok(mut guard) = poller.poll() {
            for e in &mut guard {
                count += 1;
                sum = sum.wrapping_add(e.seq);
            }
        }
    }
    let elapsed = start.elapsed();
    check("disruptor", black_box(count), sum, events);
    elapsed
}

fn check(what: &str, count: u64, sum: u64, events: u64) {
    assert!(
        count == events && sum == expected_sum(events),
        "single-thread {what}: saw {count} events with sum {sum}, expected {events} and {}",
        expected_sum(events)
    );
}
