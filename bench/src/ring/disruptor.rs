//! The scenarios on the `disruptor` crate (4.x): its single producer and its managed
//! consumer threads, with the same ring size and the wait strategy named by the case.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use disruptor::wait_strategies::WaitStrategy;
use disruptor::{ProcessorSettings, Producer, Sequence, build_single_producer};

use super::harness::{Pinning, RUN_TIMEOUT, Tally, Watchdog, collect, join, spawn};
use super::{PeerEvent, Topology};

/// As [`super::tickwire::run`], on the `disruptor` crate with wait strategy `wait` (named
/// `wait_name` in messages): one event per `publish`, or `batch_publish(batch)`.
///
/// # Panics
///
/// If a consumer misses an event, or the run hangs (see `harness`).
pub fn run<W: WaitStrategy + 'static>(
    events: u64,
    capacity: usize,
    wait: W,
    wait_name: &str,
    batch: usize,
    topology: Topology,
) -> Duration {
    let scenario = format!("disruptor {topology:?} {wait_name} ring {capacity} batch {batch}");
    let _watchdog = Watchdog::arm(scenario.clone());
    let pinning = Pinning::for_threads(1 + topology.consumers());
    let (tx, rx) = mpsc::channel();
    let handler = |tx: &mpsc::Sender<_>| {
        let mut tally = Tally::new("disruptor handler", events, tx.clone());
        move |e: &PeerEvent, _: Sequence, _: bool| tally.add(e.seq)
    };
    let builder = build_single_producer(capacity, PeerEvent::default, wait);
    // The consumer threads start here, inside `build`.
    let producer_thread = match topology {
        Topology::Unicast => {
            let builder = match pinning.core(1) {
                Some(core) => builder.pin_at_core(core),
                None => builder,
            };
            let producer = builder.handle_events_with(handler(&tx)).build();
            start_producer(producer, pinning, events, batch)
        }
        Topology::Multicast3 => {
            let producer = builder
                .handle_events_with(handler(&tx))
                .handle_events_with(handler(&tx))
                .handle_events_with(handler(&tx))
                .build();
            start_producer(producer, pinning, events, batch)
        }
        Topology::Pipeline3 => {
            let producer = builder
                .handle_events_with(handler(&tx))
                .and_then()
                .handle_events_with(handler(&tx))
                .and_then()
                .handle_events_with(handler(&tx))
                .build();
            start_producer(producer, pinning, events, batch)
        }
        Topology::Diamond => {
            let producer = builder
                .handle_events_with(handler(&tx))
                .handle_events_with(handler(&tx))
                .and_then()
                .handle_events_with(handler(&tx))
                .build();
            start_producer(producer, pinning, events, batch)
        }
    };
    drop(tx);
    let start = join(producer_thread);
    let end = collect(
        &scenario,
        &rx,
        topology.consumers(),
        events,
        start + RUN_TIMEOUT,
    );
    end - start
}

fn start_producer<P: Producer<PeerEvent> + Send + 'static>(
    mut producer: P,
    pinning: Pinning,
    events: u64,
    batch: usize,
) -> std::thread::JoinHandle<Instant> {
    spawn("disruptor-producer", move || {
        pinning.pin_current(0);
        let start = Instant::now();
        if batch <= 1 {
            for i in 0..events {
                producer.publish(|e| e.seq = i);
            }
        } else {
            let mut i = 0;
            while i < events {
                let n = (batch as u64).min(events - i) as usize;
                producer.batch_publish(n, |slots| {
                    for (k, e) in slots.enumerate() {
                        e.seq = i + k as u64;
                    }
                });
                i += n as u64;
            }
        }
        // Dropping the producer lets the consumers finish and joins their threads.
        drop(producer);
        start
    })
}
