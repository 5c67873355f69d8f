//! What makes a replay deterministic across threads: stages advance over the market-data
//! ring in **lockstep**, and each drains its inputs from other rings only at fixed points.
//!
//! The market-data ring orders the stages: strategies read an event first, the execution
//! agent after every strategy (`subscriber_after`), the notifier after the execution agent.
//! That ring barrier is one direction. The other direction is a [`Progress`] counter each
//! stage publishes (market-data events it has completely finished, including everything it
//! wrote for them):
//!
//! * a strategy handles event `s` only when the execution agent has finished every event
//!   before `s` — so every execution report caused by those events is in the execution
//!   ring, and the strategy handles them all before `s`;
//! * the execution agent handles event `s` only when the notifier has finished every event
//!   before `s` — so when the notifier handles `s`, the execution ring holds exactly the
//!   reports for events up to `s`.
//!
//! For event `s` the execution agent applies it to its book, lets resting orders fill,
//! then takes each strategy's orders (ring by ring, in strategy order): those are exactly
//! the orders the strategies sent while handling `s`, because no strategy can be past `s`.
//! Thus the order, execution-report and notification sequences depend only on the input,
//! never on thread timing. The price is that these stages advance one event at a time
//! relative to each other; on one thread (the 2-core layout) that costs a few loads per
//! event.

use std::sync::Arc;

use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU64, Ordering};

/// A stage's progress over the market-data ring: the count of events it has finished.
/// Written by one stage, read by another; cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<CachePadded<AtomicU64>>);

impl Progress {
    /// A counter at 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes that every event below `count` is finished, with everything written for
    /// them.
    #[inline]
    pub fn set(&self, count: u64) {
        // Release pairs with the Acquire in `get`: a reader that sees `count` also sees the
        // events this stage published into its own ring before (execution reports).
        self.0.store(count, Ordering::Release);
    }

    /// Events finished by the stage.
    #[inline]
    pub fn get(&self) -> u64 {
        // Acquire pairs with the Release in `set`.
        self.0.load(Ordering::Acquire)
    }
}

/// Events a stage wrote but could not publish yet (its ring was full): kept in order and
/// published before anything else, so a stage never blocks its thread on a full ring (it
/// may share the thread with the ring's readers). Preallocated; grows only if one market
/// event produces more than its capacity.
#[derive(Debug)]
pub struct Outbox {
    pending: std::collections::VecDeque<tickwire_engine::event::Event>,
}

impl Outbox {
    /// An outbox with room for `capacity` events before it grows.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            pending: std::collections::VecDeque::with_capacity(capacity),
        }
    }

    /// Queues an event.
    #[inline]
    pub fn push(&mut self, event: tickwire_engine::event::Event) {
        self.pending.push_back(event);
    }

    /// Whether nothing is pending.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Publishes what fits; returns whether everything is out. A halted ring drops the
    /// rest (its reader is gone; the pipeline reports that reader's failure).
    pub fn flush(
        &mut self,
        publisher: &mut tickwire_engine::ring::Publisher<tickwire_engine::event::Event>,
    ) -> bool {
        use tickwire_engine::ring::ClaimError;
        while !self.pending.is_empty() {
            match publisher.try_claim_up_to(self.pending.len()) {
                Ok(mut claim) => {
                    let n = claim.len();
                    for i in 0..n {
                        if let Some(e) = self.pending.pop_front() {
                            *claim.slot_mut(i) = e;
                        }
                    }
                    claim.commit();
                }
                Err(ClaimError::Halted | ClaimError::TooLarge) => self.pending.clear(),
                Err(ClaimError::Full { .. }) => return false,
            }
        }
        true
    }
}

/// FNV-1a step: folds `value` into the running digest `hash`, order-sensitively.
#[inline]
pub fn fold(hash: u64, value: u64) -> u64 {
    (hash ^ value).wrapping_mul(0x0100_0000_01b3)
}

/// The FNV-1a offset basis: the digest of an empty sequence.
pub const DIGEST_START: u64 = 0xcbf2_9ce4_8422_2325;

/// An event's digest without its wall-clock fields (the header's `receive_ts` of orders,
/// reports and notifications, and an order's `trigger_ts`), which differ run to run: what
/// the determinism checks compare.
#[inline]
pub fn digest(event: &tickwire_engine::event::Event) -> u64 {
    let mut e = *event;
    e.receive_ts = 0;
    if let Some(order) = event.order() {
        let mut o = *order;
        o.trigger_ts = 0;
        e.set_order(o);
    }
    e.checksum()
}
