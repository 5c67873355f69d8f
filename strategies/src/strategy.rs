//! The Strategy API: the [`Strategy`] trait a quant developer implements, the [`Context`]
//! it trades through, and the [`StrategyAgent`] that runs it on a pipeline thread.
//!
//! A strategy sees the market-data ring's events in order (quotes, trades, book deltas),
//! its own execution reports, and its timers. Timers run on **event time** (the exchange
//! timestamp, or the receive timestamp where the exchange sent none; see
//! [`EventClock`]): a timer set for `t` fires before the first event at or after `t`, so a
//! replay fires the same timers at the same points however fast it runs.
//!
//! Orders are written straight into the strategy's own order ring (its single writer), so
//! submitting allocates nothing: [`Context::buy`] claims a slot, writes the order and
//! publishes it. Errors are small `Copy` values ([`SubmitError`]).
//!
//! See the crate docs for a complete example strategy.

use tickwire_engine::clock::wall_ns;
use tickwire_engine::event::{
    BookDelta, Event, ExecStatus, ExecutionReport, Order, OrderType, Quote, Side, Trade,
};
use tickwire_engine::instrument::InstrumentRegistry;
use tickwire_engine::latency::LatencyRecorder;
use tickwire_engine::ring::{ClaimError, Publisher, Subscriber};
use tickwire_feeds::book::OrderBook;

use tickwire_engine::agent::{Agent, AgentContext, AgentError};

use crate::lockstep::Progress;
use crate::market::{EventClock, MarketState};
use crate::position::Position;

/// A strategy's id: its index in the pipeline's strategy list (sorted by name).
pub type StrategyId = u32;
/// A client order id, unique per strategy (the context numbers them from 1).
pub type OrderId = u64;
/// A timer's id, chosen by the strategy.
pub type TimerId = u64;

/// Why an order or a timer could not be placed. Small and `Copy`: the hot path's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The order ring is full (more orders on one event than its capacity).
    #[error("order ring full")]
    RingFull,
    /// The order ring's reader is gone (the pipeline is shutting down after a failure).
    #[error("order ring halted")]
    Halted,
    /// The strategy has as many open orders as the context tracks.
    #[error("too many open orders")]
    TooManyOpenOrders,
    /// A cancel for an order that is not open (or already being cancelled).
    #[error("order not open")]
    NotOpen,
    /// As many timers are pending as the context holds.
    #[error("too many timers")]
    TooManyTimers,
    /// Orders may not be sent from `on_stop` once the order ring is closed.
    #[error("strategy stopped")]
    Stopped,
}

/// An order the strategy has sent and that is not finished (filled, cancelled, rejected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOrder {
    /// Client order id.
    pub order_id: OrderId,
    /// Instrument id.
    pub instrument: u32,
    /// Buy (`Bid`) or sell (`Ask`).
    pub side: Side,
    /// Limit or IOC.
    pub order_type: OrderType,
    /// Limit price, 10⁻⁹ units.
    pub price: i64,
    /// Quantity still open, 10⁻⁸ units.
    pub leaves: u64,
    /// Whether a cancel was sent for it.
    pub cancel_sent: bool,
}

/// Most open orders the context tracks per strategy (fixed so submitting never
/// allocates).
pub const MAX_OPEN_ORDERS: usize = 256;
/// Most pending timers per strategy.
pub const MAX_TIMERS: usize = 256;

/// A strategy's state that the context exposes: market, positions, open orders, timers.
#[derive(Debug)]
pub struct StrategyState {
    id: StrategyId,
    market: MarketState,
    positions: Vec<Position>,
    open: Vec<OpenOrder>,
    /// Pending timers, sorted by time, latest first (so the next is popped from the end).
    timers: Vec<(u64, TimerId)>,
    clock: EventClock,
    next_order_id: OrderId,
    /// Receive time (ns) of the event being handled: the orders' `trigger_ts`.
    trigger_ts: u64,
    instruments: InstrumentRegistry,
    orders_sent: u64,
    decision: Option<LatencyRecorder>,
}

