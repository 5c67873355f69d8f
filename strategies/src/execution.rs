//! The execution agent: the single writer of the execution ring. It reads every
//! strategy's order ring, runs the pre-trade risk checks, hands what passes to the
//! [`Venue`], keeps positions and PnL from the fills, and publishes every execution report.
//!
//! For each market-data event (after every strategy has handled it, see
//! [`crate::lockstep`]) it applies the event to its market state, lets the venue fill
//! resting orders against it, then processes the orders the strategies sent for that event,
//! ring by ring. Reports are published before the event counts as finished.

use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;
use tickwire_engine::agent::{Agent, AgentContext, AgentError};
use tickwire_engine::clock::wall_ns;
use tickwire_engine::event::{Event, ExecStatus, OrderType, Side};
use tickwire_engine::latency::LatencyRecorder;
use tickwire_engine::ring::{Publisher, Subscriber};

use crate::lockstep::{DIGEST_START, Outbox, Progress, digest, fold};
use crate::market::{EventClock, MarketState};
use crate::position::Position;
use crate::risk::{Exposure, RejectReason, RiskChecker};
use crate::venue::{Venue, VenueReport, reject};

/// What the execution agent did, read after the pipeline ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionSummary {
    /// New orders received (limit and IOC).
    pub orders: u64,
    /// Cancels received.
    pub cancels: u64,
    /// Fill reports.
    pub fills: u64,
    /// Quantity filled, 10⁻⁸ units.
    pub filled_qty: u64,
    /// Execution reports published.
    pub reports: u64,
    /// Rejects by reason, in code order, only reasons that occurred.
    pub rejects: Vec<(RejectReason, u64)>,
    /// Position per (strategy id, instrument), sorted.
    pub positions: Vec<((u32, u32), Position)>,
    /// Last mid per instrument (10⁻⁹; 0 if none), to mark positions.
    pub marks: Vec<i64>,
    /// Orders still resting at the venue at the end.
    pub resting: usize,
    /// Digest of every order received, in processing order (wall-clock fields excluded).
    pub order_digest: u64,
    /// Digest of every execution report published, in order.
    pub report_digest: u64,
}

impl ExecutionSummary {
    /// Orders rejected for `reason`.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejects
            .iter()
            .filter(|(r, _)| *r == reason)
            .map(|(_, n)| n)
            .sum()
    }
}

#[derive(Debug, Clone, Copy)]
struct Live {
    instrument: u32,
    side: Side,
    leaves: u64,
}

/// Latency recorders of the execution agent's hops.
#[derive(Debug, Default)]
pub struct ExecutionLatency {
    /// Order written -> order read here (`decision->execution`).
    pub decision_to_execution: Option<LatencyRecorder>,
    /// Trigger's receive time -> order read here (`tick->order`).
    pub tick_to_order: Option<LatencyRecorder>,
    /// Trigger's receive time -> report published (`tick->report`).
    pub tick_to_report: Option<LatencyRecorder>,
}

/// Everything but the rings: the part the order and market handlers borrow.
struct Core<V> {
    venue: V,
    risk: RiskChecker,
    market: MarketState,
    clock: EventClock,
    live: FxHashMap<(u32, u64), Live>,
    /// Open quantity per instrument, [buy, sell].
    open: Vec<[u64; 2]>,
    /// Net position per instrument, all strategies.
    net: Vec<i64>,
    positions: FxHashMap<(u32, u32), Position>,
    reports: Vec<VenueReport>,
    outbox: Outbox,
    summary: ExecutionSummary,
    rejects: [u64; 256],
    latency: ExecutionLatency,
}

impl<V: Venue> Core<V> {
    fn grow(&mut self, instrument: u32) {
        let n = instrument as usize + 1;
        if self.open.len() < n {
            self.open.resize(n, [0, 0]);
            self.net.resize(n, 0);
        }
    }

