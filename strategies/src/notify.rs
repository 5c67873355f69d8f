//! Notifications: per-user alert rules evaluated on market data and on execution reports,
//! with cool-down and de-duplication, written by the [`NotifierAgent`] into the
//! notification ring (its single writer) for sinks such as [`AlertLog`] and, later, the
//! QUIC publisher.
//!
//! | code | rule | fires when | `value` / `threshold` |
//! |---|---|---|---|
//! | 1 | `price_cross` | the mid crosses `level` (either way) | mid / level, 10⁻⁹ |
//! | 2 | `move` | the mid moved `percent` or more from the lowest (up) or highest (down) mid of the last `window_ms` of event time | signed move / threshold, ratio in 10⁻⁹ |
//! | 3 | `spread_wide` | ask − bid > `spread` | spread / threshold, 10⁻⁹ |
//! | 4 | `fills` | a fill of the user's strategy | fill price / 0, `order_id` set |
//! | 5 | `rejects` | a reject of the user's strategy's order | reject reason code / 0, `order_id` set |
//!
//! **De-duplication.** Market rules are edge-triggered: a condition that stays true
//! notifies once, and the rule re-arms only when the condition is false again. Order rules
//! notify once per (order, status): many partial fills of one order give one
//! `PartiallyFilled` alert, then one `Filled`.
//!
//! **Cool-down.** After a rule fires it stays silent for `cooldown_ms` of event time; a
//! market rule that is still armed when the cool-down ends fires then if its condition
//! still holds.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tickwire_engine::agent::{Agent, AgentContext, AgentError};
use tickwire_engine::clock::wall_ns;
use tickwire_engine::event::{Event, ExecStatus, ExecutionReport, Notification};
use tickwire_engine::instrument::InstrumentRegistry;
use tickwire_engine::latency::LatencyRecorder;
use tickwire_engine::ring::{Publisher, Subscriber};

use crate::config::{self, ConfigError};
use crate::lockstep::{DIGEST_START, Outbox, Progress, digest, fold};
use crate::market::{EventClock, MarketState};

/// Ratio units per 1.0 in notifications (10⁻⁹).
pub const RATIO_SCALE: i128 = 1_000_000_000;

/// One `[[alerts]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct AlertRuleConfig {
    /// The user the alert is for.
    pub user: u32,
    /// Silence after firing, ms of event time. Default 0.
    #[serde(default)]
    pub cooldown_ms: u64,
    /// The rule.
    #[serde(flatten)]
    pub rule: RuleConfig,
}

/// The rule of an [`AlertRuleConfig`] (`rule = "price_cross"`, ...).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum RuleConfig {
    /// The mid crosses `level`.
    PriceCross {
        /// Symbol.
        instrument: String,
        /// Price level, quote currency.
        level: f64,
    },
    /// The mid moves `percent` within `window_ms`.
    Move {
        /// Symbol.
        instrument: String,
        /// Move, percent.
        percent: f64,
        /// Window, ms of event time.
        window_ms: u64,
    },
    /// The spread is wider than `spread`.
    SpreadWide {
        /// Symbol.
        instrument: String,
        /// Spread threshold, quote currency.
        spread: f64,
    },
    /// Fills of the user's strategy.
    Fills {
        /// Strategy instance name.
        strategy: String,
    },
    /// Rejects of the user's strategy's orders.
    Rejects {
        /// Strategy instance name.
        strategy: String,
    },
}

/// Alert kinds (the `alert` code of a [`Notification`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AlertKind {
    /// See [`RuleConfig::PriceCross`].
    PriceCross = 1,
    /// See [`RuleConfig::Move`].
    Move = 2,
    /// See [`RuleConfig::SpreadWide`].
    SpreadWide = 3,
    /// See [`RuleConfig::Fills`].
    Fill = 4,
    /// See [`RuleConfig::Rejects`].
    Reject = 5,
}

