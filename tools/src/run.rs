//! `tickwire run`: the colocated service, everything in one process.
//!
//! ```text
//!  feed ─► ingest ─► MD ring ─┬─► strategies ─► order rings ─► execution ─► exec ring ─┬─► strategies
//!                             ├─► execution (after the strategies)                     ├─► notifier ─► notification ring ─┬─► alert log
//!                             ├─► notifier (after execution)                           ├─► QUIC publisher                 ├─► QUIC publisher
//!                             ├─► journal recorder                                     └─► counters                       └─► counters
//!                             └─► QUIC publisher ─► per-subscriber queues ─► tokio (quinn) ─► subscribers
//! ```
//!
//! **Threads.** `ingest` (the feed) and `trading` (strategies, execution, notifier, alert
//! log) come from [`TradingPipeline::assemble`]; `io` runs the journal recorder, the QUIC
//! publisher agent and the counters; one tokio worker runs quinn; one thread serves
//! `/metrics`; the main thread prints the status line and waits for a signal. Nothing on
//! the rings' path waits on the network or the disk beyond its own ring.
//!
//! **Shutdown.** The first Ctrl-C or SIGTERM raises the pipeline's stop token: the feed
//! stops, every ring drains to its end, the recorder flushes and fsyncs the journal, the
//! publisher hands its last frames to the connections, and they are closed with a reason
//! once written. Then the summary. A second signal exits at once.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use hdrhistogram::Histogram;
use tickwire_engine::agent::{Agent, AgentContext, AgentError, ThreadSpec, available_cores};
use tickwire_engine::event::{Event, ExecStatus};
use tickwire_engine::idle::IdleStrategy;
use tickwire_engine::instrument::InstrumentRegistry;
use tickwire_engine::journal::{
    FsyncPolicy, JournalConfig, JournalReader, JournalWriter, OpenOptions, RecorderAgent, Verify,
};
use tickwire_engine::latency::{HopLatency, Percentiles, format_ns, new_histogram};
use tickwire_engine::ring::Subscriber;
use tickwire_feeds::Feed;
use tickwire_feeds::open::FeedSpec;
use tickwire_feeds::primed::{PRIME_EVENTS, Primed};
use tickwire_feeds::synthetic::{SyntheticConfig, SyntheticFeed};
use tickwire_nats::{NatsSink, NatsSinkHandle};
use tickwire_quic::fanout::{FanoutConfig, FanoutHandle, PublisherAgent};
use tickwire_quic::protocol::ChannelKind;
use tickwire_quic::server::{Entitlement, Server, ServerConfig, TokenEntry, load_or_create_token};
use tickwire_strategies::pipeline::{HOPS, Taps, TradingPipeline};

use crate::config::{FsyncSetting, FsyncWord, ServiceConfig, StatusFormat, parse_sha256};
use crate::pipeline::install_ctrl_c;
use crate::progress::human_rate;

/// Human output (banner, summary): on stdout, or on stderr when the status lines are JSON
/// so that stdout carries JSON only.
static HUMAN_TO_STDERR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

macro_rules! say {
    ($($arg:tt)*) => {
        if HUMAN_TO_STDERR.load(Ordering::Relaxed) {
            eprintln!($($arg)*);
        } else {
            println!($($arg)*);
        }
    };
}

/// Options of `tickwire run`.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Configuration file (TOML). Without one, the embedded default runs: the synthetic
    /// feed, two strategies, paper execution, alerts, the journal, QUIC on
    /// 127.0.0.1:4433 and metrics on 127.0.0.1:9464.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration (every key, defaults included) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Check the configuration (values, cores, files, ports) and exit.
    #[arg(long)]
    pub check: bool,
    /// Override `data_dir` (journal, QUIC certificate and token).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Stop (cleanly, as on Ctrl-C) after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
}