    fn handle_order(&mut self, event: &Event) {
        let Some(order) = event.order() else {
            return;
        };
        let now = wall_ns();
        if let Some(r) = self.latency.decision_to_execution.as_mut() {
            r.record_at(now.saturating_sub(event.receive_ts), now);
        }
        if let Some(r) = self.latency.tick_to_order.as_mut() {
            r.record_at(now.saturating_sub(order.trigger_ts), now);
        }
        self.summary.order_digest = fold(self.summary.order_digest, digest(event));
        let instrument = event.instrument;
        self.grow(instrument);
        if order.order_type == OrderType::Cancel as u8 {
            self.summary.cancels += 1;
            self.venue.cancel(instrument, order, &mut self.reports);
        } else {
            self.summary.orders += 1;
            let key = (order.strategy, order.order_id);
            let result = if self.live.contains_key(&key) {
                Err(RejectReason::DuplicateOrderId)
            } else {
                let i = instrument as usize;
                let exposure = Exposure {
                    mid: self.market.mid(instrument),
                    position: self.net[i],
                    open_buy: self.open[i][0],
                    open_sell: self.open[i][1],
                };
                self.risk.check(order, &exposure, self.clock.now())
            };
            match result {
                Ok(()) => {
                    let side = Side::from_code(order.side);
                    self.live.insert(
                        key,
                        Live {
                            instrument,
                            side,
                            leaves: order.size,
                        },
                    );
                    self.open[instrument as usize][side_index(side)] += order.size;
                    self.venue
                        .submit(instrument, order, &self.market, &mut self.reports);
                }
                Err(reason) => self.reports.push(VenueReport {
                    instrument,
                    report: reject(order, reason),
                }),
            }
        }
        self.publish_reports(order.trigger_ts, now);
    }

    /// Books the venue's reports (live orders, exposure, positions) and queues them.
    fn publish_reports(&mut self, tick_ts: u64, now: u64) {
        let mut reports = std::mem::take(&mut self.reports);
        for VenueReport { instrument, report } in reports.drain(..) {
            self.grow(instrument);
            let key = (report.strategy, report.order_id);
            let status = ExecStatus::from_code(report.status);
            if report.filled > 0 {
                let side = Side::from_code(report.side);
                self.summary.fills += 1;
                self.summary.filled_qty += report.filled;
                self.positions
                    .entry(key_position(report.strategy, instrument))
                    .or_default()
                    .apply_fill(side, report.price, report.filled);
                let signed = report.filled.min(i64::MAX as u64) as i64;
                self.net[instrument as usize] += if side == Side::Bid { signed } else { -signed };
            }
            if let Some(live) = self.live.get_mut(&key) {
                let slot = &mut self.open[live.instrument as usize][side_index(live.side)];
                let done = matches!(status, Some(ExecStatus::Filled | ExecStatus::Cancelled))
                    || (status == Some(ExecStatus::Rejected)
                        && report.reason != RejectReason::UnknownOrder.code());
                let leaves_now = if done { 0 } else { report.leaves };
                *slot = slot.saturating_sub(live.leaves.saturating_sub(leaves_now));
                live.leaves = leaves_now;
                if done {
                    self.live.remove(&key);
                }
            }
            if status == Some(ExecStatus::Rejected) {
                self.rejects[report.reason as usize] += 1;
            }
            let mut event = Event::new(0, instrument, self.clock.now(), now);
            event.set_execution_report(report);
            self.summary.reports += 1;
            self.summary.report_digest = fold(self.summary.report_digest, digest(&event));
            self.outbox.push(event);
            if let Some(r) = self.latency.tick_to_report.as_mut() {
                r.record_at(now.saturating_sub(tick_ts), now);
            }
        }
        self.reports = reports;
    }

    fn handle_market(&mut self, event: &Event) {
        self.clock.observe(event);
        self.market.apply(event);
        if event.trade().is_some() || event.quote().is_some() || event.book_delta().is_some() {
            self.venue.on_market(event, &self.market, &mut self.reports);
            if !self.reports.is_empty() {
                self.publish_reports(event.receive_ts, wall_ns());
            }
        }
    }
}

fn side_index(side: Side) -> usize {
    usize::from(side != Side::Bid)
}

fn key_position(strategy: u32, instrument: u32) -> (u32, u32) {
    (strategy, instrument)
}

/// The execution agent (see the module docs).
pub struct ExecutionAgent<V> {
    md: Subscriber<Event>,
    orders: Vec<Subscriber<Event>>,
    publisher: Option<Publisher<Event>>,
    core: Core<V>,
    progress: Progress,
    /// The notifier's progress (lockstep), if there is one.
    wait_for: Option<Progress>,
    /// A market event handled whose reports are not all published yet.
    pending_advance: bool,
    /// At the end of the stream: the order ring being drained.
    final_ring: usize,
    result: Arc<Mutex<Option<ExecutionSummary>>>,
    done: bool,
}

impl<V> std::fmt::Debug for ExecutionAgent<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionAgent")
            .field("orders", &self.orders.len())
            .finish()
    }
}

const MAX_BATCH: usize = 256;