impl AlertKind {
    /// The kind for a code.
    pub fn from_code(code: u8) -> Option<Self> {
        [
            Self::PriceCross,
            Self::Move,
            Self::SpreadWide,
            Self::Fill,
            Self::Reject,
        ]
        .into_iter()
        .find(|k| *k as u8 == code)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::PriceCross => "price_cross",
            Self::Move => "move",
            Self::SpreadWide => "spread_wide",
            Self::Fill => "fills",
            Self::Reject => "rejects",
        }
    }
}

#[derive(Debug)]
enum Condition {
    PriceCross {
        level: i64,
        prev_mid: Option<i64>,
    },
    Move {
        threshold: i128,
        window_ns: u64,
        mins: VecDeque<(u64, i64)>,
        maxs: VecDeque<(u64, i64)>,
    },
    SpreadWide {
        threshold: i64,
    },
    Fill {
        strategy: u32,
    },
    Reject {
        strategy: u32,
    },
}

/// Most samples a move rule's window keeps per side (its monotonic queues); beyond that
/// the oldest are dropped, which shortens the window.
const MOVE_WINDOW_CAPACITY: usize = 4096;
/// (order id, status) pairs remembered for de-duplication per order rule.
const DEDUP_MEMORY: usize = 256;

/// Counters of one rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleStats {
    /// Notifications sent.
    pub fired: u64,
    /// Suppressed by the cool-down.
    pub cooldown: u64,
    /// Suppressed as duplicates.
    pub duplicate: u64,
}

#[derive(Debug)]
struct Rule {
    user: u32,
    id: u32,
    kind: AlertKind,
    instrument: Option<u32>,
    description: String,
    cooldown_ns: u64,
    last_fired: Option<u64>,
    armed: bool,
    seen: VecDeque<(u64, u8)>,
    condition: Condition,
    stats: RuleStats,
}

/// A rule's description and counters, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSummary {
    /// User.
    pub user: u32,
    /// Rule id within the user's rules.
    pub rule: u32,
    /// What it watches, e.g. `price_cross BTCUSDT 61000`.
    pub description: String,
    /// Counters.
    pub stats: RuleStats,
}

/// The rules of every user, evaluated in configuration order.
#[derive(Debug)]
pub struct Notifier {
    rules: Vec<Rule>,
}

impl Notifier {
    /// Compiles rules; `strategies` maps strategy instance names to ids.
    pub fn new(
        rules: &[AlertRuleConfig],
        instruments: &InstrumentRegistry,
        strategies: &[String],
    ) -> Result<Self, ConfigError> {
        let mut per_user: Vec<(u32, u32)> = Vec::new();
        let mut out = Vec::with_capacity(rules.len());
        for (n, r) in rules.iter().enumerate() {
            let context = format!("alerts[{n}]");
            let id = match per_user.iter_mut().find(|(u, _)| *u == r.user) {
                Some((_, count)) => {
                    *count += 1;
                    *count - 1
                }
                None => {
                    per_user.push((r.user, 1));
                    0
                }
            };
            let strategy = |name: &str| {
                strategies
                    .iter()
                    .position(|s| s == name)
                    .map(|i| i as u32)
                    .ok_or_else(|| ConfigError::invalid(&context, format!("no strategy `{name}`")))
            };
            let (kind, instrument, condition, description) = match &r.rule {
                RuleConfig::PriceCross { instrument, level } => (
                    AlertKind::PriceCross,
                    Some(config::instrument(instruments, instrument, &context)?),
                    Condition::PriceCross {
                        level: config::price(*level),
                        prev_mid: None,
                    },
                    format!("price_cross {instrument} {level}"),
                ),
                RuleConfig::Move {
                    instrument,
                    percent,
                    window_ms,
                } => (
                    AlertKind::Move,
                    Some(config::instrument(instruments, instrument, &context)?),
                    Condition::Move {
                        threshold: (percent / 100.0 * RATIO_SCALE as f64).round() as i128,
                        window_ns: window_ms * 1_000_000,
                        mins: VecDeque::with_capacity(MOVE_WINDOW_CAPACITY),
                        maxs: VecDeque::with_capacity(MOVE_WINDOW_CAPACITY),
                    },
                    format!("move {instrument} {percent}% in {window_ms}ms"),
                ),
                RuleConfig::SpreadWide { instrument, spread } => (
                    AlertKind::SpreadWide,
                    Some(config::instrument(instruments, instrument, &context)?),
                    Condition::SpreadWide {
                        threshold: config::price(*spread),
                    },
                    format!("spread_wide {instrument} > {spread}"),
                ),
                RuleConfig::Fills { strategy: s } => (
                    AlertKind::Fill,
                    None,
                    Condition::Fill {
                        strategy: strategy(s)?,
                    },
                    format!("fills of {s}"),
                ),
                RuleConfig::Rejects { strategy: s } => (
                    AlertKind::Reject,
                    None,
                    Condition::Reject {
                        strategy: strategy(s)?,
                    },
                    format!("rejects of {s}"),
                ),
            };
            out.push(Rule {
                user: r.user,
                id,
                kind,
                instrument,
                description,
                cooldown_ns: r.cooldown_ms * 1_000_000,
                last_fired: None,
                armed: true,
                seen: VecDeque::with_capacity(DEDUP_MEMORY),
                condition,
                stats: RuleStats::default(),
            });
        }
        Ok(Self { rules: out })
    }

