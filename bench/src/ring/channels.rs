//! The scenarios on queue and broadcast peers, which move events by value:
//! `crossbeam-channel` and `rtrb` (1P-1C), `bus` and `tokio::sync::broadcast` (1P-3C).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use super::PeerEvent;
use super::harness::{BoundedSpin, Pinning, RUN_TIMEOUT, Tally, Watchdog, collect, join, spawn};

/// 1P-1C through `crossbeam_channel::bounded(capacity)`, blocking `send` and `recv` (the
/// crate's own spin-then-park waiting).
///
/// # Panics
///
/// If the consumer misses an event, or the run hangs (see `harness`).
pub fn crossbeam_unicast(events: u64, capacity: usize) -> Duration {
    let scenario = format!("crossbeam bounded({capacity})");
    let _watchdog = Watchdog::arm(scenario.clone());
    let pinning = Pinning::for_threads(2);
    let (tx, rx) = mpsc::channel();
    let (sender, receiver) = crossbeam_channel::bounded::<PeerEvent>(capacity);
    let consumer_pinning = pinning.clone();
    let consumer = spawn("crossbeam-consumer", move || {
        consumer_pinning.pin_current(1);
        let mut tally = Tally::new("crossbeam receiver", events, tx);
        while !tally.is_complete() {
            // `recv` returns an error once the sender is gone (the producer finished or
            // panicked), so this wait is bounded by the producer's.
            match receiver.recv() {
                Ok(e) => tally.add(e.seq),
                Err(_) => break,
            }
        }
    });
    let producer = spawn("crossbeam-producer", move || {
        pinning.pin_current(0);
        let start = Instant::now();
        for i in 0..events {
            if sender.send(PeerEvent::new(i)).is_err() {
                panic!("crossbeam: receiver gone at {i}");
            }
        }
        start
    });
    let start = join(producer);
    let end = collect(&scenario, &rx, 1, events, start + RUN_TIMEOUT);
    join(consumer);
    end - start
}

/// 1P-1C through `rtrb::RingBuffer::new(capacity)`, both sides busy-spinning: `push` one
/// event at a time when `batch == 1`, else `write_chunk_uninit(batch)`. The consumer reads
/// everything available as one `read_chunk`.
///
/// # Panics
///
/// If the consumer misses an event, or the run hangs (see `harness`).
pub fn rtrb_unicast(events: u64, capacity: usize, batch: usize) -> Duration {
    let scenario = format!("rtrb {capacity} batch {batch}");
    let _watchdog = Watchdog::arm(scenario.clone());
    let pinning = Pinning::for_threads(2);
    let (tx, rx) = mpsc::channel();
    let (mut producer, mut consumer) = rtrb::RingBuffer::<PeerEvent>::new(capacity);
    let consumer_pinning = pinning.clone();
    let consumer_thread = spawn("rtrb-consumer", move || {
        consumer_pinning.pin_current(1);
        let mut tally = Tally::new("rtrb consumer", events, tx);
        let mut spin = BoundedSpin::new("rtrb consumer waiting for events");
        while !tally.is_complete() {
            let n = consumer.slots();
            if n == 0 {
                if consumer.is_abandoned() && consumer.is_empty() {
                    break;
                }
                spin.idle(false);
                continue;
            }
            let Ok(chunk) = consumer.read_chunk(n) else {
                unreachable!("`slots` said {n} are readable");
            };
            let (a, b) = chunk.as_slices();
            for e in a.iter().chain(b) {
                tally.add(e.seq);
            }
            chunk.commit_all();
        }
    });
    let producer_thread = spawn("rtrb-producer", move || {
        pinning.pin_current(0);
        let mut spin = BoundedSpin::new("rtrb producer waiting for room");
        let start = Instant::now();
        let mut i = 0;
        while i < events {
            if batch <= 1 {
                match producer.push(PeerEvent::new(i)) {
                    Ok(()) => i += 1,
                    Err(_) => spin.idle(false),
                }
            } else {
                let n = (batch as u64).min(events - i) as usize;
                match producer.write_chunk_uninit(n) {
                    Ok(chunk) => {
                        let base = i;
                        chunk.fill_from_iter((0..n as u64).map(|k| PeerEvent::new(base + k)));
                        i += n as u64;
                    }
                    Err(_) => spin.idle(false),
                }
            }
            if producer.is_abandoned() {
                panic!("rtrb: consumer gone at {i}");
            }
        }
        start
    });
    let start = join(producer_thread);
    let end = collect(&scenario, &rx, 1, events, start + RUN_TIMEOUT);
    join(consumer_thread);
    end - start
}

