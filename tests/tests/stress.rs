//! Stress: 10M events through a diamond followed by a pipeline, every consumer checking
//! order and a checksum of every event it saw against what the writer published.
//!
//! ```text
//!            ┌─► a ─┐
//! writer ────┤      ├─► c ──► d
//!            └─► b ─┘
//! ```
//!
//! Five threads on a two-core machine: consumers use yielding or blocking idle strategies
//! (busy-spin would starve the thread being waited on). Every wait is bounded.

use std::sync::mpsc;
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tickwire_engine::agent::{Handler, HandlerAgent, Layout, ThreadSpec};
use tickwire_engine::event::{Event, Trade};
use tickwire_engine::idle::IdleStrategy;
use tickwire_engine::ring::RingBuilder;

const EVENTS: u64 = 10_000_000;
const TIMEOUT: Duration = Duration::from_secs(300);

fn event_for(sequence: u64) -> Event {
    let mut e = Event::new(1, (sequence % 97) as u32, sequence * 3, sequence * 7);
    e.set_trade(Trade {
        price: sequence as i64,
        size: sequence ^ 0x5555,
        trade_id: sequence,
        seq: sequence,
        ..Trade::default()
    });
    e
}

/// Checks order, that every upstream consumer finished each event before this one sees it,
/// and accumulates a checksum; reports `(name, count, checksum)` when shut down.
struct Verifier {
    next: u64,
    progress: Arc<AtomicU64>,
    upstream: Vec<Arc<AtomicU64>>,
    checksum: u64,
    report: mpsc::Sender<(String, u64, u64)>,
    name: String,
}

impl Handler<Event> for Verifier {
    fn on_event(&mut self, event: &Event, sequence: u64, _end_of_batch: bool) {
        assert_eq!(sequence, self.next, "{}: out of order", self.name);
        assert_eq!(
            event.trade().map(|t| t.trade_id),
            Some(sequence),
            "{}: wrong event",
            self.name
        );
        for up in &self.upstream {
            // Relaxed suffices: the ring's barrier (Release by upstream at the end of its
            // batch, Acquire here) orders upstream's store before this load.
            let done = up.load(Ordering::Relaxed);
            assert!(
                done > sequence,
                "{} saw {sequence} before upstream finished it ({done})",
                self.name
            );
        }
        self.progress.store(sequence + 1, Ordering::Relaxed);
        self.checksum = self.checksum.wrapping_add(event.checksum());
        self.next += 1;
    }

    fn on_shutdown(&mut self) {
        let _ = self
            .report
            .send((self.name.clone(), self.next, self.checksum));
    }
}

fn verifier(
    name: &str,
    upstream: &[&Verifier],
    report: &mpsc::Sender<(String, u64, u64)>,
) -> Verifier {
    Verifier {
        next: 0,
        progress: Arc::new(AtomicU64::new(0)),
        upstream: upstream.iter().map(|v| Arc::clone(&v.progress)).collect(),
        checksum: 0,
        report: report.clone(),
        name: name.to_owned(),
    }
}

#[test]
fn ten_million_events_through_a_diamond_and_a_pipeline() {
    let mut ring = RingBuilder::<Event>::new(4096).expect("power of two");
    let a = ring.subscriber("a");
    let b = ring.subscriber("b");
    let c = ring.subscriber_after("c", &[&a, &b]);
    let d = ring.subscriber_after("d", &[&c]);
    let mut publisher = ring.build().expect("has subscribers");
    let (tx, rx) = mpsc::channel();
    let va = verifier("a", &[], &tx);
    let vb = verifier("b", &[], &tx);
    let vc = verifier("c", &[&va, &vb], &tx);
    let vd = verifier("d", &[&vc], &tx);
    let pipeline = Layout::new()
        .thread(
            ThreadSpec::new("a")
                .idle(IdleStrategy::YIELDING)
                .agent(HandlerAgent::new(a, va)),
        )
        .thread(
            ThreadSpec::new("b")
                .idle(IdleStrategy::BACKOFF)
                .agent(HandlerAgent::new(b, vb)),
        )
        .thread(
            ThreadSpec::new("c")
                .idle(IdleStrategy::YIELDING)
                .agent(HandlerAgent::new(c, vc)),
        )
        .thread(
            ThreadSpec::new("d")
                .idle(IdleStrategy::BLOCKING)
                .agent(HandlerAgent::new(d, vd)),
        )
        .spawn()
        .expect("valid layout");
    drop(tx);

    let mut expected = 0u64;
    let mut sequence = 0u64;
    while sequence < EVENTS {
        // Alternate single publishes and batch claims, so both paths are stressed.
        if sequence % 1024 < 512 {
            publisher
                .publish(|slot| *slot = event_for(sequence))
                .expect("ring not halted");
            expected = expected.wrapping_add(event_for(sequence).checksum());
            sequence += 1;
        } else {
            let n = 64.min((EVENTS - sequence) as usize);
            let mut claim = publisher.claim(n).expect("ring not halted");
            for i in 0..n {
                let e = event_for(sequence + i as u64);
                *claim.slot_mut(i) = e;
                expected = expected.wrapping_add(e.checksum());
            }
            claim.commit();
            sequence += n as u64;
        }
    }
    drop(publisher);
    pipeline
        .join_timeout(TIMEOUT)
        .expect("every consumer drained and stopped");

    let mut reports: Vec<(String, u64, u64)> = rx.iter().collect();
    reports.sort();
    assert_eq!(reports.len(), 4, "every consumer reported: {reports:?}");
    for (name, count, checksum) in reports {
        assert_eq!(count, EVENTS, "{name} saw every event");
        assert_eq!(checksum, expected, "{name} saw the same bytes");
    }
}
