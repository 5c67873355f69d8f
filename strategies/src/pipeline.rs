//! The assembled trading pipeline: feed -> ingest -> market-data ring -> strategies ->
//! order rings -> execution -> execution ring -> notifier -> notification ring -> alert
//! log, run to the end of a feed, with a [`Report`].
//!
//! ```text
//!  feed ─► ingest ─► MD ring ─┬─► strategy 0 ─► order ring 0 ─┐
//!                             ├─► strategy 1 ─► order ring 1 ─┼─► execution ─► exec ring ─┬─► strategies
//!                             │      (execution reads MD after every strategy)           ├─► notifier ─► notification ring ─► alert log
//!                             └─────────────────────────────────────────────────────────┘
//! ```
//!
//! **Threads (2 cores).** `ingest` runs the feed; `trading` runs every strategy, the
//! execution agent, the notifier and the alert log, in turn. Both idle by backoff (spin,
//! yield, then park; woken by the rings' writers), never busy-spin. The stages run in
//! lockstep over the market data ([`crate::lockstep`]), so the same input gives the same
//! orders, execution reports and notifications, whatever the timing.
//!
//! **Replay timing.** A recorded file's receive stamps are the recording's. With
//! [`PipelineConfig::restamp`] (the default) the ingest stamps each event's `receive_ts`
//! with the wall clock as it enters the ring — so per-hop latency is real — after moving
//! its event time (exchange time, or the recorded receive time) into `exchange_ts`, which is
//! what strategies, timers and risk run on: decisions are unchanged. [`PipelineConfig::pace`]
//! replays at the recorded pace (times a speed factor) instead of flat out.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tickwire_engine::agent::{Layout, PipelineError, PipelineReport, ThreadSpec};
use tickwire_engine::clock::wall_ns;
use tickwire_engine::event::Event;
use tickwire_engine::idle::IdleStrategy;
use tickwire_engine::instrument::InstrumentRegistry;
use tickwire_engine::latency::{HopLatency, LatencyRecorder, Percentiles, format_ns};
use tickwire_engine::ring::{RingBuilder, RingError, RingMonitor, Subscriber};
use tickwire_feeds::{Feed, FeedError, FeedStatus, IngestAgent, Sink};

use crate::config::ConfigError;
use crate::execution::{ExecutionAgent, ExecutionLatency, ExecutionSummary};
use crate::lockstep::Progress;
use crate::market::event_time;
use crate::notify::{
    AlertLog, AlertLogSummary, AlertRuleConfig, Notifier, NotifierAgent, NotifierSummary,
};
use crate::position::money_to_f64;
use crate::registry::Registry;
use crate::risk::{KillSwitch, RiskChecker, RiskConfig};
use crate::strategy::{StrategyAgent, StrategyState};
use crate::venue::{PaperVenue, Venue};

/// The whole configuration file.
///
/// ```toml
/// [pipeline]
/// restamp = true
///
/// [risk]
/// max_order_size = 0.5
///
/// [strategies.btc_mm]          # instance name
/// kind = "market_maker"        # registered kind (default: the instance name)
/// user = 7                     # owner, for alert rules (optional)
/// instrument = "BTCUSDT"       # ... the kind's parameters
/// size = 0.01
/// max_position = 0.05
///
/// [[alerts]]
/// user = 7
/// rule = "fills"
/// strategy = "btc_mm"
/// cooldown_ms = 1000
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TradingConfig {
    /// Rings, threads, replay timing.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// Pre-trade risk limits.
    #[serde(default)]
    pub risk: RiskConfig,
    /// Strategy instances by name (sorted: ids follow this order).
    #[serde(default)]
    pub strategies: BTreeMap<String, toml::Table>,
    /// Alert rules.
    #[serde(default)]
    pub alerts: Vec<AlertRuleConfig>,
}