    /// Evaluates the market rules of `event`'s instrument on `market` (which includes the
    /// event) at event time `now`; notifications go to `out`.
    pub fn on_market(
        &mut self,
        event: &Event,
        market: &MarketState,
        now: u64,
        out: &mut impl FnMut(Event),
    ) {
        let instrument = event.instrument;
        let Some(top) = market.top(instrument).filter(|q| q.is_two_sided()) else {
            return;
        };
        let mid = top.mid_px();
        for rule in &mut self.rules {
            if rule.instrument != Some(instrument) {
                continue;
            }
            let (holds, value, threshold) = match &mut rule.condition {
                Condition::PriceCross { level, prev_mid } => {
                    let level = *level;
                    let crossed = prev_mid.is_some_and(|p| {
                        (p < level && mid >= level) || (p > level && mid <= level)
                    });
                    *prev_mid = Some(mid);
                    // A crossing is an edge in itself: always re-armed.
                    rule.armed = true;
                    (crossed, mid, level)
                }
                Condition::Move {
                    threshold,
                    window_ns,
                    mins,
                    maxs,
                } => {
                    let start = now.saturating_sub(*window_ns);
                    for q in [&mut *mins, &mut *maxs] {
                        while q.front().is_some_and(|(t, _)| *t < start)
                            || q.len() >= MOVE_WINDOW_CAPACITY
                        {
                            q.pop_front();
                        }
                    }
                    while mins.back().is_some_and(|(_, m)| *m >= mid) {
                        mins.pop_back();
                    }
                    mins.push_back((now, mid));
                    while maxs.back().is_some_and(|(_, m)| *m <= mid) {
                        maxs.pop_back();
                    }
                    maxs.push_back((now, mid));
                    let low = i128::from(mins.front().map_or(mid, |x| x.1)).max(1);
                    let high = i128::from(maxs.front().map_or(mid, |x| x.1)).max(1);
                    let up = (i128::from(mid) - low) * RATIO_SCALE / low;
                    let down = (i128::from(mid) - high) * RATIO_SCALE / high;
                    let moved = if up >= -down { up } else { down };
                    (moved.abs() >= *threshold, moved as i64, *threshold as i64)
                }
                Condition::SpreadWide { threshold } => {
                    let spread = top.spread();
                    (spread > *threshold, spread, *threshold)
                }
                Condition::Fill { .. } | Condition::Reject { .. } => continue,
            };
            if !holds {
                rule.armed = true;
                continue;
            }
            if !rule.armed {
                rule.stats.duplicate += 1;
                continue;
            }
            if rule
                .last_fired
                .is_some_and(|t| now < t.saturating_add(rule.cooldown_ns))
            {
                rule.stats.cooldown += 1;
                continue;
            }
            rule.armed = false;
            rule.last_fired = Some(now);
            rule.stats.fired += 1;
            out(notification(rule, instrument, now, value, threshold, 0));
        }
    }

