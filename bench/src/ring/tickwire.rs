//! The scenarios on tickwire's own ring, run the way the engine runs them: the publisher on
//! a thread of its own, each subscriber as a [`HandlerAgent`] on a [`Layout`] thread with an
//! [`IdleStrategy`] (so parking strategies are woken by the writer, as in production).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use tickwire_engine::agent::{HandlerAgent, Layout, ThreadSpec};
use tickwire_engine::event::Event;
use tickwire_engine::idle::IdleStrategy;
use tickwire_engine::ring::{Publisher, RingBuilder, Subscriber};

use super::Topology;
use super::harness::{BoundedSpin, Pinning, RUN_TIMEOUT, Tally, Watchdog, collect, join, spawn};

/// Publishes `events` events (payload `0..events` in `exchange_ts`) through a ring of
/// `capacity` slots to the subscribers of `topology`, which idle with `idle`; one event per
/// `publish` when `batch == 1`, else `claim(batch)` + `commit`. The writer waits for room
/// as `writer_idle` matches to `idle`. `threads` maps the subscribers to threads: one
/// each, or all as agents of **one** thread (the runner polls each in turn), so the
/// scenario takes two threads whatever its topology and the 1P-3C, pipeline and diamond
/// scenarios run pinned on 2 cores instead of oversubscribed; each subscriber keeps its own
/// sequence and barrier either way. Returns the time from the first publish to the last
/// consumer's last event.
///
/// # Panics
///
/// If a consumer misses an event, or the run hangs (see `harness`).
pub fn run(
    events: u64,
    capacity: usize,
    idle: IdleStrategy,
    batch: usize,
    topology: Topology,
    threads: ConsumerThreads,
) -> Duration {
    let writer = writer_idle(idle);
    run_with_writer(events, capacity, idle, writer, batch, topology, threads)
}

/// How the writer of a run whose subscribers idle with `idle` waits for room: a spinning
/// consumer is matched by a spinning writer; otherwise the engine's default, which never
/// takes the core its subscribers need.
fn writer_idle(idle: IdleStrategy) -> IdleStrategy {
    if matches!(
        idle,
        IdleStrategy::BusySpin | IdleStrategy::NoOp | IdleStrategy::SpinBatching { .. }
    ) {
        IdleStrategy::BusySpin
    } else {
        IdleStrategy::WRITER_DEFAULT
    }
}

/// How the subscribers of a run map to threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerThreads {
    /// A thread per subscriber.
    Each,
    /// All subscribers as agents of one thread.
    One,
}

/// As [`run`], with the writer waiting for room by `writer_idle`.
///
/// # Panics
///
/// If a consumer misses an event, or the run hangs (see `harness`).
pub fn run_with_writer(
    events: u64,
    capacity: usize,
    idle: IdleStrategy,
    writer_idle: IdleStrategy,
    batch: usize,
    topology: Topology,
    threads: ConsumerThreads,
) -> Duration {
    let scenario = format!(
        "tickwire {topology:?} {idle} (writer {writer_idle}) ring {capacity} batch {batch} {threads:?}"
    );
    let _watchdog = Watchdog::arm(scenario.clone());
    let consumer_threads = match threads {
        ConsumerThreads::Each => topology.consumers(),
        ConsumerThreads::One => 1,
    };
    let pinning = Pinning::for_threads(1 + consumer_threads);
    let mut ring =
        RingBuilder::<Event>::new(capacity).unwrap_or_else(|e| panic!("{scenario}: {e}"));
    let subscribers: Vec<Subscriber<Event>> = match topology {
        Topology::Unicast => vec![ring.subscriber("consumer")],
        Topology::Multicast3 => (0..3).map(|_| ring.subscriber("reader")).collect(),
        Topology::Pipeline3 => {
            let a = ring.subscriber("stage-a");
            let b = ring.subscriber_after("stage-b", &[&a]);
            let c = ring.subscriber_after("stage-c", &[&b]);
            vec![a, b, c]
        }
        Topology::Diamond => {
            let a = ring.subscriber("left");
            let b = ring.subscriber("right");
            let c = ring.subscriber_after("join", &[&a, &b]);
            vec![a, b, c]
        }
    };
    let mut publisher = ring.build().unwrap_or_else(|e| panic!("{scenario}: {e}"));
    publisher.set_idle_strategy(writer_idle);

    let (tx, rx) = mpsc::channel();
    let consumers = subscribers.len();
    let agents = subscribers.into_iter().map(|subscriber| {
        let mut tally = Tally::new("tickwire subscriber", events, tx.clone());
        HandlerAgent::new(subscriber, move |e: &Event, _: u64, _: bool| {
            tally.add(e.exchange_ts);
        })
    });
    let layout = match threads {
        ConsumerThreads::Each => agents
            .enumerate()
            .fold(Layout::new(), |layout, (i, agent)| {
                layout.thread(
                    ThreadSpec::new(format!("tw-sub-{i}"))
                        .core(pinning.core(1 + i))
                        .idle(idle)
                        .agent(agent),
                )
            }),
        ConsumerThreads::One => {
            let thread = ThreadSpec::new("tw-subs").core(pinning.core(1)).idle(idle);
            Layout::new().thread(agents.fold(thread, ThreadSpec::agent))
        }
    };
    drop(tx);
    let pipeline = layout.spawn().unwrap_or_else(|e| panic!("{scenario}: {e}"));

    let producer = spawn("tw-publisher", move || {
        pinning.pin_current(0);
        let start = Instant::now();
        produce(&mut publisher, events, batch);
        // Dropping the publisher closes the ring: the subscribers drain and stop.
        drop(publisher);
        start
    });
    let start = join(producer);
    let end = collect(&scenario, &rx, consumers, events, start + RUN_TIMEOUT);
    pipeline
        .join_timeout(RUN_TIMEOUT)
        .unwrap_or_else(|e| panic!("{scenario}: {e}"));
    end - start
}