impl TradingConfig {
    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::invalid("configuration", e))
    }

    /// Reads and parses a TOML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::invalid(path.display().to_string(), e))
    }

    /// The strategy instance names, in id order.
    pub fn strategy_names(&self) -> Vec<String> {
        self.strategies.keys().cloned().collect()
    }
}

/// The `[pipeline]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Market-data ring slots (power of two). Default 65536.
    pub md_ring: usize,
    /// Order ring slots per strategy (power of two): the most orders one strategy may send
    /// on one event. Default 1024.
    pub order_ring: usize,
    /// Execution ring slots. Default 4096.
    pub exec_ring: usize,
    /// Notification ring slots. Default 4096.
    pub notification_ring: usize,
    /// Stamp `receive_ts` with the wall clock at ingest (see the module docs). Default true.
    pub restamp: bool,
    /// Replay at the recorded pace times this factor (1.0 = real time); absent = flat out.
    pub pace: Option<f64>,
    /// Stop after this many market events (absent = the whole feed).
    pub max_events: Option<u64>,
    /// Idle strategy of the trading thread: `backoff` (default), `yielding`, `blocking`,
    /// `sleeping`, `busy-spin`, `no-op`, `spin-batching`.
    pub idle: String,
    /// Idle strategy of the ingest thread when its feed has nothing due: `backoff`
    /// (default), `yielding`, `blocking`, `sleeping`, `busy-spin`, `no-op`, `spin-batching`.
    /// A backoff thread parks for up to 1 ms, which a paced feed then sees as latency;
    /// `yielding` keeps it awake.
    pub ingest_idle: String,
    /// Cores for the `ingest` and `trading` threads: `[ingest, trading]`, or `[]` (or
    /// absent) for unpinned. `[]` undoes a default that pins.
    #[serde(with = "cores_toml")]
    pub cores: Option<[usize; 2]>,
    /// Run stages in lockstep (deterministic). Default true; false lets strategies run
    /// ahead of execution, as live trading would, and gives up determinism.
    pub lockstep: bool,
    /// Append every alert line to this file (created if absent; earlier runs' lines are
    /// kept).
    pub alert_log: Option<PathBuf>,
    /// Alert lines kept in the report. Default 10.
    pub alert_lines: usize,
    /// Give up (an error) if [`TradingPipeline::run`] (a replay to the feed's end) takes
    /// longer than this, seconds. Default 600. The service (`tickwire run`) and `tickwire
    /// replay --config` run until the input ends or Ctrl-C, and do not read it.
    pub timeout_s: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            md_ring: 65_536,
            order_ring: 1024,
            exec_ring: 4096,
            notification_ring: 4096,
            restamp: true,
            pace: None,
            max_events: None,
            idle: "backoff".into(),
            ingest_idle: "backoff".into(),
            cores: None,
            lockstep: true,
            alert_log: None,
            alert_lines: 10,
            timeout_s: 600,
        }
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A ring could not be built.
    #[error("ring: {0}")]
    Ring(#[from] RingError),
    /// The pipeline failed (a feed error, a panic, a timeout).
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The alert log file could not be created.
    #[error("{path}: {source}")]
    AlertLog {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A feed wrapper for replays: restamps receive times with the wall clock, paces to the
/// recorded receive times, stops after a number of events (see [`PipelineConfig`]).
#[derive(Debug)]
pub struct Replayed<F> {
    inner: F,
    restamp: bool,
    /// Wall ns per recorded ns.
    pace: Option<f64>,
    max_events: Option<u64>,
    emitted: u64,
    buf: Vec<Event>,
    head: usize,
    len: usize,
    inner_done: bool,
    /// (first recorded receive time, wall time when it was released).
    origin: Option<(u64, u64)>,
}

impl<F: Feed> Replayed<F> {
    /// Wraps `inner`.
    pub fn new(inner: F, restamp: bool, pace: Option<f64>, max_events: Option<u64>) -> Self {
        let size = 256.max(inner.max_events_per_message());
        Self {
            inner,
            restamp,
            pace: pace.filter(|p| *p > 0.0),
            max_events,
            emitted: 0,
            buf: vec![Event::default(); size],
            head: 0,
            len: 0,
            inner_done: false,
            origin: None,
        }
    }
}

impl<F: Feed> Feed for Replayed<F> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn poll(&mut self, sink: &mut Sink<'_>) -> Result<FeedStatus, FeedError> {
        if self.max_events.is_some_and(|m| self.emitted >= m) {
            return Ok(FeedStatus::End);
        }
        if self.head == self.len {
            if self.inner_done {
                return Ok(FeedStatus::End);
            }
            let mut inner_sink = Sink::from_slice(&mut self.buf);
            let status = self.inner.poll(&mut inner_sink);
            self.len = inner_sink.written();
            self.head = 0;
            match status {
                Ok(FeedStatus::End) => self.inner_done = true,
                Ok(_) => {}
                Err(e) => {
                    self.inner_done = true;
                    return Err(e);
                }
            }
            if self.len == 0 {
                return Ok(if self.inner_done {
                    FeedStatus::End
                } else {
                    FeedStatus::Idle
                });
            }
        }
        let now = wall_ns();
        while self.head < self.len && sink.remaining() > 0 {
            if self.max_events.is_some_and(|m| self.emitted >= m) {
                break;
            }
            let mut event = self.buf[self.head];
            if let Some(speed) = self.pace {
                let (first, started) = *self.origin.get_or_insert((event.receive_ts, now));
                let due = started + (event.receive_ts.saturating_sub(first) as f64 / speed) as u64;
                if due > now {
                    return Ok(FeedStatus::Idle);
                }
            }
            if self.restamp {
                event.exchange_ts = event_time(&event);
                event.receive_ts = now;
            }
            sink.push(event);
            self.head += 1;
            self.emitted += 1;
        }
        Ok(FeedStatus::Active)
    }

    fn instruments(&self) -> &InstrumentRegistry {
        self.inner.instruments()
    }
}

/// Latency of one hop in the report.
#[derive(Debug, Clone, PartialEq)]
pub struct HopReport {
    /// The hop, e.g. `tick->order`.
    pub name: String,
    /// Its percentiles, ns.
    pub percentiles: Percentiles,
    /// The whole run's histogram, ns (for plots and HdrHistogram logs).
    pub histogram: Histogram<u64>,
}

/// Everything a run did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The feed's name.
    pub feed: String,
    /// Market events replayed.
    pub events: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Strategy instance names, by id.
    pub strategies: Vec<String>,
    /// Instruments, for names.
    pub instruments: InstrumentRegistry,
    /// Orders, fills, rejects, positions, digests.
    pub execution: ExecutionSummary,
    /// Alert rules and their counters.
    pub notifier: NotifierSummary,
    /// What the alert log read.
    pub alert_log: AlertLogSummary,
    /// Per-hop latency.
    pub latency: Vec<HopReport>,
}