    /// Evaluates the order rules on an execution report.
    pub fn on_report(
        &mut self,
        instrument: u32,
        report: &ExecutionReport,
        now: u64,
        out: &mut impl FnMut(Event),
    ) {
        let status = ExecStatus::from_code(report.status);
        for rule in &mut self.rules {
            let value = match rule.condition {
                Condition::Fill { strategy }
                    if strategy == report.strategy && report.filled > 0 =>
                {
                    report.price
                }
                Condition::Reject { strategy }
                    if strategy == report.strategy && status == Some(ExecStatus::Rejected) =>
                {
                    i64::from(report.reason)
                }
                _ => continue,
            };
            let key = (report.order_id, report.status);
            if rule.seen.contains(&key) {
                rule.stats.duplicate += 1;
                continue;
            }
            if rule
                .last_fired
                .is_some_and(|t| now < t.saturating_add(rule.cooldown_ns))
            {
                rule.stats.cooldown += 1;
                continue;
            }
            if rule.seen.len() == DEDUP_MEMORY {
                rule.seen.pop_front();
            }
            rule.seen.push_back(key);
            rule.last_fired = Some(now);
            rule.stats.fired += 1;
            out(notification(
                rule,
                instrument,
                now,
                value,
                0,
                report.order_id,
            ));
        }
    }

    /// Every rule's description and counters, in configuration order.
    pub fn summary(&self) -> Vec<RuleSummary> {
        self.rules
            .iter()
            .map(|r| RuleSummary {
                user: r.user,
                rule: r.id,
                description: r.description.clone(),
                stats: r.stats,
            })
            .collect()
    }
}

fn notification(
    rule: &Rule,
    instrument: u32,
    now: u64,
    value: i64,
    threshold: i64,
    order_id: u64,
) -> Event {
    let mut e = Event::new(0, instrument, now, wall_ns());
    e.set_notification(Notification {
        user: rule.user,
        rule: rule.id,
        value,
        threshold,
        order_id,
        alert: rule.kind as u8,
        _reserved: [0; 7],
    });
    e
}

/// What the notifier did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifierSummary {
    /// Per rule, in configuration order.
    pub rules: Vec<RuleSummary>,
    /// Notifications written.
    pub notifications: u64,
    /// Digest of every notification, in order (wall-clock fields excluded).
    pub digest: u64,
}

/// Runs a [`Notifier`]: reads the market-data ring (after the execution agent) and the
/// execution ring, writes the notification ring. In lockstep with the execution agent
/// (see [`crate::lockstep`]).
pub struct NotifierAgent {
    notifier: Notifier,
    md: Subscriber<Event>,
    exec: Subscriber<Event>,
    publisher: Option<Publisher<Event>>,
    outbox: Outbox,
    /// Reports read but not yet evaluated: they belong after the current market event.
    reports: Vec<Event>,
    market: MarketState,
    clock: EventClock,
    progress: Progress,
    summary: NotifierSummary,
    result: Arc<Mutex<Option<NotifierSummary>>>,
    tick_to_notification: Option<LatencyRecorder>,
    report_to_notifier: Option<LatencyRecorder>,
    done: bool,
}

impl std::fmt::Debug for NotifierAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifierAgent").finish()
    }
}