impl<V: Venue> ExecutionAgent<V> {
    /// An agent reading `md` (a subscriber after every strategy) and the strategies'
    /// order rings, writing `publisher` (the execution ring), trading on `venue` after
    /// `risk`. `progress` is published for the strategies; `wait_for` is the notifier's.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        md: Subscriber<Event>,
        orders: Vec<Subscriber<Event>>,
        publisher: Publisher<Event>,
        venue: V,
        risk: RiskChecker,
        progress: Progress,
        wait_for: Option<Progress>,
        latency: ExecutionLatency,
    ) -> Self {
        Self {
            md,
            orders,
            publisher: Some(publisher),
            core: Core {
                venue,
                risk,
                market: MarketState::default(),
                clock: EventClock::default(),
                live: FxHashMap::default(),
                open: Vec::new(),
                net: Vec::new(),
                positions: FxHashMap::default(),
                reports: Vec::with_capacity(256),
                outbox: Outbox::with_capacity(1024),
                summary: ExecutionSummary {
                    order_digest: DIGEST_START,
                    report_digest: DIGEST_START,
                    ..ExecutionSummary::default()
                },
                rejects: [0; 256],
                latency,
            },
            progress,
            wait_for,
            pending_advance: false,
            final_ring: 0,
            result: Arc::new(Mutex::new(None)),
            done: false,
        }
    }

    /// Where the summary appears when the agent closes.
    pub fn summary_slot(&self) -> Arc<Mutex<Option<ExecutionSummary>>> {
        Arc::clone(&self.result)
    }

    fn flush(&mut self) -> bool {
        match self.publisher.as_mut() {
            Some(p) => self.core.outbox.flush(p),
            None => true,
        }
    }

    fn summary(&self) -> ExecutionSummary {
        let core = &self.core;
        let mut s = core.summary.clone();
        s.rejects = RejectReason::ALL
            .into_iter()
            .filter(|r| core.rejects[r.code() as usize] > 0)
            .map(|r| (r, core.rejects[r.code() as usize]))
            .collect();
        s.positions = core.positions.iter().map(|(k, p)| (*k, *p)).collect();
        s.positions.sort_by_key(|(k, _)| *k);
        s.marks = (0..core.net.len() as u32)
            .map(|i| core.market.mid(i).unwrap_or(0))
            .collect();
        s.resting = core.venue.resting();
        s
    }
}

impl<V: Venue> Agent for ExecutionAgent<V> {
    fn name(&self) -> &str {
        "execution"
    }

    fn on_start(&mut self, ctx: &mut AgentContext) -> Result<(), AgentError> {
        ctx.wake_on(&self.md);
        for o in &self.orders {
            ctx.wake_on(o);
        }
        Ok(())
    }

    fn do_work(&mut self) -> usize {
        if self.done {
            return 0;
        }
        let mut work = 0;
        if !self.flush() {
            return 0;
        }
        if self.pending_advance {
            self.pending_advance = false;
            self.md.advance();
            self.progress.set(self.md.sequence());
            work += 1;
        }
        for _ in 0..MAX_BATCH {
            let next = self.md.sequence();
            if self.wait_for.as_ref().is_some_and(|p| p.get() < next) {
                break;
            }
            let Some(event) = self.md.peek().copied() else {
                break;
            };
            self.core.handle_market(&event);
            // Every strategy has finished this event (the ring barrier) and none can start
            // the next before our progress says so: the orders in the rings are exactly
            // this event's.
            for ring in &mut self.orders {
                let core = &mut self.core;
                ring.poll(|e, _, _| core.handle_order(e));
            }
            work += 1;
            if !self.flush() {
                self.pending_advance = true;
                return work;
            }
            self.md.advance();
            self.progress.set(self.md.sequence());
        }
        if self.md.is_finished() {
            // The strategies' last orders (from `on_stop`), ring by ring.
            while self.final_ring < self.orders.len() {
                let ring = &mut self.orders[self.final_ring];
                let core = &mut self.core;
                work += ring.poll(|e, _, _| core.handle_order(e));
                if ring.is_finished() {
                    self.final_ring += 1;
                } else {
                    break;
                }
            }
            if !self.flush() {
                return work;
            }
            if self.final_ring == self.orders.len() {
                *self.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.summary());
                self.done = true;
                // Closing the execution ring lets its readers finish.
                self.publisher = None;
                work += 1;
            }
        }
        work
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn on_close(&mut self) -> Result<(), AgentError> {
        let l = &mut self.core.latency;
        for r in [
            &mut l.decision_to_execution,
            &mut l.tick_to_order,
            &mut l.tick_to_report,
        ]
        .into_iter()
        .flatten()
        {
            r.flush();
        }
        self.publisher = None;
        Ok(())
    }
}