impl Report {
    /// Digest of the order, execution-report and notification sequences together: equal
    /// for equal runs.
    pub fn digest(&self) -> (u64, u64, u64) {
        (
            self.execution.order_digest,
            self.execution.report_digest,
            self.notifier.digest,
        )
    }

    /// Realized + unrealized PnL of all positions, quote currency (display only).
    pub fn total_pnl(&self) -> f64 {
        self.execution
            .positions
            .iter()
            .map(|((_, i), p)| money_to_f64(p.total(self.mark(*i))))
            .sum()
    }

    fn mark(&self, instrument: u32) -> i64 {
        self.execution
            .marks
            .get(instrument as usize)
            .copied()
            .unwrap_or(0)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.execution;
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "{}: {} market events in {:.3} s ({:.2} M events/s)",
            self.feed,
            self.events,
            secs,
            self.events as f64 / secs / 1e6
        )?;
        writeln!(f, "strategies: {}", self.strategies.join(", "))?;
        writeln!(
            f,
            "orders: {} new, {} cancels; fills: {} ({:.8} filled); reports: {}; resting at end: {}",
            e.orders,
            e.cancels,
            e.fills,
            e.filled_qty as f64 / 1e8,
            e.reports,
            e.resting
        )?;
        if e.rejects.is_empty() {
            writeln!(f, "rejects: none")?;
        } else {
            let list: Vec<String> = e
                .rejects
                .iter()
                .map(|(r, n)| format!("{} {n}", r.name()))
                .collect();
            writeln!(f, "rejects: {}", list.join(", "))?;
        }
        writeln!(
            f,
            "positions (PnL in quote currency, marked at the last mid):"
        )?;
        for ((s, i), p) in &e.positions {
            let mark = self.mark(*i);
            writeln!(
                f,
                "  {:<16} {:<10} qty {:>+14.8}  avg {:>12.4}  realized {:>+12.4}  unrealized {:>+12.4}  bought {:.8} sold {:.8} in {} fills",
                self.strategies.get(*s as usize).map_or("?", String::as_str),
                self.instruments.symbol(*i).unwrap_or("?"),
                p.qty as f64 / 1e8,
                p.avg_price() as f64 / 1e9,
                money_to_f64(p.realized),
                money_to_f64(p.unrealized(mark)),
                p.bought as f64 / 1e8,
                p.sold as f64 / 1e8,
                p.fills,
            )?;
        }
        writeln!(f, "total PnL: {:+.4}", self.total_pnl())?;
        writeln!(f, "alerts: {} notifications", self.notifier.notifications)?;
        for r in &self.notifier.rules {
            writeln!(
                f,
                "  user {} rule {} {:<36} fired {:>5}  cool-down suppressed {:>6}  duplicates suppressed {:>6}",
                r.user, r.rule, r.description, r.stats.fired, r.stats.cooldown, r.stats.duplicate
            )?;
        }
        for line in &self.alert_log.first_lines {
            writeln!(f, "  | {line}")?;
        }
        writeln!(
            f,
            "latency per hop:           count        p50        p99      p99.9        max"
        )?;
        for h in &self.latency {
            let p = h.percentiles;
            writeln!(
                f,
                "  {:<22} {:>8} {:>10} {:>10} {:>10} {:>10}",
                h.name,
                p.count,
                format_ns(p.p50),
                format_ns(p.p99),
                format_ns(p.p999),
                format_ns(p.max)
            )?;
        }
        let (o, r, n) = self.digest();
        write!(
            f,
            "digests: orders {o:016x} reports {r:016x} notifications {n:016x}"
        )
    }
}