impl NotifierAgent {
    /// An agent running `notifier`; `progress` is published for the execution agent.
    pub fn new(
        notifier: Notifier,
        md: Subscriber<Event>,
        exec: Subscriber<Event>,
        publisher: Publisher<Event>,
        progress: Progress,
    ) -> Self {
        Self {
            notifier,
            md,
            exec,
            publisher: Some(publisher),
            outbox: Outbox::with_capacity(1024),
            reports: Vec::with_capacity(1024),
            market: MarketState::default(),
            clock: EventClock::default(),
            progress,
            summary: NotifierSummary {
                digest: DIGEST_START,
                ..NotifierSummary::default()
            },
            result: Arc::new(Mutex::new(None)),
            tick_to_notification: None,
            report_to_notifier: None,
            done: false,
        }
    }

    /// Records tick -> notification and report -> notifier latency.
    pub fn with_latency(
        mut self,
        tick_to_notification: LatencyRecorder,
        report_to_notifier: LatencyRecorder,
    ) -> Self {
        self.tick_to_notification = Some(tick_to_notification);
        self.report_to_notifier = Some(report_to_notifier);
        self
    }

    /// Where the summary appears when the agent closes.
    pub fn summary_slot(&self) -> Arc<Mutex<Option<NotifierSummary>>> {
        Arc::clone(&self.result)
    }

    fn take_reports(&mut self) -> usize {
        let reports = &mut self.reports;
        let rec = &mut self.report_to_notifier;
        self.exec.poll(|e, _, _| {
            if let Some(r) = rec.as_mut() {
                let now = wall_ns();
                r.record_at(now.saturating_sub(e.receive_ts), now);
            }
            reports.push(*e);
        })
    }

    /// Evaluates the buffered reports; `tick_ts` is the receive time of the market event
    /// they belong to (0 at the end of the stream).
    fn evaluate_reports(&mut self, tick_ts: u64) {
        let Self {
            notifier,
            reports,
            outbox,
            summary,
            clock,
            tick_to_notification,
            ..
        } = self;
        let now = clock.now();
        let mut emit = |e: Event| {
            summary.notifications += 1;
            summary.digest = fold(summary.digest, digest(&e));
            if tick_ts != 0 {
                if let Some(r) = tick_to_notification.as_mut() {
                    r.record_at(e.receive_ts.saturating_sub(tick_ts), e.receive_ts);
                }
            }
            outbox.push(e);
        };
        for e in reports.drain(..) {
            if let Some(report) = e.execution_report() {
                notifier.on_report(e.instrument, report, now, &mut emit);
            }
        }
    }
}

impl Agent for NotifierAgent {
    fn name(&self) -> &str {
        "notifier"
    }

    fn on_start(&mut self, ctx: &mut AgentContext) -> Result<(), AgentError> {
        ctx.wake_on(&self.md);
        ctx.wake_on(&self.exec);
        Ok(())
    }