/// Runs the service until a signal (or `--duration`).
pub fn run(args: &RunArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => ServiceConfig::from_file(path)?,
        None => ServiceConfig::default(),
    };
    if let Some(dir) = &args.data_dir {
        config.data_dir.clone_from(dir);
    }
    if args.print_config {
        print!("{}", config.to_toml()?);
        return Ok(());
    }
    config.validate()?;
    if let Some(seconds) = args.duration
        && Duration::try_from_secs_f64(seconds).is_err()
    {
        bail!("--duration {seconds}: not a number of seconds (0 or more, finite)");
    }
    HUMAN_TO_STDERR.store(
        config.status.enabled && config.status.format == StatusFormat::Json,
        Ordering::Relaxed,
    );
    let metrics_listener = config.check_ports()?;
    if args.check {
        // Strategies and alert rules are checked against the feed's instruments by
        // building the pipeline (nothing starts).
        TradingPipeline::new(config.trading())
            .assemble(open_feed(&config)?, &Taps::default())
            .context("the strategies or alert rules are not valid for this feed")?;
        println!("configuration OK");
        return Ok(());
    }
    Service::start(config, metrics_listener)?.run_until_stopped(args.duration)
}

/// Counters the status line, the metrics and the summary read.
#[derive(Debug, Default)]
struct Counters {
    reports: AtomicU64,
    fills: AtomicU64,
    rejects: AtomicU64,
    notifications: AtomicU64,
}

/// Counts execution reports and notifications from their rings (an agent on `io`).
struct CountersAgent {
    exec: Subscriber<Event>,
    notifications: Subscriber<Event>,
    counters: Arc<Counters>,
}

impl Agent for CountersAgent {
    fn name(&self) -> &str {
        "counters"
    }

    fn on_start(&mut self, ctx: &mut AgentContext) -> Result<(), AgentError> {
        ctx.wake_on(&self.exec);
        ctx.wake_on(&self.notifications);
        Ok(())
    }

    fn do_work(&mut self) -> usize {
        let c = &self.counters;
        let (mut fills, mut rejects) = (0, 0);
        let reports = self.exec.poll(|event, _, _| {
            if let Some(report) = event.execution_report() {
                match ExecStatus::from_code(report.status) {
                    Some(ExecStatus::Filled | ExecStatus::PartiallyFilled) => fills += 1,
                    Some(ExecStatus::Rejected) => rejects += 1,
                    _ => {}
                }
            }
        });
        let notifications = self.notifications.poll(|_, _, _| {});
        c.reports.fetch_add(reports as u64, Ordering::Relaxed);
        c.fills.fetch_add(fills, Ordering::Relaxed);
        c.rejects.fetch_add(rejects, Ordering::Relaxed);
        c.notifications
            .fetch_add(notifications as u64, Ordering::Relaxed);
        reports + notifications
    }

    fn is_done(&self) -> bool {
        self.exec.is_finished() && self.notifications.is_finished()
    }
}

/// The running service.
struct Service {
    config: ServiceConfig,
    pipeline: Option<tickwire_engine::agent::Pipeline>,
    finish: tickwire_strategies::pipeline::Finish,
    monitors: tickwire_strategies::pipeline::RingMonitors,
    hops: Vec<Arc<HopLatency>>,
    totals: Vec<Histogram<u64>>,
    counters: Arc<Counters>,
    quic: Option<Quic>,
    nats: Option<NatsSinkHandle>,
    /// One tokio worker for quinn and the NATS client, when either runs.
    runtime: Option<tokio::runtime::Runtime>,
    metrics: Arc<Mutex<String>>,
    journal_dir: Option<PathBuf>,
    journal_start: u64,
    started: Instant,
}

struct Quic {
    server: Server,
    fanout: FanoutHandle,
}