/// Hop names, in pipeline order.
pub const HOPS: [&str; 7] = [
    "receive->strategy",
    "tick->decision",
    "decision->execution",
    "tick->order",
    "tick->report",
    "report->notifier",
    "tick->notification",
];

/// Builds and runs the trading pipeline.
#[derive(Debug)]
pub struct TradingPipeline {
    config: TradingConfig,
    registry: Registry,
    venue: Option<Box<dyn Venue>>,
    kill_switch: KillSwitch,
}

impl fmt::Debug for dyn Venue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TradingPipeline {
    /// A pipeline with `config`, the built-in strategies and the paper venue.
    pub fn new(config: TradingConfig) -> Self {
        let kill_switch = KillSwitch::new(config.risk.kill_switch);
        Self {
            config,
            registry: Registry::builtin(),
            venue: None,
            kill_switch,
        }
    }

    /// Uses `registry` for strategy kinds.
    pub fn with_registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Trades on `venue` instead of the paper venue.
    pub fn with_venue(mut self, venue: impl Venue + 'static) -> Self {
        self.venue = Some(Box::new(venue));
        self
    }

    /// The kill switch (pull it from any thread to reject every new order).
    pub fn kill_switch(&self) -> KillSwitch {
        self.kill_switch.clone()
    }