    fn do_work(&mut self) -> usize {
        if self.done {
            return 0;
        }
        let mut work = 0;
        if let Some(p) = self.publisher.as_mut() {
            if !self.outbox.flush(p) {
                return 0;
            }
        }
        // Reports may be read at any time (the execution ring must not fill up), but they
        // are evaluated only after the market event they belong to.
        work += self.take_reports();
        for _ in 0..256 {
            let Some(event) = self.md.peek().copied() else {
                break;
            };
            let now = self.clock.observe(&event);
            if self.market.apply(&event) {
                let Self {
                    notifier,
                    market,
                    outbox,
                    summary,
                    tick_to_notification,
                    ..
                } = self;
                notifier.on_market(&event, market, now, &mut |e: Event| {
                    summary.notifications += 1;
                    summary.digest = fold(summary.digest, digest(&e));
                    if let Some(r) = tick_to_notification.as_mut() {
                        r.record_at(e.receive_ts.saturating_sub(event.receive_ts), e.receive_ts);
                    }
                    outbox.push(e);
                });
            }
            // The execution agent finished this event (the ring barrier) and cannot start
            // the next before our progress moves: the ring holds exactly its reports.
            self.take_reports();
            self.evaluate_reports(event.receive_ts);
            self.md.advance();
            self.progress.set(self.md.sequence());
            work += 1;
        }
        if self.md.is_finished() {
            work += self.take_reports();
            self.evaluate_reports(0);
            if self.exec.is_finished() {
                if let Some(p) = self.publisher.as_mut() {
                    if !self.outbox.flush(p) {
                        return work;
                    }
                }
                *self.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(NotifierSummary {
                    rules: self.notifier.summary(),
                    ..self.summary.clone()
                });
                self.publisher = None;
                self.done = true;
                work += 1;
            }
        }
        if let Some(p) = self.publisher.as_mut() {
            self.outbox.flush(p);
        }
        work
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn on_close(&mut self) -> Result<(), AgentError> {
        for r in [&mut self.tick_to_notification, &mut self.report_to_notifier]
            .into_iter()
            .flatten()
        {
            r.flush();
        }
        self.publisher = None;
        Ok(())
    }
}

/// What the alert log saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertLogSummary {
    /// Notifications read.
    pub count: u64,
    /// Digest of every notification read, in order.
    pub digest: u64,
    /// The first lines written (up to the configured number).
    pub first_lines: Vec<String>,
}

/// A sink of the notification ring: formats each notification as a line, writes it to an
/// optional writer (a file, stderr) and keeps the first few for the report.
pub struct AlertLog {
    sub: Subscriber<Event>,
    instruments: InstrumentRegistry,
    writer: Option<Box<dyn Write + Send>>,
    keep: usize,
    summary: AlertLogSummary,
    result: Arc<Mutex<Option<AlertLogSummary>>>,
}

impl std::fmt::Debug for AlertLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertLog")
            .field("count", &self.summary.count)
            .finish()
    }
}

impl AlertLog {
    /// A sink over `sub`, keeping `keep` lines, writing every line to `writer` if given.
    pub fn new(
        sub: Subscriber<Event>,
        instruments: InstrumentRegistry,
        writer: Option<Box<dyn Write + Send>>,
        keep: usize,
    ) -> Self {
        Self {
            sub,
            instruments,
            writer,
            keep,
            summary: AlertLogSummary {
                digest: DIGEST_START,
                ..AlertLogSummary::default()
            },
            result: Arc::new(Mutex::new(None)),
        }
    }

    /// Where the summary appears when the agent closes.
    pub fn summary_slot(&self) -> Arc<Mutex<Option<AlertLogSummary>>> {
        Arc::clone(&self.result)
    }
}

/// One line for a notification.
pub fn format_notification(event: &Event, instruments: &InstrumentRegistry) -> String {
    let Some(n) = event.notification() else {
        return String::new();
    };
    let kind = AlertKind::from_code(n.alert);
    let symbol = instruments.symbol(event.instrument).unwrap_or("?");
    let px = |v: i64| v as f64 / 1e9;
    let detail = match kind {
        Some(AlertKind::PriceCross) => {
            format!("mid {:.2} crossed {:.2}", px(n.value), px(n.threshold))
        }
        Some(AlertKind::Move) => format!(
            "moved {:+.3}% (threshold {:.3}%)",
            n.value as f64 / 1e7,
            n.threshold as f64 / 1e7
        ),
        Some(AlertKind::SpreadWide) => {
            format!("spread {:.2} > {:.2}", px(n.value), px(n.threshold))
        }
        Some(AlertKind::Fill) => format!("order {} filled at {:.2}", n.order_id, px(n.value)),
        // The venue refuses a cancel of an order that is no longer resting with
        // `unknown_order`: say so, or the line reads as if a filled order was refused.
        Some(AlertKind::Reject)
            if n.value == i64::from(crate::risk::RejectReason::UnknownOrder.code()) =>
        {
            format!(
                "cancel of order {} rejected: unknown_order (no longer resting: filled or cancelled)",
                n.order_id
            )
        }
        Some(AlertKind::Reject) => format!(
            "order {} rejected: {}",
            n.order_id,
            crate::risk::RejectReason::from_code(n.value as u8).map_or("?", |r| r.name())
        ),
        None => "?".to_owned(),
    };
    format!(
        "t={} user={} rule={} {} {symbol}: {detail}",
        event.exchange_ts,
        n.user,
        n.rule,
        kind.map_or("?", AlertKind::name)
    )
}