fn produce(publisher: &mut Publisher<Event>, events: u64, batch: usize) {
    if batch <= 1 {
        for i in 0..events {
            if let Err(e) = publisher.publish(|e| e.exchange_ts = i) {
                panic!("tickwire publish {i}: {e}");
            }
        }
        return;
    }
    let mut i = 0;
    while i < events {
        let n = (batch as u64).min(events - i) as usize;
        let mut claim = match publisher.claim(n) {
            Ok(claim) => claim,
            Err(e) => panic!("tickwire claim at {i}: {e}"),
        };
        let (first, second) = claim.as_mut_slices();
        for (k, slot) in first.iter_mut().chain(second).enumerate() {
            slot.exchange_ts = i + k as u64;
        }
        claim.commit();
        i += n as u64;
    }
}

/// 1P-1C as [`run`], but the subscriber is polled by a plain busy-spin loop on its own
/// thread instead of a [`HandlerAgent`] on the agent runner: the difference between the two
/// is the runner's cost.
///
/// # Panics
///
/// If the consumer misses an event, or the run hangs (see `harness`).
pub fn run_poll_loop(events: u64, capacity: usize, batch: usize) -> Duration {
    let scenario = format!("tickwire poll loop ring {capacity} batch {batch}");
    let _watchdog = Watchdog::arm(scenario.clone());
    let pinning = Pinning::for_threads(2);
    let mut ring =
        RingBuilder::<Event>::new(capacity).unwrap_or_else(|e| panic!("{scenario}: {e}"));
    let mut subscriber = ring.subscriber("consumer");
    let mut publisher = ring.build().unwrap_or_else(|e| panic!("{scenario}: {e}"));
    publisher.set_idle_strategy(IdleStrategy::BusySpin);
    let (tx, rx) = mpsc::channel();
    let consumer_pinning = pinning.clone();
    let consumer = spawn("tw-poll-loop", move || {
        consumer_pinning.pin_current(1);
        let mut tally = Tally::new("tickwire poll loop", events, tx);
        let mut spin = BoundedSpin::new("tickwire poll loop waiting for events");
        while !tally.is_complete() {
            if subscriber.poll(|e, _, _| tally.add(e.exchange_ts)) == 0 {
                if subscriber.is_finished() {
                    break;
                }
                spin.idle(false);
            }
        }
    });
    let producer = spawn("tw-publisher", move || {
        pinning.pin_current(0);
        let start = Instant::now();
        produce(&mut publisher, events, batch);
        drop(publisher);
        start
    });
    let start = join(producer);
    let end = collect(&scenario, &rx, 1, events, start + RUN_TIMEOUT);
    join(consumer);
    end - start
}