    /// Runs `feed` to its end through the pipeline; returns the report.
    pub fn run<F: Feed + 'static>(self, feed: F) -> Result<Report, RunError> {
        let timeout = Duration::from_secs(self.config.pipeline.timeout_s);
        let assembled = self.assemble(feed, &Taps::default())?;
        let started = Instant::now();
        let pipeline = assembled.layout.spawn()?;
        let threads = pipeline.join_timeout(timeout)?;
        Ok(assembled.finish.report(&threads, started.elapsed()))
    }

    /// Builds the rings and agents for `feed` without starting them, with the extra
    /// subscribers `taps` asks for: what a host (the `tickwire run` service) uses to add its
    /// journal recorder, publishers and bridges to the same rings, and threads of its own
    /// to the layout. Start [`Assembled::layout`], join it, then call
    /// [`Finish::report`].
    pub fn assemble<F: Feed + 'static>(self, feed: F, taps: &Taps) -> Result<Assembled, RunError> {
        let Self {
            config,
            registry,
            venue,
            kill_switch,
        } = self;
        config.risk.validate()?;
        let pc = &config.pipeline;
        let instruments = feed.instruments().clone();
        let names = config.strategy_names();
        let feed_name = feed.name().to_owned();

        // Strategies from their tables.
        let mut strategies = Vec::with_capacity(names.len());
        for (name, table) in &config.strategies {
            let mut params = table.clone();
            let kind = match params.remove("kind") {
                Some(toml::Value::String(k)) => k,
                Some(other) => {
                    return Err(ConfigError::invalid(
                        format!("[strategies.{name}]"),
                        format!("`kind` must be a string, got {other}"),
                    )
                    .into());
                }
                None => name.clone(),
            };
            params.remove("user");
            strategies.push(registry.build(name, &kind, params, &instruments)?);
        }
        let notifier = Notifier::new(&config.alerts, &instruments, &names)?;
        let idle: IdleStrategy = pc
            .idle
            .parse()
            .map_err(|e: String| ConfigError::invalid("[pipeline] idle", e))?;
        let ingest_idle: IdleStrategy = pc
            .ingest_idle
            .parse()
            .map_err(|e: String| ConfigError::invalid("[pipeline] ingest_idle", e))?;

        let hops: Vec<Arc<HopLatency>> =
            HOPS.iter().map(|h| Arc::new(HopLatency::new(*h))).collect();
        let rec = |i: usize| LatencyRecorder::new(Arc::clone(&hops[i]));

        // Rings.
        let mut md = RingBuilder::<Event>::new(pc.md_ring)?;
        let strategy_md: Vec<_> = names
            .iter()
            .map(|n| md.subscriber(&format!("strategy:{n}")))
            .collect();
        let upstream: Vec<_> = strategy_md.iter().collect();
        let exec_md = md.subscriber_after("execution", &upstream);
        let notifier_md = md.subscriber_after("notifier", &[&exec_md]);
        let md_taps: Vec<_> = taps.md.iter().map(|n| md.subscriber(n)).collect();
        let md_monitor = md.monitor("md");
        let md_publisher = md.build()?;

        let mut exec_ring = RingBuilder::<Event>::new(pc.exec_ring)?;
        let strategy_exec: Vec<_> = names
            .iter()
            .map(|n| exec_ring.subscriber(&format!("reports:{n}")))
            .collect();
        let notifier_exec = exec_ring.subscriber("notifier");
        let exec_taps: Vec<_> = taps.exec.iter().map(|n| exec_ring.subscriber(n)).collect();
        let exec_monitor = exec_ring.monitor("exec");
        let exec_publisher = exec_ring.build()?;

        let mut notification_ring = RingBuilder::<Event>::new(pc.notification_ring)?;
        let log_sub = notification_ring.subscriber("alert-log");
        let notification_taps: Vec<_> = taps
            .notifications
            .iter()
            .map(|n| notification_ring.subscriber(n))
            .collect();
        let notification_monitor = notification_ring.monitor("notifications");
        let notification_publisher = notification_ring.build()?;

        let exec_progress = Progress::new();
        let notifier_progress = Progress::new();
        let lockstep = pc.lockstep;

        let mut order_subs = Vec::with_capacity(names.len());
        let mut trading = ThreadSpec::new("trading")
            .core(pc.cores.map(|c| c[1]))
            .idle(idle);
        for (id, ((strategy, md_sub), exec_sub)) in strategies
            .into_iter()
            .zip(strategy_md)
            .zip(strategy_exec)
            .enumerate()
        {
            let mut orders = RingBuilder::<Event>::new(pc.order_ring)?;
            order_subs.push(orders.subscriber("execution"));
            let state =
                StrategyState::new(id as u32, instruments.clone()).with_decision_latency(rec(1));
            let agent = StrategyAgent::new(
                format!("strategy:{}", names[id]),
                strategy,
                state,
                md_sub,
                exec_sub,
                orders.build()?,
                lockstep.then(|| exec_progress.clone()),
            )
            .with_tick_latency(rec(0));
            trading = trading.agent(agent);
        }
        let venue: Box<dyn Venue> = venue.unwrap_or_else(|| Box::new(PaperVenue::new()));
        let mut limits = config.risk.limits();
        let kill_switch_handle = kill_switch.clone();
        limits.kill_switch = kill_switch;
        let execution = ExecutionAgent::new(
            exec_md,
            order_subs,
            exec_publisher,
            venue,
            RiskChecker::new(limits),
            exec_progress,
            lockstep.then(|| notifier_progress.clone()),
            ExecutionLatency {
                decision_to_execution: Some(rec(2)),
                tick_to_order: Some(rec(3)),
                tick_to_report: Some(rec(4)),
            },
        );
        let exec_slot = execution.summary_slot();
        let notifier = NotifierAgent::new(
            notifier,
            notifier_md,
            notifier_exec,
            notification_publisher,
            notifier_progress,
        )
        .with_latency(rec(6), rec(5));
        let notifier_slot = notifier.summary_slot();
        let writer: Option<Box<dyn std::io::Write + Send>> = match &pc.alert_log {
            Some(path) => Some(Box::new(std::io::BufWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| RunError::AlertLog {
                        path: path.display().to_string(),
                        source,
                    })?,
            ))),
            None => None,
        };
        let log = AlertLog::new(log_sub, instruments.clone(), writer, pc.alert_lines);
        let log_slot = log.summary_slot();
        trading = trading.agent(execution).agent(notifier).agent(log);

        let ingest = IngestAgent::new(
            Replayed::new(feed, pc.restamp, pc.pace, pc.max_events),
            md_publisher,
        );
        let layout = Layout::new()
            .thread(
                ThreadSpec::new("ingest")
                    .core(pc.cores.map(|c| c[0]))
                    .idle(ingest_idle)
                    .agent(ingest),
            )
            .thread(trading);
        Ok(Assembled {
            layout,
            md_taps,
            exec_taps,
            notification_taps,
            monitors: RingMonitors {
                md: md_monitor,
                exec: exec_monitor,
                notifications: notification_monitor,
            },
            hops: hops.clone(),
            kill_switch: kill_switch_handle,
            finish: Finish {
                feed: feed_name,
                strategies: names,
                instruments,
                hops,
                exec_slot,
                notifier_slot,
                log_slot,
            },
        })
    }
}