impl Agent for AlertLog {
    fn name(&self) -> &str {
        "alert-log"
    }

    fn on_start(&mut self, ctx: &mut AgentContext) -> Result<(), AgentError> {
        ctx.wake_on(&self.sub);
        Ok(())
    }

    fn do_work(&mut self) -> usize {
        let Self {
            sub,
            instruments,
            writer,
            keep,
            summary,
            ..
        } = self;
        sub.poll(|e, _, _| {
            summary.count += 1;
            summary.digest = fold(summary.digest, digest(e));
            let wants_line = writer.is_some() || summary.first_lines.len() < *keep;
            if wants_line {
                let line = format_notification(e, instruments);
                if let Some(w) = writer.as_mut() {
                    let _ = writeln!(w, "{line}");
                }
                if summary.first_lines.len() < *keep {
                    summary.first_lines.push(line);
                }
            }
        })
    }

    fn is_done(&self) -> bool {
        self.sub.is_finished()
    }

    fn on_close(&mut self) -> Result<(), AgentError> {
        if let Some(w) = self.writer.as_mut() {
            w.flush()?;
        }
        *self.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.summary.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::RejectReason;
    use tickwire_engine::event::Quote;

    const P: i64 = tickwire_engine::event::PRICE_SCALE;
    const MS: u64 = 1_000_000;

    fn rules(toml_text: &str) -> Notifier {
        #[derive(Deserialize)]
        struct File {
            alerts: Vec<AlertRuleConfig>,
        }
        let file: File = toml::from_str(toml_text).expect("valid rules");
        Notifier::new(
            &file.alerts,
            &InstrumentRegistry::from_symbols(["X"]),
            &["mm".to_owned()],
        )
        .expect("valid")
    }

    /// Feeds quotes `(time ms, bid, ask)`; returns `(rule, value)` of each notification.
    fn run(n: &mut Notifier, quotes: &[(u64, i64, i64)]) -> Vec<(u32, i64)> {
        let mut market = MarketState::default();
        let mut fired = Vec::new();
        for &(t, bid, ask) in quotes {
            let mut e = Event::new(0, 0, t * MS, t * MS);
            e.set_quote(Quote {
                bid_px: bid,
                ask_px: ask,
                bid_size: 1,
                ask_size: 1,
                seq: 0,
            });
            market.apply(&e);
            n.on_market(&e, &market, t * MS, &mut |ev: Event| {
                let x = ev.notification().copied().unwrap_or_default();
                fired.push((x.rule, x.value));
            });
        }
        fired
    }

    #[test]
    fn a_refused_cancel_reads_as_a_cancel() {
        use tickwire_engine::event::Notification;
        let instruments = InstrumentRegistry::from_symbols(["X"]);
        let line = |reason: RejectReason| {
            let mut e = Event::new(0, 0, 5, 5);
            e.set_notification(Notification {
                user: 1,
                alert: AlertKind::Reject as u8,
                order_id: 2,
                value: i64::from(reason.code()),
                ..Notification::default()
            });
            format_notification(&e, &instruments)
        };
        assert!(
            line(RejectReason::UnknownOrder).ends_with(
                "X: cancel of order 2 rejected: unknown_order (no longer resting: filled or cancelled)"
            ),
            "{}",
            line(RejectReason::UnknownOrder)
        );
        assert!(line(RejectReason::NoMarket).ends_with("X: order 2 rejected: no_market"));
    }

    #[test]
    fn price_cross_both_ways_with_cooldown() {
        let mut n = rules(
            "[[alerts]]\nuser = 1\nrule = \"price_cross\"\ninstrument = \"X\"\nlevel = 100.0\ncooldown_ms = 1000\n",
        );
        let q = |t, mid: i64| (t, mid - P, mid + P);
        let fired = run(
            &mut n,
            &[
                q(0, 99 * P),
                q(10, 101 * P),
                q(20, 99 * P),
                q(2000, 101 * P),
                q(2100, 102 * P),
            ],
        );
        // Up at 10 fires; down at 20 is within the cool-down; up at 2000 fires.
        assert_eq!(fired, [(0, 101 * P), (0, 101 * P)]);
        let s = n.summary()[0].stats;
        assert_eq!((s.fired, s.cooldown), (2, 1));
    }

    #[test]
    fn spread_wide_is_deduplicated_until_it_narrows() {
        let mut n = rules(
            "[[alerts]]\nuser = 1\nrule = \"spread_wide\"\ninstrument = \"X\"\nspread = 1.0\n",
        );
        let fired = run(
            &mut n,
            &[
                (0, 99 * P, 100 * P),
                (1, 99 * P, 101 * P),
                (2, 99 * P, 102 * P),
                (3, 99 * P, 100 * P),
                (4, 98 * P, 100 * P),
            ],
        );
        assert_eq!(fired, [(0, 2 * P), (0, 2 * P)]);
        assert_eq!(n.summary()[0].stats.duplicate, 1);
    }

    #[test]
    fn move_within_the_window_only() {
        let mut n = rules(
            "[[alerts]]\nuser = 4\nrule = \"move\"\ninstrument = \"X\"\npercent = 1.0\nwindow_ms = 1000\n",
        );
        let q = |t, mid: i64| (t, mid - P / 100, mid + P / 100);
        // +1% within 500 ms fires; a slow drift of 1% over 3 s (0.5% per window) does not.
        let fired = run(
            &mut n,
            &[
                q(0, 100 * P),
                q(500, 101 * P),
                q(5000, 100 * P),
                q(6500, 100 * P + P / 2),
                q(8000, 101 * P),
            ],
        );
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0], (0, 10_000_000)); // +1.0% as a ratio in 1e-9
    }

    #[test]
    fn fills_and_rejects_with_dedup_per_order_and_status() {
        let mut n = rules(concat!(
            "[[alerts]]\nuser = 1\nrule = \"fills\"\nstrategy = \"mm\"\n",
            "[[alerts]]\nuser = 1\nrule = \"rejects\"\nstrategy = \"mm\"\n",
        ));
        let mut fired = Vec::new();
        let report = |id, status: ExecStatus, filled, reason| ExecutionReport {
            order_id: id,
            price: 5 * P,
            filled,
            status: status as u8,
            reason,
            ..ExecutionReport::default()
        };
        for r in [
            report(1, ExecStatus::PartiallyFilled, 1, 0),
            report(1, ExecStatus::PartiallyFilled, 1, 0),
            report(1, ExecStatus::Filled, 1, 0),
            report(2, ExecStatus::New, 0, 0),
            report(3, ExecStatus::Rejected, 0, 3),
        ] {
            n.on_report(0, &r, 0, &mut |e: Event| {
                let x = e.notification().copied().unwrap_or_default();
                fired.push((x.rule, x.order_id, x.alert, x.value));
            });
        }
        assert_eq!(fired, [(0, 1, 4, 5 * P), (0, 1, 4, 5 * P), (1, 3, 5, 3)]);
        assert_eq!(n.summary()[0].stats.duplicate, 1);
    }
}