impl Service {
    fn start(config: ServiceConfig, metrics_listener: Option<TcpListener>) -> Result<Self> {
        let feed = open_feed(&config)?;
        let instruments = feed.instruments().clone();
        let mut taps = Taps::default();
        if config.journal.enabled {
            taps.md.push("journal".into());
        }
        if config.quic.enabled {
            taps.md.push("quic".into());
            taps.exec.push("quic".into());
            taps.notifications.push("quic".into());
        }
        if config.nats.is_some() {
            taps.md.push("nats".into());
            taps.exec.push("nats".into());
            taps.notifications.push("nats".into());
        }
        taps.exec.push("counters".into());
        taps.notifications.push("counters".into());
        let mut assembled = TradingPipeline::new(config.trading())
            .assemble(feed, &taps)
            .context("cannot build the trading pipeline")?;
        let mut md_taps = assembled.md_taps.drain(..);
        let mut exec_taps = assembled.exec_taps.drain(..);
        let mut notification_taps = assembled.notification_taps.drain(..);

        let io_idle: IdleStrategy = config
            .io
            .idle
            .parse()
            .map_err(|e: String| anyhow::anyhow!("[io] idle: {e}"))?;
        let mut io = ThreadSpec::new("io").core(config.io.core).idle(io_idle);

        let mut journal_dir = None;
        let mut journal_start = 0;
        if config.journal.enabled {
            let dir = config.journal_dir();
            check_journal_instruments(&dir, &instruments)?;
            let writer = JournalWriter::open(
                &dir,
                JournalConfig {
                    segment_bytes: config.journal.segment_mib << 20,
                    fsync: match config.journal.fsync {
                        FsyncSetting::Word(FsyncWord::Never) => FsyncPolicy::Never,
                        FsyncSetting::Word(FsyncWord::Batch) => FsyncPolicy::EveryBatch,
                        FsyncSetting::Millis(ms) => {
                            FsyncPolicy::Interval(Duration::from_millis(ms))
                        }
                    },
                    instruments: instruments.clone(),
                    ..JournalConfig::default()
                },
            )
            .with_context(|| format!("[journal] cannot open the journal in {}", dir.display()))?;
            journal_start = writer.next_sequence();
            let tap = md_taps.next().context("journal tap")?;
            io = io.agent(RecorderAgent::new(tap, writer));
            journal_dir = Some(dir);
        }

        let runtime = if config.quic.enabled || config.nats.is_some() {
            Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("tokio")
                    .enable_all()
                    .build()
                    .context("cannot start the tokio runtime for QUIC and NATS")?,
            )
        } else {
            None
        };
        let quic = if let (true, Some(runtime)) = (config.quic.enabled, &runtime) {
            let md = md_taps.next().context("quic tap")?;
            let exec = exec_taps.next().context("quic tap")?;
            let notes = notification_taps.next().context("quic tap")?;
            // Market data first: with the journal, a resume older than the in-memory
            // window is served from it (the recorder above writes this same ring).
            let (publisher, handle) = PublisherAgent::try_new(
                vec![md, exec, notes],
                FanoutConfig {
                    retain_per_channel: config.quic.retain_per_channel,
                    instruments: instruments.clone(),
                    journal: journal_dir.clone(),
                    max_journal_replay: config.quic.max_journal_replay,
                    linger: Duration::from_micros(config.quic.linger_us),
                    ..FanoutConfig::default()
                },
            )
            .context("[quic] cannot start the publisher")?;
            let fanout = handle.clone();
            io = io.agent(publisher);
            let server_config = server_config(&config)?;
            let server = {
                let _guard = runtime.enter();
                Server::start(server_config, handle).with_context(|| {
                    format!(
                        "[quic] cannot start the QUIC server on {}",
                        config.quic.bind
                    )
                })?
            };
            Some(Quic { server, fanout })
        } else {
            None
        };

        let nats = if let (Some(nats), Some(runtime)) = (&config.nats, &runtime) {
            let mut nats = nats.clone();
            match (&nats.journal, &journal_dir) {
                // Catch-up after an outage reads the service's own journal; the sink's
                // message ids are then journal sequences, stable across restarts. This run
                // appends from `journal_start`, whatever the file says.
                (None, Some(_)) => {
                    nats.journal.clone_from(&journal_dir);
                    nats.journal_first_sequence = journal_start;
                }
                (Some(theirs), Some(ours)) if theirs == ours => {
                    nats.journal_first_sequence = journal_start;
                }
                (Some(theirs), Some(ours)) => bail!(
                    "[nats] journal = {}: the sink can catch up only from the journal this \
                     service writes ({}); leave the key out",
                    theirs.display(),
                    ours.display()
                ),
                (Some(theirs), None) => bail!(
                    "[nats] journal = {}: [journal] is disabled, so no journal of this \
                     service's market data exists to catch up from; leave the key out",
                    theirs.display()
                ),
                (None, None) => {}
            }
            let md = md_taps.next().context("nats tap")?;
            let exec = exec_taps.next().context("nats tap")?;
            let notes = notification_taps.next().context("nats tap")?;
            let (sink, handle) = NatsSink::new(
                nats,
                vec![md, exec, notes],
                instruments.clone(),
                runtime.handle(),
            )
            .context("[nats] cannot start the JetStream sink")?;
            io = io.agent(sink);
            Some(handle)
        } else {
            None
        };