/// Extra subscribers a host asks [`TradingPipeline::assemble`] for, by name: each reads the
/// whole of its ring, independently of the pipeline's own stages (and, like every
/// subscriber, gates the ring's writer, so it must keep up or hand work off).
#[derive(Debug, Clone, Default)]
pub struct Taps {
    /// On the market-data ring (a journal recorder, a publisher).
    pub md: Vec<String>,
    /// On the execution-report ring.
    pub exec: Vec<String>,
    /// On the notification ring.
    pub notifications: Vec<String>,
}

/// Read-only views of the pipeline's rings, for metrics.
#[derive(Debug, Clone)]
pub struct RingMonitors {
    /// The market-data ring.
    pub md: RingMonitor<Event>,
    /// The execution-report ring.
    pub exec: RingMonitor<Event>,
    /// The notification ring.
    pub notifications: RingMonitor<Event>,
}

/// A pipeline built by [`TradingPipeline::assemble`], not yet started.
#[derive(Debug)]
pub struct Assembled {
    /// The threads `ingest` and `trading`; add the host's own, then spawn.
    pub layout: Layout,
    /// The subscribers [`Taps::md`] asked for, in its order.
    pub md_taps: Vec<Subscriber<Event>>,
    /// The subscribers [`Taps::exec`] asked for.
    pub exec_taps: Vec<Subscriber<Event>>,
    /// The subscribers [`Taps::notifications`] asked for.
    pub notification_taps: Vec<Subscriber<Event>>,
    /// Views of the rings.
    pub monitors: RingMonitors,
    /// Every hop's latency, in [`HOPS`] order (take intervals for live figures).
    pub hops: Vec<Arc<HopLatency>>,
    /// The kill switch of the risk checks.
    pub kill_switch: KillSwitch,
    /// Collects the report once the threads have ended.
    pub finish: Finish,
}