impl StrategyState {
    /// State for strategy `id` trading the instruments of `instruments`.
    pub fn new(id: StrategyId, instruments: InstrumentRegistry) -> Self {
        let n = instruments.len().max(1);
        Self {
            id,
            market: MarketState::with_instruments(n),
            positions: vec![Position::default(); n],
            open: Vec::with_capacity(MAX_OPEN_ORDERS),
            timers: Vec::with_capacity(MAX_TIMERS),
            clock: EventClock::default(),
            next_order_id: 1,
            trigger_ts: 0,
            instruments,
            orders_sent: 0,
            decision: None,
        }
    }

    /// Records tick-to-decision latency (receive time of the trigger to the order) here.
    pub fn with_decision_latency(mut self, recorder: LatencyRecorder) -> Self {
        self.decision = Some(recorder);
        self
    }

    /// The market state.
    pub fn market(&self) -> &MarketState {
        &self.market
    }

    /// The position in `instrument`.
    pub fn position(&self, instrument: u32) -> Position {
        self.positions
            .get(instrument as usize)
            .copied()
            .unwrap_or_default()
    }

    /// Applies one of this strategy's execution reports (position, open orders).
    pub fn apply_report(&mut self, instrument: u32, report: &ExecutionReport) {
        let status = ExecStatus::from_code(report.status);
        if report.filled > 0 {
            let i = instrument as usize;
            if i >= self.positions.len() {
                self.positions.resize(i + 1, Position::default());
            }
            self.positions[i].apply_fill(Side::from_code(report.side), report.price, report.filled);
        }
        if let Some(k) = self.open.iter().position(|o| o.order_id == report.order_id) {
            match status {
                Some(ExecStatus::Filled | ExecStatus::Cancelled) => {
                    self.open.remove(k);
                }
                // A rejected cancel leaves its order as it was; a rejected order is gone.
                Some(ExecStatus::Rejected)
                    if !self.open[k].cancel_sent
                        || report.reason != crate::risk::RejectReason::UnknownOrder.code() =>
                {
                    self.open.remove(k);
                }
                Some(ExecStatus::Rejected) => {}
                Some(ExecStatus::PartiallyFilled | ExecStatus::New) => {
                    self.open[k].leaves = report.leaves;
                }
                None => {}
            }
        }
    }
}

/// What a strategy handler trades through: market state, its position, its open orders,
/// timers, and order entry into its order ring.
#[derive(Debug)]
pub struct Context<'a> {
    state: &'a mut StrategyState,
    orders: Option<&'a mut Publisher<Event>>,
}

impl<'a> Context<'a> {
    /// A context over `state` writing into `orders` (`None` once the strategy stopped).
    pub fn new(state: &'a mut StrategyState, orders: Option<&'a mut Publisher<Event>>) -> Self {
        Self { state, orders }
    }

    /// This strategy's id.
    pub fn strategy_id(&self) -> StrategyId {
        self.state.id
    }

    /// Event time now, ns since the Unix epoch (see [`EventClock`]).
    pub fn now(&self) -> u64 {
        self.state.clock.now()
    }

    /// The instruments and their symbols.
    pub fn instruments(&self) -> &InstrumentRegistry {
        &self.state.instruments
    }

    /// Top of book of `instrument` (the latest quote, or the depth book's top).
    pub fn top(&self, instrument: u32) -> Option<Quote> {
        self.state.market.top(instrument)
    }

    /// Mid price, 10⁻⁹ units, when both sides are present.
    pub fn mid(&self, instrument: u32) -> Option<i64> {
        self.state.market.mid(instrument)
    }

    /// The depth book, where the feed has depth.
    pub fn book(&self, instrument: u32) -> Option<&OrderBook> {
        self.state.market.book(instrument)
    }

    /// This strategy's position in `instrument` (from its own fills).
    pub fn position(&self, instrument: u32) -> Position {
        self.state.position(instrument)
    }