        let counters = Arc::new(Counters::default());
        io = io.agent(CountersAgent {
            exec: exec_taps.next().context("counters tap")?,
            notifications: notification_taps.next().context("counters tap")?,
            counters: Arc::clone(&counters),
        });
        drop((md_taps, exec_taps, notification_taps));

        let layout = std::mem::take(&mut assembled.layout).thread(io);
        print_banner(&config, &layout.describe(), quic.as_ref());
        let metrics = Arc::new(Mutex::new(String::new()));
        if let Some(listener) = metrics_listener {
            let text = Arc::clone(&metrics);
            std::thread::Builder::new()
                .name("metrics".into())
                .spawn(move || serve_metrics(&listener, &text))
                .context("cannot start the metrics thread")?;
        }
        let pipeline = layout
            .spawn()
            .context("cannot start the pipeline threads")?;
        install_ctrl_c(pipeline.stop_token())?;
        let hops = assembled.hops.clone();
        let totals = hops.iter().map(|_| new_histogram()).collect();
        Ok(Self {
            config,
            pipeline: Some(pipeline),
            finish: assembled.finish,
            monitors: assembled.monitors,
            hops,
            totals,
            counters,
            quic,
            nats,
            runtime,
            metrics,
            journal_dir,
            journal_start,
            started: Instant::now(),
        })
    }

    fn run_until_stopped(mut self, duration: Option<f64>) -> Result<()> {
        let deadline = duration
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .and_then(|d| self.started.checked_add(d));
        let interval = Duration::from_millis(self.config.status.interval_ms);
        let mut last = Snapshot::take(&self);
        let mut next_tick = self.started + interval;
        let pipeline = self.pipeline.take().context("started once")?;
        while !pipeline.is_finished() {
            std::thread::sleep(Duration::from_millis(20));
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                pipeline.stop_token().stop();
            }
            if now >= next_tick {
                next_tick += interval;
                let snapshot = Snapshot::take(&self);
                let intervals: Vec<Histogram<u64>> =
                    self.hops.iter().map(|h| h.take_interval()).collect();
                for (total, h) in self.totals.iter_mut().zip(&intervals) {
                    let _ = total.add(h);
                }
                if self.config.status.enabled {
                    match self.config.status.format {
                        StatusFormat::Text => {
                            println!("{}", self.status_line(&last, &snapshot, &intervals));
                        }
                        StatusFormat::Json => {
                            println!("{}", self.status_json(&last, &snapshot, &intervals));
                        }
                    }
                }
                *self.metrics.lock().unwrap_or_else(|p| p.into_inner()) =
                    self.render_metrics(&snapshot);
                last = snapshot;
            }
        }
        let elapsed = self.started.elapsed();
        let threads = pipeline.join();
        for (total, hop) in self.totals.iter_mut().zip(&self.hops) {
            let _ = total.add(hop.take_interval());
        }
        // Every ring drained and the publisher handed its last frames to the connections:
        // let them be written, then close with a reason.
        if let (Some(quic), Some(runtime)) = (&self.quic, &self.runtime) {
            runtime.block_on(
                quic.server
                    .shutdown_gracefully("tickwire shutting down", Duration::from_secs(5)),
            );
        }
        // Everything the sink read is acknowledged by JetStream before the summary.
        let nats = self
            .nats
            .take()
            .map(|handle| handle.finish(Duration::from_secs(10)));
        let threads = threads.context("the pipeline failed")?;
        let mut report = self.finish.report(&threads, elapsed);
        for (hop, total) in report.latency.iter_mut().zip(&self.totals) {
            hop.percentiles = Percentiles::of(total);
            hop.histogram = total.clone();
        }
        say!("\n{report}");
        let snapshot = Snapshot::take(&self);
        if let Some(dir) = &self.journal_dir {
            let reader = JournalReader::open(dir)
                .with_context(|| format!("cannot reopen the journal in {}", dir.display()))?;
            let recorded = reader.end_sequence() - self.journal_start;
            say!(
                "journal: {recorded} events recorded this run in {} (sequences {}..{}), {} published on the market-data ring",
                dir.display(),
                self.journal_start,
                reader.end_sequence(),
                snapshot.md
            );
            if recorded != snapshot.md {
                bail!(
                    "the journal holds {recorded} events of this run but {} were published",
                    snapshot.md
                );
            }
        }
        if let Some(quic) = &self.quic {
            let s = quic.fanout.stats();
            say!(
                "quic: {} events published, {} frames queued to subscribers, {} conflated, {} slow disconnects",
                s.events.load(Ordering::Relaxed),
                s.frames_queued.load(Ordering::Relaxed),
                s.conflated.load(Ordering::Relaxed),
                s.slow_disconnects.load(Ordering::Relaxed)
            );
        }
        match nats {
            Some(Ok(snapshot)) => say!("{snapshot}"),
            Some(Err(e)) => say!("nats: not everything was acknowledged: {e}"),
            None => {}
        }
        Ok(())
    }

    fn status_line(&self, last: &Snapshot, now: &Snapshot, hops: &[Histogram<u64>]) -> String {
        let secs = now.at.duration_since(last.at).as_secs_f64().max(1e-9);
        let rate = |a: u64, b: u64| human_rate((b - a) as f64 / secs);
        let mut line = format!(
            "[{:>6.1}s] md {}/s lag {} | exec {}/s | alerts {}/s",
            now.at.duration_since(self.started).as_secs_f64(),
            rate(last.md, now.md),
            now.md_lag,
            rate(last.exec, now.exec),
            rate(last.notifications, now.notifications),
        );
        for (name, h) in HOPS.iter().zip(hops) {
            if matches!(
                *name,
                "receive->strategy" | "tick->order" | "tick->notification"
            ) {
                if h.is_empty() {
                    line.push_str(&format!(" | {name} -"));
                } else {
                    let p = Percentiles::of(h);
                    line.push_str(&format!(
                        " | {name} {}/{}",
                        format_ns(p.p50),
                        format_ns(p.p99)
                    ));
                }
            }
        }
        line.push_str(&format!(
            " | subs {} conflated {} drops {} rejects {}",
            now.subscribers, now.conflated, now.drops, now.rejects
        ));
        if let Some(nats) = &self.nats {
            let s = nats.stats().snapshot();
            line.push_str(&format!(
                " | nats {} acked {} dropped {}",
                if !s.connected {
                    "down"
                } else if s.ready {
                    "up"
                } else {
                    "setting up"
                },
                s.events_acked,
                s.dropped_events
            ));
        }
        line
    }

    fn status_json(&self, last: &Snapshot, now: &Snapshot, hops: &[Histogram<u64>]) -> String {
        let secs = now.at.duration_since(last.at).as_secs_f64().max(1e-9);
        let per_sec = |a: u64, b: u64| (b - a) as f64 / secs;
        let hops: serde_json::Map<String, serde_json::Value> = HOPS
            .iter()
            .zip(hops)
            .map(|(name, h)| {
                let p = Percentiles::of(h);
                (
                    (*name).to_owned(),
                    serde_json::json!({"count": p.count, "p50_ns": p.p50, "p99_ns": p.p99, "max_ns": p.max}),
                )
            })
            .collect();
        serde_json::json!({
            "uptime_s": now.at.duration_since(self.started).as_secs_f64(),
            "md_events_per_s": per_sec(last.md, now.md),
            "md_events": now.md,
            "md_lag": now.md_lag,
            "exec_reports_per_s": per_sec(last.exec, now.exec),
            "notifications_per_s": per_sec(last.notifications, now.notifications),
            "fills": now.fills,
            "rejects": now.rejects,
            "subscribers": now.subscribers,
            "conflated": now.conflated,
            "drops": now.drops,
            "hops": hops,
        })
        .to_string()
    }

    fn render_metrics(&self, s: &Snapshot) -> String {
        let mut m = Metrics::default();
        m.help(
            "tickwire_up_seconds",
            "gauge",
            "Seconds since the service started.",
        );
        m.value(
            "tickwire_up_seconds",
            "",
            self.started.elapsed().as_secs_f64(),
        );
        m.help(
            "tickwire_feed_events_total",
            "counter",
            "Events the feed published into the market-data ring.",
        );
        m.value(
            "tickwire_feed_events_total",
            &format!("feed=\"{}\"", escape(&self.config.feed.input)),
            s.md as f64,
        );
        let rings = [
            &self.monitors.md,
            &self.monitors.exec,
            &self.monitors.notifications,
        ];
        m.help(
            "tickwire_ring_published_total",
            "counter",
            "Events published into each ring.",
        );
        for ring in rings {
            m.value(
                "tickwire_ring_published_total",
                &format!("ring=\"{}\"", escape(ring.name())),
                ring.published() as f64,
            );
        }
        m.help(
            "tickwire_ring_consumer_lag",
            "gauge",
            "Events published that a ring's consumer has not finished.",
        );
        for ring in rings {
            for (consumer, lag) in ring.lags() {
                m.value(
                    "tickwire_ring_consumer_lag",
                    &format!(
                        "ring=\"{}\",consumer=\"{}\"",
                        escape(ring.name()),
                        escape(consumer)
                    ),
                    lag as f64,
                );
            }
        }
        m.help(
            "tickwire_execution_reports_total",
            "counter",
            "Execution reports from the paper venue and the risk checks.",
        );
        m.value("tickwire_execution_reports_total", "", s.exec as f64);
        m.help("tickwire_fills_total", "counter", "Fill reports.");
        m.value("tickwire_fills_total", "", s.fills as f64);
        m.help(
            "tickwire_risk_rejects_total",
            "counter",
            "Orders rejected (risk checks or the venue).",
        );
        m.value("tickwire_risk_rejects_total", "", s.rejects as f64);
        m.help(
            "tickwire_notifications_total",
            "counter",
            "Notifications raised by the alert rules.",
        );
        m.value("tickwire_notifications_total", "", s.notifications as f64);
        m.help(
            "tickwire_quic_subscribers",
            "gauge",
            "QUIC connections open now.",
        );
        m.value("tickwire_quic_subscribers", "", s.subscribers as f64);
        m.help(
            "tickwire_quic_conflated_total",
            "counter",
            "Quotes conflated for slow subscribers.",
        );
        m.value("tickwire_quic_conflated_total", "", s.conflated as f64);
        m.help(
            "tickwire_quic_drops_total",
            "counter",
            "Subscribers disconnected for falling behind (or for no longer reading).",
        );
        m.value("tickwire_quic_drops_total", "", s.drops as f64);
        if let Some(nats) = &self.nats {
            let n = nats.stats().snapshot();
            m.help(
                "tickwire_nats_connected",
                "gauge",
                "1 when the JetStream sink is connected.",
            );
            m.value(
                "tickwire_nats_connected",
                "",
                f64::from(u8::from(n.connected)),
            );
            m.help(
                "tickwire_nats_events_acked_total",
                "counter",
                "Events JetStream acknowledged.",
            );
            m.value(
                "tickwire_nats_events_acked_total",
                "",
                n.events_acked as f64,
            );
            m.help(
                "tickwire_nats_events_dropped_total",
                "counter",
                "Events dropped because the sink's queue was full (policy drop, or no journal).",
            );
            m.value(
                "tickwire_nats_events_dropped_total",
                "",
                n.dropped_events as f64,
            );
            m.help(
                "tickwire_nats_events_from_journal_total",
                "counter",
                "Events published from the journal after an outage.",
            );
            m.value(
                "tickwire_nats_events_from_journal_total",
                "",
                n.journal_events as f64,
            );
        }
        m.help(
            "tickwire_hop_latency_ns",
            "summary",
            "Latency of each pipeline hop since start, ns (from the event's receive timestamp).",
        );
        for (name, total) in HOPS.iter().zip(&self.totals) {
            let p = Percentiles::of(total);
            for (q, v) in [("0.5", p.p50), ("0.99", p.p99), ("0.999", p.p999)] {
                m.value(
                    "tickwire_hop_latency_ns",
                    &format!("hop=\"{name}\",quantile=\"{q}\""),
                    v as f64,
                );
            }
            m.value(
                "tickwire_hop_latency_ns_count",
                &format!("hop=\"{name}\""),
                total.len() as f64,
            );
        }
        m.0
    }
}