/// What [`Assembled`] needs to build the [`Report`] after the run.
#[derive(Debug)]
pub struct Finish {
    feed: String,
    strategies: Vec<String>,
    instruments: InstrumentRegistry,
    hops: Vec<Arc<HopLatency>>,
    exec_slot: Arc<Mutex<Option<ExecutionSummary>>>,
    notifier_slot: Arc<Mutex<Option<NotifierSummary>>>,
    log_slot: Arc<Mutex<Option<AlertLogSummary>>>,
}

impl Finish {
    /// The report of a run whose threads ended as `threads` says, `elapsed` long. Latency
    /// percentiles are those of whatever the hops recorded since their last
    /// `take_interval`.
    pub fn report(&self, threads: &PipelineReport, elapsed: Duration) -> Report {
        let events = threads
            .threads
            .iter()
            .flat_map(|t| &t.agents)
            .find(|a| a.name.starts_with("ingest"))
            .map_or(0, |a| a.work);
        let latency = self
            .hops
            .iter()
            .map(|h| {
                let histogram = h.take_interval();
                HopReport {
                    name: h.name().to_owned(),
                    percentiles: Percentiles::of(&histogram),
                    histogram,
                }
            })
            .collect();
        Report {
            feed: self.feed.clone(),
            events,
            elapsed,
            strategies: self.strategies.clone(),
            instruments: self.instruments.clone(),
            execution: take(&self.exec_slot).unwrap_or_default(),
            notifier: take(&self.notifier_slot).unwrap_or_default(),
            alert_log: take(&self.log_slot).unwrap_or_default(),
            latency,
        }
    }
}

fn take<T>(slot: &Arc<Mutex<Option<T>>>) -> Option<T> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Runs `feed` through the pipeline with `config`, the built-in strategies and the paper
/// venue: what `tickwire replay` calls.
pub fn run_replay<F: Feed + 'static>(feed: F, config: &TradingConfig) -> Result<Report, RunError> {
    TradingPipeline::new(config.clone()).run(feed)
}

/// `[pipeline] cores` in TOML, which has no null: `[ingest, trading]` pins, `[]` unpins.
mod cores_toml {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        cores: &Option<[usize; 2]>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match cores {
            Some(pair) => serializer.collect_seq(pair),
            None => serializer.collect_seq(std::iter::empty::<usize>()),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<[usize; 2]>, D::Error> {
        match Vec::<usize>::deserialize(deserializer)?.as_slice() {
            [] => Ok(None),
            &[ingest, trading] => Ok(Some([ingest, trading])),
            other => Err(D::Error::custom(format!(
                "expected [ingest, trading] or [] (unpinned), got {} cores",
                other.len()
            ))),
        }
    }
}