    /// This strategy's open orders, oldest first.
    pub fn open_orders(&self) -> &[OpenOrder] {
        &self.state.open
    }

    /// A limit buy; returns its id.
    pub fn buy(&mut self, instrument: u32, price: i64, size: u64) -> Result<OrderId, SubmitError> {
        self.submit(instrument, Side::Bid, OrderType::Limit, price, size)
    }

    /// A limit sell; returns its id.
    pub fn sell(&mut self, instrument: u32, price: i64, size: u64) -> Result<OrderId, SubmitError> {
        self.submit(instrument, Side::Ask, OrderType::Limit, price, size)
    }

    /// An order of any type; returns its id. Written into the order ring now.
    pub fn submit(
        &mut self,
        instrument: u32,
        side: Side,
        order_type: OrderType,
        price: i64,
        size: u64,
    ) -> Result<OrderId, SubmitError> {
        if self.state.open.len() >= MAX_OPEN_ORDERS {
            return Err(SubmitError::TooManyOpenOrders);
        }
        let order_id = self.state.next_order_id;
        self.send(
            instrument,
            Order {
                order_id,
                price,
                size,
                trigger_ts: self.state.trigger_ts,
                strategy: self.state.id,
                side: side as u8,
                order_type: order_type as u8,
                _reserved: [0; 2],
            },
        )?;
        self.state.next_order_id += 1;
        self.state.open.push(OpenOrder {
            order_id,
            instrument,
            side,
            order_type,
            price,
            leaves: size,
            cancel_sent: false,
        });
        Ok(order_id)
    }

    /// Cancels an open order.
    pub fn cancel(&mut self, order_id: OrderId) -> Result<(), SubmitError> {
        let Some(k) = self
            .state
            .open
            .iter()
            .position(|o| o.order_id == order_id && !o.cancel_sent)
        else {
            return Err(SubmitError::NotOpen);
        };
        let open = self.state.open[k];
        self.send(
            open.instrument,
            Order {
                order_id,
                price: open.price,
                size: open.leaves,
                trigger_ts: self.state.trigger_ts,
                strategy: self.state.id,
                side: open.side as u8,
                order_type: OrderType::Cancel as u8,
                _reserved: [0; 2],
            },
        )?;
        self.state.open[k].cancel_sent = true;
        Ok(())
    }

    /// Cancels every open order (of `instrument`, or all); returns how many cancels went.
    pub fn cancel_all(&mut self, instrument: Option<u32>) -> Result<usize, SubmitError> {
        let mut sent = 0;
        let mut k = 0;
        while k < self.state.open.len() {
            let o = self.state.open[k];
            if !o.cancel_sent && instrument.is_none_or(|i| i == o.instrument) {
                self.cancel(o.order_id)?;
                sent += 1;
            }
            k += 1;
        }
        Ok(sent)
    }

    /// Fires `on_timer(id)` at event time `at_ns` (at once, before the next event, if that
    /// is already past).
    pub fn set_timer(&mut self, at_ns: u64, id: TimerId) -> Result<(), SubmitError> {
        let timers = &mut self.state.timers;
        if timers.len() >= MAX_TIMERS {
            return Err(SubmitError::TooManyTimers);
        }
        // Latest first; a new timer goes after (pops before) no existing one with the same
        // time: equal times fire in the order they were set.
        let at = timers.partition_point(|(t, _)| *t > at_ns);
        timers.insert(at, (at_ns, id));
        Ok(())
    }

    /// Fires `on_timer(id)` `delay_ns` of event time from now.
    pub fn schedule(&mut self, delay_ns: u64, id: TimerId) -> Result<(), SubmitError> {
        self.set_timer(self.now().saturating_add(delay_ns), id)
    }