/// Counters read at one instant.
struct Snapshot {
    at: Instant,
    md: u64,
    md_lag: u64,
    exec: u64,
    notifications: u64,
    rejects: u64,
    fills: u64,
    subscribers: usize,
    conflated: u64,
    drops: u64,
}

impl Snapshot {
    fn take(service: &Service) -> Self {
        let c = &service.counters;
        let (subscribers, conflated, drops) = service.quic.as_ref().map_or((0, 0, 0), |q| {
            (
                q.server.connections(),
                q.fanout.stats().conflated.load(Ordering::Relaxed),
                q.fanout.stats().slow_disconnects.load(Ordering::Relaxed),
            )
        });
        Self {
            at: Instant::now(),
            md: service.monitors.md.published(),
            md_lag: service
                .monitors
                .md
                .lags()
                .map(|(_, l)| l)
                .max()
                .unwrap_or(0),
            exec: c.reports.load(Ordering::Relaxed),
            notifications: c.notifications.load(Ordering::Relaxed),
            rejects: c.rejects.load(Ordering::Relaxed),
            fills: c.fills.load(Ordering::Relaxed),
            subscribers,
            conflated,
            drops,
        }
    }
}

fn open_feed(config: &ServiceConfig) -> Result<Box<dyn Feed>> {
    let f = &config.feed;
    if f.input == "synthetic" {
        return Ok(Box::new(SyntheticFeed::new(SyntheticConfig {
            seed: f.seed,
            instruments: f.instruments,
            rate: f.rate,
            trade_ratio: f.trade_ratio,
            real_time: true,
            ..SyntheticConfig::default()
        })));
    }
    let feed = FeedSpec::parse(&f.input)
        .and_then(|spec| spec.open())
        .with_context(|| format!("[feed] input = {:?}: cannot open it", f.input))?;
    // Decoded ahead so that the strategies, alerts and journal know the instruments.
    Ok(Box::new(Primed::prime(feed, PRIME_EVENTS)))
}