/// 1P-3C through `bus::Bus::new(capacity)`: blocking `broadcast` and `recv` (the crate's
/// spin-then-park waiting, with its helper thread that unparks readers).
///
/// # Panics
///
/// If a reader misses an event, or the run hangs (see `harness`).
pub fn bus_multicast(events: u64, capacity: usize) -> Duration {
    let scenario = format!("bus {capacity}");
    let _watchdog = Watchdog::arm(scenario.clone());
    let (tx, rx) = mpsc::channel();
    let mut bus = bus::Bus::<PeerEvent>::new(capacity);
    let readers: Vec<_> = (0..3)
        .map(|i| {
            let mut reader = bus.add_rx();
            let tx = tx.clone();
            spawn(&format!("bus-reader-{i}"), move || {
                let mut tally = Tally::new("bus reader", events, tx);
                while !tally.is_complete() {
                    // Errors once the bus is dropped (the producer finished or panicked).
                    match reader.recv() {
                        Ok(e) => tally.add(e.seq),
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    drop(tx);
    let producer = spawn("bus-producer", move || {
        let start = Instant::now();
        for i in 0..events {
            bus.broadcast(PeerEvent::new(i));
        }
        start
    });
    let start = join(producer);
    let end = collect(&scenario, &rx, 3, events, start + RUN_TIMEOUT);
    readers.into_iter().for_each(join);
    end - start
}

/// 1P-3C through `tokio::sync::broadcast::channel(capacity)`, readers on std threads with
/// `blocking_recv`.
///
/// `broadcast` never blocks the sender: a reader more than `capacity` behind loses events.
/// So that every reader sees every event (as with the other peers), the producer is gated
/// like a Disruptor writer: each reader publishes its count, and the producer waits
/// (yielding) while the slowest is `capacity` behind, reading the counts only when its
/// cached minimum says it may have to.
///
/// # Panics
///
/// If a reader misses an event, or the run hangs (see `harness`).
pub fn tokio_multicast(events: u64, capacity: usize) -> Duration {
    let scenario = format!("tokio broadcast {capacity}");
    let _watchdog = Watchdog::arm(scenario.clone());
    let (tx, rx) = mpsc::channel();
    let (sender, first) = tokio::sync::broadcast::channel::<PeerEvent>(capacity);
    let mut receivers = vec![first, sender.subscribe(), sender.subscribe()];
    let progress: Arc<Vec<CachePadded<AtomicU64>>> = Arc::new(
        (0..3)
            .map(|_| CachePadded::new(AtomicU64::new(0)))
            .collect(),
    );
    let readers: Vec<_> = receivers
        .drain(..)
        .enumerate()
        .map(|(i, mut receiver)| {
            let tx = tx.clone();
            let progress = Arc::clone(&progress);
            spawn(&format!("tokio-reader-{i}"), move || {
                let mut tally = Tally::new("tokio broadcast reader", events, tx);
                let mut received = 0u64;
                while !tally.is_complete() {
                    // Errors once the sender is dropped (the producer finished or panicked),
                    // or if the reader lagged (then the tally comes up short and says so).
                    match receiver.blocking_recv() {
                        Ok(e) => {
                            tally.add(e.seq);
                            received += 1;
                            // Relaxed: flow control only; the channel's own locks order the
                            // data, and a stale count only makes the producer wait longer.
                            progress[i].store(received, Ordering::Relaxed);
                        }
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    drop(tx);
    let producer = spawn("tokio-producer", move || {
        let capacity = capacity as u64;
        let min_progress = || {
            progress
                .iter()
                .map(|p| p.load(Ordering::Relaxed))
                .min()
                .unwrap_or(0)
        };
        let mut gate = 0u64;
        let mut spin = BoundedSpin::new("tokio broadcast producer waiting for readers");
        let start = Instant::now();
        for i in 0..events {
            while i >= gate + capacity {
                gate = min_progress();
                if i >= gate + capacity {
                    spin.idle(true);
                }
            }
            if sender.send(PeerEvent::new(i)).is_err() {
                panic!("tokio broadcast: every reader gone at {i}");
            }
        }
        start
    });
    let start = join(producer);
    let end = collect(&scenario, &rx, 3, events, start + RUN_TIMEOUT);
    readers.into_iter().for_each(join);
    end - start
}