    fn send(&mut self, instrument: u32, order: Order) -> Result<(), SubmitError> {
        let Some(publisher) = self.orders.as_deref_mut() else {
            return Err(SubmitError::Stopped);
        };
        let now_event = self.state.clock.now();
        let decided = wall_ns();
        publisher
            .try_publish(|slot| {
                *slot = Event::new(0, instrument, now_event, decided);
                slot.set_order(order);
            })
            .map_err(|e| match e {
                ClaimError::Full { .. } | ClaimError::TooLarge => SubmitError::RingFull,
                ClaimError::Halted => SubmitError::Halted,
            })?;
        self.state.orders_sent += 1;
        if let Some(rec) = self.state.decision.as_mut() {
            rec.record_at(decided.saturating_sub(self.state.trigger_ts), decided);
        }
        Ok(())
    }
}

/// A trading strategy. Every handler has a default that does nothing; implement what you
/// need. Handlers run on the strategy's thread, one event at a time, and must not block.
pub trait Strategy: Send {
    /// Before the first event.
    fn on_start(&mut self, _ctx: &mut Context<'_>) {}
    /// A new top of book (the context's market state already includes it).
    fn on_quote(&mut self, _ctx: &mut Context<'_>, _event: &Event, _quote: &Quote) {}
    /// A trade print.
    fn on_trade(&mut self, _ctx: &mut Context<'_>, _event: &Event, _trade: &Trade) {}
    /// A depth-book change (already applied to [`Context::book`]). The book is consistent
    /// after an event with [`flags::LAST`](tickwire_engine::event::flags::LAST).
    fn on_book(&mut self, _ctx: &mut Context<'_>, _event: &Event, _delta: &BookDelta) {}
    /// An execution report for one of this strategy's orders (position and open orders
    /// already updated).
    fn on_execution(&mut self, _ctx: &mut Context<'_>, _event: &Event, _report: &ExecutionReport) {}
    /// A timer set with [`Context::set_timer`] or [`Context::schedule`] is due.
    fn on_timer(&mut self, _ctx: &mut Context<'_>, _timer: TimerId) {}
    /// After the last event; orders sent here (cancels, flattening) still execute.
    fn on_stop(&mut self, _ctx: &mut Context<'_>) {}
}

/// Runs a [`Strategy`] as an agent: reads the market-data ring and the execution ring,
/// writes its order ring. In lockstep with the execution agent (see [`crate::lockstep`]).
pub struct StrategyAgent {
    name: String,
    strategy: Box<dyn Strategy>,
    state: StrategyState,
    md: Subscriber<Event>,
    exec: Subscriber<Event>,
    orders: Option<Publisher<Event>>,
    /// The execution agent's progress (lockstep), or `None` to run free (live trading,
    /// not deterministic).
    exec_progress: Option<Progress>,
    tick_to_strategy: Option<LatencyRecorder>,
    started: bool,
    stopped: bool,
}

impl std::fmt::Debug for StrategyAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrategyAgent")
            .field("name", &self.name)
            .field("id", &self.state.id)
            .finish()
    }
}

/// Events handled per `do_work` at most, so agents sharing a thread take turns.
const MAX_BATCH: usize = 256;

impl StrategyAgent {
    /// An agent running `strategy` (named `name`) over `md`, reading its reports from
    /// `exec`, writing `orders`; `exec_progress` is the execution agent's progress for
    /// lockstep.
    pub fn new(
        name: impl Into<String>,
        strategy: Box<dyn Strategy>,
        state: StrategyState,
        md: Subscriber<Event>,
        exec: Subscriber<Event>,
        orders: Publisher<Event>,
        exec_progress: Option<Progress>,
    ) -> Self {
        Self {
            name: name.into(),
            strategy,
            state,
            md,
            exec,
            orders: Some(orders),
            exec_progress,
            tick_to_strategy: None,
            started: false,
            stopped: false,
        }
    }

    /// Records receive -> strategy latency for every market event.
    pub fn with_tick_latency(mut self, recorder: LatencyRecorder) -> Self {
        self.tick_to_strategy = Some(recorder);
        self
    }

    fn drain_reports(&mut self) -> usize {
        let Self {
            exec,
            state,
            strategy,
            orders,
            stopped,
            ..
        } = self;
        exec.poll(|event, _, _| {
            let Some(report) = event.execution_report() else {
                return;
            };
            if report.strategy != state.id {
                return;
            }
            state.apply_report(event.instrument, report);
            if !*stopped {
                let mut ctx = Context::new(state, orders.as_mut());
                strategy.on_execution(&mut ctx, event, report);
            }
        })
    }

    fn handle_market(&mut self, event: &Event) {
        let Self {
            state,
            strategy,
            orders,
            tick_to_strategy,
            ..
        } = self;
        let now = state.clock.observe(event);
        state.trigger_ts = event.receive_ts;
        // Timers due by now fire first: time has reached them before this event.
        while let Some(&(at, id)) = state.timers.last() {
            if at > now {
                break;
            }
            state.timers.pop();
            let mut ctx = Context::new(state, orders.as_mut());
            strategy.on_timer(&mut ctx, id);
        }
        state.market.apply(event);
        if let Some(rec) = tick_to_strategy.as_mut() {
            rec.record(wall_ns().saturating_sub(event.receive_ts));
        }
        let mut ctx = Context::new(state, orders.as_mut());
        if let Some(q) = event.quote() {
            strategy.on_quote(&mut ctx, event, q);
        } else if let Some(t) = event.trade() {
            strategy.on_trade(&mut ctx, event, t);
        } else if let Some(d) = event.book_delta() {
            strategy.on_book(&mut ctx, event, d);
        }
    }

    fn exec_caught_up(&self, count: u64) -> bool {
        self.exec_progress.as_ref().is_none_or(|p| p.get() >= count)
    }
}

impl Agent for StrategyAgent {
    fn name(&self) -> &str {
        &self.name
    }

    fn on_start(&mut self, ctx: &mut AgentContext) -> Result<(), AgentError> {
        ctx.wake_on(&self.md);
        ctx.wake_on(&self.exec);
        Ok(())
    }

    fn do_work(&mut self) -> usize {
        if !self.started {
            self.started = true;
            let mut ctx = Context::new(&mut self.state, self.orders.as_mut());
            self.strategy.on_start(&mut ctx);
        }
        // Reports in the ring now are for events before our next one: always safe to take.
        let mut work = self.drain_reports();
        if self.stopped {
            return work;
        }
        for _ in 0..MAX_BATCH {
            let next = self.md.sequence();
            if !self.exec_caught_up(next) {
                break;
            }
            work += self.drain_reports();
            let Some(event) = self.md.peek().copied() else {
                break;
            };
            self.handle_market(&event);
            self.md.advance();
            work += 1;
        }
        if self.md.is_finished() && self.exec_caught_up(self.md.sequence()) {
            work += self.drain_reports();
            let mut ctx = Context::new(&mut self.state, self.orders.as_mut());
            self.strategy.on_stop(&mut ctx);
            self.stopped = true;
            // Closing the order ring tells the execution agent no more orders come.
            self.orders = None;
            work += 1;
        }
        // The flush interval is wall time: with the event clock a flat-out replay of a
        // recording (seconds of event time per event) merged and cleared the whole
        // histogram on nearly every batch, 75% of the pipeline's instructions (callgrind).
        if work > 0 {
            if let Some(rec) = self.tick_to_strategy.as_mut() {
                rec.maybe_flush(wall_ns());
            }
        }
        work
    }

    fn is_done(&self) -> bool {
        // Keep reading the execution ring until it closes: leaving early would halt it.
        self.stopped && self.exec.is_finished()
    }

    fn on_close(&mut self) -> Result<(), AgentError> {
        self.orders = None;
        if let Some(rec) = self.tick_to_strategy.as_mut() {
            rec.flush();
        }
        if let Some(rec) = self.state.decision.as_mut() {
            rec.flush();
        }
        Ok(())
    }
}