/// The server's configuration from `[quic]`, with the default token created on first start.
fn server_config(config: &ServiceConfig) -> Result<ServerConfig> {
    let q = &config.quic;
    let mut tokens = Vec::new();
    if q.default_token {
        let path = config.token_file();
        let token = load_or_create_token(&path)
            .with_context(|| format!("[quic] token_file {}", path.display()))?;
        tokens.push(TokenEntry::new(
            "default",
            &token,
            vec![
                Entitlement::new(ChannelKind::MarketData, ["*"]),
                Entitlement::new(ChannelKind::ExecutionReports, ["*"]),
                Entitlement::new(ChannelKind::Notifications, ["*"]),
            ],
        ));
    }
    for t in &q.tokens {
        let sha256 = parse_sha256(&t.sha256).context("validated")?;
        let mut entitlements = Vec::new();
        for (kind, patterns) in [
            (ChannelKind::MarketData, &t.market_data),
            (ChannelKind::ExecutionReports, &t.execution_reports),
            (ChannelKind::Notifications, &t.notifications),
        ] {
            if !patterns.is_empty() {
                entitlements.push(Entitlement::new(kind, patterns.iter().cloned()));
            }
        }
        tokens.push(TokenEntry {
            name: t.name.clone(),
            sha256,
            entitlements,
        });
    }
    let mut server = ServerConfig {
        bind: q.bind,
        data_dir: config.quic_dir(),
        cert_files: q.cert.clone().zip(q.key.clone()),
        client_ca: q.client_ca.clone(),
        tokens,
        idle_timeout: Duration::from_millis(q.idle_timeout_ms),
        keep_alive: Duration::from_millis(q.keep_alive_ms),
        socket_buffer: q.socket_buffer_kib << 10,
        ..ServerConfig::default()
    };
    server.limits.max_connections = q.max_connections;
    server.limits.max_subscriptions = q.max_subscriptions;
    server.limits.queue_frames = q.queue_frames;
    Ok(server)
}

/// A journal already in `dir` is appended to: refuse if it was recorded with other
/// instruments (the same id for another symbol would mislabel every event after the
/// restart). New instruments after the existing ones are fine.
fn check_journal_instruments(dir: &Path, instruments: &InstrumentRegistry) -> Result<()> {
    let Ok(existing) = JournalReader::open_with(
        dir,
        OpenOptions {
            verify: Verify::LastSegment,
            truncate_torn_tail: false,
            stop_at_damage: false,
        },
    ) else {
        // No journal yet (or one the writer will report on with its own error).
        return Ok(());
    };
    let recorded = existing.instruments();
    for id in 0..recorded.len() as u32 {
        let (was, now) = (recorded.symbol(id), instruments.symbol(id));
        if now.is_some() && was != now {
            bail!(
                "[journal] {}: recorded with other instruments (id {id} is {} there, {} in \
                 this feed); use another data_dir or [journal] dir for this feed",
                dir.display(),
                was.unwrap_or("?"),
                now.unwrap_or("?")
            );
        }
    }
    Ok(())
}

fn print_banner(config: &ServiceConfig, layout: &str, quic: Option<&Quic>) {
    let feed = if config.feed.input == "synthetic" {
        format!(
            "synthetic ({} instruments, {} events/s, seed {})",
            config.feed.instruments,
            if config.feed.rate == 0 {
                "flat out".to_owned()
            } else {
                config.feed.rate.to_string()
            },
            config.feed.seed
        )
    } else {
        config.feed.input.clone()
    };
    say!("tickwire {} — feed {feed}", env!("CARGO_PKG_VERSION"));
    say!(
        "strategies: {}",
        config
            .strategies
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
    say!(
        "thread layout (available cores {:?}):\n{layout}",
        available_cores()
    );
    if config.journal.enabled {
        say!("journal: {}", config.journal_dir().display());
    }
    if let Some(q) = quic {
        let addr = q.server.local_addr();
        say!("QUIC: {addr} (ALPN tickwire/1)");
        if config.quic.default_token {
            let cert = match &config.quic.cert {
                Some(path) => path.clone(),
                None => config.quic_dir().join("cert.der"),
            };
            // The way this binary was started (`./target/release/tickwire` under `cargo
            // run`, which does not put it on the PATH), or its name when found on the PATH.
            let program = std::env::args()
                .next()
                .filter(|p| p.contains(std::path::MAIN_SEPARATOR))
                .unwrap_or_else(|| "tickwire".to_owned());
            say!(
                "  subscribe: {program} subscribe --server {addr} --cert {} --token-file {}",
                cert.display(),
                config.token_file().display()
            );
        }
    }
    if config.metrics.enabled {
        say!("metrics: http://{}/metrics", config.metrics.bind);
    }
    say!("running; Ctrl-C or SIGTERM stops cleanly (a second one forces exit)\n");
}

/// Escapes a label value (backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text exposition format, version 0.0.4.
#[derive(Default)]
struct Metrics(String);

impl Metrics {
    fn help(&mut self, name: &str, kind: &str, help: &str) {
        self.0
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    }

    fn value(&mut self, name: &str, labels: &str, value: f64) {
        if labels.is_empty() {
            self.0.push_str(&format!("{name} {value}\n"));
        } else {
            self.0.push_str(&format!("{name}{{{labels}}} {value}\n"));
        }
    }
}

/// Serves `GET /metrics` with the latest rendering, one connection at a time. A client
/// gets 2 s to send its request line; anything else is 404 or 400.
fn serve_metrics(listener: &TcpListener, text: &Mutex<String>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let _ = answer(stream, text);
    }
}

fn answer(mut stream: TcpStream, text: &Mutex<String>) -> std::io::Result<()> {
    // One deadline for the whole request, not per read: a client trickling bytes cannot
    // hold the (single) metrics thread.
    let deadline = Instant::now() + Duration::from_secs(2);
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut request = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let (status, body, kind) = if line.starts_with(b"GET /metrics ") || line == b"GET /metrics" {
        let body = text.lock().unwrap_or_else(|p| p.into_inner()).clone();
        ("200 OK", body, "text/plain; version=0.0.4; charset=utf-8")
    } else if line.starts_with(b"GET ") {
        (
            "404 Not Found",
            "tickwire serves /metrics only\n".to_owned(),
            "text/plain",
        )
    } else {
        ("400 Bad Request", "bad request\n".to_owned(), "text/plain")
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
