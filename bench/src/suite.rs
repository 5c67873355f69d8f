//! The performance suite behind `tickwire bench`: every scenario, its peers measured in the
//! same run, one table, one JSON file and the plots.
//!
//! | scenario | what | peers |
//! |---|---|---|
//! | `ring-throughput` | the Disruptor perf-test shapes: 1P-1C (single and batches of 64), 1P-3C multicast, 3-stage pipeline | `disruptor`, `crossbeam-channel`, `rtrb`, `bus`, `tokio::sync::broadcast` |
//! | `ring-latency` | 1P-1C one-way latency at 100k events/s from scheduled send times | `disruptor`, `crossbeam-channel`, `rtrb` |
//! | `itch` | ITCH 5.0 decoding (every field), and decoding into per-stock books | `itchy` on the same bytes |
//! | `binance` | the recorded Binance stream, gzip included | |
//! | `dbn` | the Databento MBO file, zstd included | |
//! | `journal` | append, open with CRC verification, sequential read | |
//! | `quic` | ring -> publisher -> QUIC -> client, flat out and at 10k/100k events/s | a bare quinn stream with the same frames |
//! | `end-to-end` | feed -> ring -> strategies -> risk -> execution -> notifier, and one QUIC subscriber to all market data, at 10k/100k/1M events/s and flat out | one `disruptor` hop (from `ring-latency`, or measured here when it is not selected) |
//!
//! Latency is always measured from scheduled send times (see [`crate::ring::latency`],
//! [`crate::quic`], [`crate::end_to_end`]) into HdrHistograms. Each scenario runs alone,
//! behind `catch_unwind`: a scenario that panics (a consumer that missed an event) is
//! reported as failed and the others still run. Real data comes from `../shared/data`
//! (`$TICKWIRE_DATA`); a scenario that needs it is reported as skipped, with the path, when
//! it is absent.
//!
//! Nothing here asserts a timing. [`Results::check`] asserts only that every selected
//! scenario ran (or was skipped for absent data) and that every row has its numbers.

use std::fmt::Write as _;
use std::hint::black_box;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tickwire_engine::event::Event;
use tickwire_engine::journal::{FsyncPolicy, JournalConfig, JournalReader, JournalWriter};
use tickwire_engine::latency::{Percentiles, format_ns};
use tickwire_feeds::binance::{BinanceConfig, BinanceFeed};
use tickwire_feeds::dbn::{DbnConfig, DbnFeed};
use tickwire_feeds::itch::{
    Frames, GeneratorConfig, ItchConfig, ItchFileFeed, decode, generate_file,
};
use tickwire_feeds::synthetic::{SyntheticConfig, SyntheticFeed};
use tickwire_feeds::{Feed, FeedStatus, INGEST_BATCH, Sink};

use crate::plot::{PlotError, percentile_plot, throughput_bars};
use crate::ring::latency::{LatencyConfig, format_runs, latency_cases, latency_table};
use crate::ring::{Scenario, TableConfig, peer_table, reference_row, summary};
use crate::{best_of, end_to_end, quic};

/// What to run and where to write.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    /// Short runs (the CI smoke check): the whole suite in well under two minutes.
    pub quick: bool,
    /// Where `results.md`, `results.json` and the plots go.
    pub out: PathBuf,
    /// Run only the scenarios whose name contains this.
    pub filter: Option<String>,
    /// The recorded data (`binance/`, `databento/`).
    pub data: PathBuf,
}

impl SuiteConfig {
    /// The default data directory: `$TICKWIRE_DATA`, else `../shared/data` from the current
    /// directory, else from this crate's source tree.
    pub fn default_data() -> PathBuf {
        if let Some(dir) = std::env::var_os("TICKWIRE_DATA") {
            return PathBuf::from(dir);
        }
        let relative = PathBuf::from("../shared/data");
        if relative.is_dir() {
            return relative;
        }
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
    }
}

/// The scenarios, in run order (see the module docs).
pub const SCENARIOS: [&str; 8] = [
    "ring-throughput",
    "ring-latency",
    "itch",
    "binance",
    "dbn",
    "journal",
    "quic",
    "end-to-end",
];

/// One line of the results.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    /// The scenario (`ring-throughput`, ...).
    pub scenario: String,
    /// The case within it (`1p1c`, `decode`, `10k events/s`, ...).
    pub case: String,
    /// `tickwire`, or the peer.
    pub implementation: String,
    /// Idle strategy, capacity, hop: what distinguishes rows of one implementation.
    pub config: String,
    /// Items per second (of `unit`).
    pub throughput: Option<f64>,
    /// What `throughput` counts: `events/s`, `msg/s`, `lines/s`, `records/s`.
    pub unit: &'static str,
    /// Latency percentiles, ns (latency rows).
    pub p50_ns: Option<u64>,
    /// 99th percentile, ns.
    pub p99_ns: Option<u64>,
    /// 99.9th percentile, ns.
    pub p999_ns: Option<u64>,
    /// Maximum, ns.
    pub max_ns: Option<u64>,
    /// The reference tickwire row's throughput over this row's (above 1: tickwire faster).
    pub throughput_ratio: Option<f64>,
    /// This row's p99 over the reference tickwire row's (above 1: tickwire lower).
    pub p99_ratio: Option<f64>,
    /// Anything else worth knowing (CPU time, completeness, the data used).
    pub note: String,
}

impl Row {
    fn new(scenario: &str, case: &str, implementation: &str, config: impl Into<String>) -> Self {
        Self {
            scenario: scenario.into(),
            case: case.into(),
            implementation: implementation.into(),
            config: config.into(),
            unit: "events/s",
            ..Self::default()
        }
    }

    fn throughput(mut self, per_s: f64, unit: &'static str) -> Self {
        self.throughput = Some(per_s);
        self.unit = unit;
        self
    }

    fn latency(mut self, h: &Histogram<u64>) -> Self {
        let p = Percentiles::of(h);
        self.p50_ns = Some(p.p50);
        self.p99_ns = Some(p.p99);
        self.p999_ns = Some(p.p999);
        self.max_ns = Some(p.max);
        self
    }

    fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    /// Whether the row has its numbers: a positive, finite throughput or a latency.
    pub fn has_numbers(&self) -> bool {
        self.throughput.is_some_and(|t| t.is_finite() && t > 0.0) || self.p50_ns.is_some()
    }
}

/// How a scenario ended.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioRun {
    /// The scenario.
    pub name: String,
    /// `ok`, `skipped` (data absent) or `failed`.
    pub status: &'static str,
    /// Why it was skipped or failed; notes on its inputs otherwise.
    pub detail: String,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Rows it produced.
    pub rows: usize,
}

/// Everything a suite run produced (`results.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// Whether `--quick`.
    pub quick: bool,
    /// When the run started, s since the Unix epoch.
    pub started_unix_s: u64,
    /// Cores available to the process.
    pub cores: usize,
    /// `/proc/loadavg` (1, 5, 15 min) before and after the run.
    pub load_before: String,
    /// See `load_before`.
    pub load_after: String,
    /// Every selected scenario.
    pub scenarios: Vec<ScenarioRun>,
    /// Every row.
    pub rows: Vec<Row>,
    /// Plots written (SVG and PNG).
    pub plots: Vec<PathBuf>,
    /// Notes: absent data, a missing font.
    pub notes: Vec<String>,
}

/// Why the suite failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SuiteError {
    /// The output could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A plot could not be written.
    #[error(transparent)]
    Plot(#[from] PlotError),
    /// The filter selects no scenario.
    #[error("--filter {0:?} matches no scenario (the scenarios: {list})", list = SCENARIOS.join(", "))]
    NoScenario(String),
    /// Scenarios failed or produced rows without numbers (the results are written anyway).
    #[error("{0}")]
    Incomplete(String),
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// A percentile plot to draw: file stem, title, named histograms.
type LatencyPlot = (String, String, Vec<(String, Histogram<u64>)>);
/// A bar chart to draw: file stem, title, unit, (label, value) bars.
type BarPlot = (String, String, String, Vec<(String, f64)>);

/// What a scenario hands back.
#[derive(Default)]
struct Outcome {
    rows: Vec<Row>,
    latency_plots: Vec<LatencyPlot>,
    bar_plots: Vec<BarPlot>,
    /// Set when skipped (data absent).
    skipped: Option<String>,
    detail: String,
}

/// Shared between scenarios: the single `disruptor` hop's p99, for the end-to-end rows.
#[derive(Default)]
struct Context {
    disruptor_hop: Option<(u64, u64)>,
}

/// Runs the selected scenarios, writes `results.md`, `results.json` and the plots into
/// `config.out`, prints progress on stderr, and returns the results.
///
/// # Errors
///
/// [`SuiteError::Incomplete`] when a scenario failed or a row lacks numbers (after writing
/// everything), and I/O or plot errors.
pub fn run(config: &SuiteConfig) -> Result<Results, SuiteError> {
    let selected: Vec<&str> = SCENARIOS
        .iter()
        .copied()
        .filter(|name| config.filter.as_deref().is_none_or(|f| name.contains(f)))
        .collect();
    if selected.is_empty() {
        return Err(SuiteError::NoScenario(
            config.filter.clone().unwrap_or_default(),
        ));
    }
    std::fs::create_dir_all(&config.out).map_err(|source| SuiteError::Io {
        path: config.out.display().to_string(),
        source,
    })?;
    let mut results = Results {
        quick: config.quick,
        started_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        cores: tickwire_engine::agent::available_cores().len(),
        load_before: load(),
        load_after: String::new(),
        scenarios: Vec::new(),
        rows: Vec::new(),
        plots: Vec::new(),
        notes: Vec::new(),
    };
    if let Err(why) = crate::plot::font() {
        results.notes.push(why.to_owned());
    }
    let suite_start = Instant::now();
    let mut context = Context::default();
    for name in selected {
        eprintln!(
            "== {name} ({:.0} s into the suite, load {})",
            suite_start.elapsed().as_secs_f64(),
            load()
        );
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            run_scenario(name, config, &mut context)
        }));
        let seconds = started.elapsed().as_secs_f64();
        let mut scenario = ScenarioRun {
            name: name.into(),
            status: "ok",
            detail: String::new(),
            seconds,
            rows: 0,
        };
        match outcome {
            Ok(Ok(outcome)) => {
                scenario.rows = outcome.rows.len();
                scenario.detail = outcome.detail;
                if let Some(why) = outcome.skipped {
                    scenario.status = "skipped";
                    eprintln!("   SKIPPED: {why}");
                    results.notes.push(format!("{name} skipped: {why}"));
                    scenario.detail = why;
                }
                for (stem, title, series) in &outcome.latency_plots {
                    let named: Vec<(&str, &Histogram<u64>)> =
                        series.iter().map(|(n, h)| (n.as_str(), h)).collect();
                    let plotted = percentile_plot(&config.out.join(stem), title, &named)?;
                    results.plots.extend([plotted.svg, plotted.png]);
                }
                for (stem, title, unit, bars) in &outcome.bar_plots {
                    let plotted = throughput_bars(&config.out.join(stem), title, unit, bars)?;
                    results.plots.extend([plotted.svg, plotted.png]);
                }
                results.rows.extend(outcome.rows);
            }
            Ok(Err(why)) => {
                scenario.status = "failed";
                eprintln!("   FAILED: {why}");
                scenario.detail = why;
            }
            Err(panic) => {
                scenario.status = "failed";
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "panicked".into());
                eprintln!("   FAILED (panic): {why}");
                scenario.detail = format!("panicked: {why}");
            }
        }
        eprintln!("   {} in {seconds:.1} s", scenario.status);
        results.scenarios.push(scenario);
    }
    results.load_after = load();
    let markdown = markdown(&results);
    write(&config.out.join("results.md"), markdown.as_bytes())?;
    let json = serde_json::to_vec_pretty(&results).map_err(|e| SuiteError::Io {
        path: config.out.join("results.json").display().to_string(),
        source: e.into(),
    })?;
    write(&config.out.join("results.json"), &json)?;
    eprintln!(
        "suite done in {:.1} s: results.md and results.json in {}",
        suite_start.elapsed().as_secs_f64(),
        config.out.display()
    );
    results.check().map(|()| results.clone())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), SuiteError> {
    std::fs::write(path, bytes).map_err(|source| SuiteError::Io {
        path: path.display().to_string(),
        source,
    })
}

impl Results {
    /// Every scenario ran (or was skipped for absent data), produced rows unless skipped,
    /// and every row has its numbers. Never a timing.
    ///
    /// # Errors
    ///
    /// [`SuiteError::Incomplete`], naming each failure.
    pub fn check(&self) -> Result<(), SuiteError> {
        let mut problems = Vec::new();
        for s in &self.scenarios {
            match s.status {
                "failed" => problems.push(format!("scenario {} failed: {}", s.name, s.detail)),
                "ok" if s.rows == 0 => {
                    problems.push(format!("scenario {} produced no rows", s.name))
                }
                _ => {}
            }
        }
        for r in self.rows.iter().filter(|r| !r.has_numbers()) {
            problems.push(format!(
                "{} / {} / {} {}: no numbers",
                r.scenario, r.case, r.implementation, r.config
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SuiteError::Incomplete(problems.join("; ")))
        }
    }
}

fn run_scenario(
    name: &str,
    config: &SuiteConfig,
    context: &mut Context,
) -> Result<Outcome, String> {
    match name {
        "ring-throughput" => Ok(ring_throughput(config)),
        "ring-latency" => Ok(ring_latency(config, context)),
        "itch" => Ok(itch(config)),
        "binance" => binance(config),
        "dbn" => dbn(config),
        "journal" => journal(config),
        "quic" => quic_scenario(config),
        "end-to-end" => end_to_end_scenario(config, context),
        other => Err(format!("unknown scenario {other}")),
    }
}

fn ring_throughput(config: &SuiteConfig) -> Outcome {
    let table = if config.quick {
        TableConfig {
            runs: 1,
            warmup_events: 100_000,
            target: Duration::from_millis(60),
        }
    } else {
        TableConfig::default()
    };
    let rows = peer_table(&table, |_| true);
    let mut outcome = Outcome {
        detail: format!(
            "{} interleaved rounds, each run ~{} ms; median of the rounds; the ratio is \
             the median of the rounds' ratios (round k against round k; the note gives the \
             ratio of the medians too)",
            table.runs,
            table.target.as_millis()
        ),
        ..Outcome::default()
    };
    for scenario in Scenario::ALL {
        let Some(reference) = reference_row(&rows, scenario) else {
            continue;
        };
        let reference_rate = reference.median();
        let mut bars = Vec::new();
        for row in rows.iter().filter(|r| r.scenario == scenario) {
            let rate = row.median() * 1e6;
            let mut r = Row::new(
                "ring-throughput",
                &scenario.label(),
                row.implementation,
                format!("{}, ring {}", row.idle, row.capacity),
            )
            .throughput(rate, "events/s")
            .note(format!(
                "runs (M/s): {}; ratio of medians {:.2}x",
                row.runs_text(),
                reference_rate / row.median().max(1e-9)
            ));
            r.throughput_ratio = Some(row.paired_ratio(reference));
            outcome.rows.push(r);
            bars.push((
                format!("{} {} ({})", row.implementation, row.idle, row.capacity),
                row.median(),
            ));
        }
        outcome.bar_plots.push((
            format!("ring-{}", scenario.name()),
            format!("ring {}: M events/s (median)", scenario.label()),
            "M events/s".into(),
            bars,
        ));
    }
    let lines = summary(&rows);
    if !lines.is_empty() {
        outcome.detail.push_str(
            "\n\nPer scenario, the best of each side (round by round against the reference):\n",
        );
        for line in lines {
            let _ = write!(outcome.detail, "\n- {line}");
        }
    }
    outcome
}

impl Row {
    fn ratio_to(mut self, reference: f64) -> Self {
        if let Some(t) = self.throughput {
            self.throughput_ratio = Some(reference / t.max(1e-9));
        }
        self
    }
}

fn ring_latency(config: &SuiteConfig, context: &mut Context) -> Outcome {
    let measured = if config.quick { 30_000 } else { 200_000 };
    let latency = LatencyConfig {
        rate: 100_000,
        warmup: measured / 10,
        measured,
    };
    let runs = if config.quick { 1 } else { 7 };
    let rows = latency_table(&latency, runs);
    let reference = rows.iter().find(|r| r.implementation == "tickwire");
    let mut outcome = Outcome {
        detail: format!(
            "100k events/s, {measured} recorded per run after {} warm-up, {runs} interleaved \
             run(s) merged; the note gives the median of the runs' p50s and p99s, which one \
             disturbed run cannot move; the p99 ratio is the median of the runs' ratios (run \
             k against run k)",
            latency.warmup
        ),
        ..Outcome::default()
    };
    let mut series = Vec::new();
    for row in &rows {
        if row.implementation == "disruptor" && context.disruptor_hop.is_none() {
            // The median of the runs: one run that caught a host stall sets the merged
            // histogram's p99 alone.
            context.disruptor_hop = Some(row.median_of_runs());
        }
        let mut r = Row::new(
            "ring-latency",
            "1p1c @ 100k events/s",
            row.implementation,
            format!("{}, ring {}", row.idle, row.capacity),
        )
        .latency(&row.histogram)
        .throughput(100_000.0, "events/s")
        .note({
            let (p50, p99) = row.median_of_runs();
            let paired = reference.map_or_else(String::new, |t| {
                let (r50, r99) = row.paired_ratios(t);
                format!("; this / tickwire run by run: p50 {r50:.2}x, p99 {r99:.2}x")
            });
            format!(
                "median of {runs} runs: p50 {}, p99 {}; per-run p50 {}; per-run p99 {}{paired}",
                format_ns(p50),
                format_ns(p99),
                format_runs(&row.run_p50),
                format_runs(&row.run_p99)
            )
        });
        r.p99_ratio = reference.map(|t| row.paired_ratios(t).1);
        outcome.rows.push(r);
        series.push((
            format!("{} {}", row.implementation, row.idle),
            row.histogram.clone(),
        ));
    }
    outcome.latency_plots.push((
        "ring-latency".into(),
        "1P-1C one-way latency at 100k events/s (from scheduled send times)".into(),
        series,
    ));
    outcome
}

fn rate(items: u64, ns: u64) -> f64 {
    items as f64 / (ns.max(1) as f64 / 1e9)
}

fn itch(config: &SuiteConfig) -> Outcome {
    let generator = GeneratorConfig {
        seed: 2024,
        stocks: 200,
        messages: if config.quick { 300_000 } else { 2_000_000 },
        extended_types: false,
        ..GeneratorConfig::default()
    };
    let bytes = generate_file(&generator).expect("the generator writes valid messages");
    let messages = Frames::new(&bytes).count() as u64;
    let rounds = if config.quick { 2 } else { 5 };
    let case = "decode (synthetic day)";
    let measure = |run: &mut dyn FnMut() -> u64| best_of(rounds, run);
    let (tw_wall, tw_cpu) = measure(&mut || {
        let mut n = 0;
        for frame in Frames::new(black_box(&bytes)) {
            let (_, frame) = frame.expect("valid frames");
            black_box(decode(frame).expect("valid messages").to_data());
            n += 1;
        }
        n
    });
    let (itchy_wall, itchy_cpu) = measure(&mut || {
        let mut n = 0;
        for message in itchy::MessageStream::from_reader(black_box(bytes.as_slice())) {
            black_box(message.expect("itchy parses the generated day"));
            n += 1;
        }
        n
    });
    let mut slots = vec![Event::default(); 256];
    let (book_wall, book_cpu) = measure(&mut || {
        let mut feed = ItchFileFeed::new("bench", bytes.as_slice(), ItchConfig::default());
        let mut events = 0;
        loop {
            let mut sink = Sink::from_slice(&mut slots);
            let status = feed.poll(&mut sink).expect("a valid day");
            events += sink.written() as u64;
            if status == FeedStatus::End {
                break;
            }
        }
        events
    });
    let tw = rate(messages, tw_wall);
    let cpu_note = |cpu: u64| format!("CPU time: {:.2} M msg/s", rate(messages, cpu) / 1e6);
    Outcome {
        rows: vec![
            Row::new("itch", case, "tickwire", "decode, every field read")
                .throughput(tw, "msg/s")
                .note(cpu_note(tw_cpu))
                .ratio_to(tw),
            Row::new("itch", case, "itchy", "MessageStream")
                .throughput(rate(messages, itchy_wall), "msg/s")
                .note(cpu_note(itchy_cpu))
                .ratio_to(tw),
            Row::new(
                "itch",
                "decode + per-stock books",
                "tickwire",
                "ItchFileFeed",
            )
            .throughput(rate(messages, book_wall), "msg/s")
            .note(cpu_note(book_cpu)),
        ],
        bar_plots: vec![(
            "itch".into(),
            "ITCH 5.0 decoding, same bytes: M msg/s (best round)".into(),
            "M msg/s".into(),
            vec![
                ("tickwire decode".into(), tw / 1e6),
                ("itchy".into(), rate(messages, itchy_wall) / 1e6),
                (
                    "tickwire decode + books".into(),
                    rate(messages, book_wall) / 1e6,
                ),
            ],
        )],
        detail: format!(
            "no recorded ITCH file in the data directory: a generated day of {messages} \
             messages, {} stocks, {} bytes (seed 2024); best of {rounds} rounds",
            generator.stocks,
            bytes.len()
        ),
        ..Outcome::default()
    }
}

/// Polls `feed` to its end; returns events written.
fn drain(feed: &mut dyn Feed, slots: &mut [Event]) -> Result<u64, String> {
    let mut events = 0;
    loop {
        let mut sink = Sink::from_slice(slots);
        let status = feed.poll(&mut sink).map_err(|e| e.to_string())?;
        events += sink.written() as u64;
        if status == FeedStatus::End {
            return Ok(events);
        }
    }
}

fn absent(path: &Path) -> Outcome {
    Outcome {
        skipped: Some(format!("{} is absent", path.display())),
        ..Outcome::default()
    }
}

fn binance(config: &SuiteConfig) -> Result<Outcome, String> {
    let path = config.data.join("binance/spot_btcusdt_20240808.gz");
    if !path.exists() {
        return Ok(absent(&path));
    }
    let rounds = if config.quick { 2 } else { 7 };
    let mut slots = vec![Event::default(); INGEST_BATCH];
    let mut lines = 0;
    let mut failure = None;
    let (wall, cpu) = best_of(rounds, || {
        match BinanceFeed::open(&path, BinanceConfig::default()) {
            Ok(mut feed) => match drain(&mut feed, &mut slots) {
                Ok(_) => lines = feed.line(),
                Err(e) => failure = Some(e),
            },
            Err(e) => failure = Some(e.to_string()),
        }
    });
    if let Some(e) = failure {
        return Err(format!("{}: {e}", path.display()));
    }
    Ok(Outcome {
        rows: vec![
            Row::new(
                "binance",
                "recorded spot BTCUSDT, gzip included",
                "tickwire",
                "BinanceFeed",
            )
            .throughput(rate(lines, wall), "lines/s")
            .note(format!(
                "{lines} lines; CPU time: {:.2} M lines/s",
                rate(lines, cpu) / 1e6
            )),
        ],
        detail: format!("{}; best of {rounds} rounds", path.display()),
        ..Outcome::default()
    })
}

fn dbn(config: &SuiteConfig) -> Result<Outcome, String> {
    let path = config
        .data
        .join("databento/esh4-glbx-mdp3-20231224.mbo.dbn.zst");
    if !path.exists() {
        return Ok(absent(&path));
    }
    let rounds = if config.quick { 2 } else { 7 };
    let mut slots = vec![Event::default(); INGEST_BATCH];
    let (mut events, mut failure) = (0, None);
    let (wall, cpu) = best_of(rounds, || {
        match DbnFeed::open(&path, DbnConfig::default()) {
            Ok(mut feed) => match drain(&mut feed, &mut slots) {
                Ok(n) => events = n,
                Err(e) => failure = Some(e),
            },
            Err(e) => failure = Some(e.to_string()),
        }
    });
    if let Some(e) = failure {
        return Err(format!("{}: {e}", path.display()));
    }
    Ok(Outcome {
        rows: vec![
            Row::new(
                "dbn",
                "Databento MBO, zstd included",
                "tickwire",
                "DbnFeed -> L3 book",
            )
            .throughput(rate(events, wall), "events/s")
            .note(format!(
                "{events} events out; CPU time: {:.2} M events/s",
                rate(events, cpu) / 1e6
            )),
        ],
        detail: format!("{}; best of {rounds} rounds", path.display()),
        ..Outcome::default()
    })
}

fn journal(config: &SuiteConfig) -> Result<Outcome, String> {
    let n: usize = if config.quick { 1 << 18 } else { 1 << 21 };
    let mut feed = SyntheticFeed::new(SyntheticConfig {
        events: Some(n as u64),
        rate: 1_000_000,
        ..SyntheticConfig::default()
    });
    let mut events = vec![Event::default(); n];
    let mut sink = Sink::from_slice(&mut events);
    feed.poll(&mut sink).map_err(|e| e.to_string())?;
    let journal_config = JournalConfig {
        segment_bytes: 32 << 20,
        fsync: FsyncPolicy::Never,
        instruments: feed.instruments().clone(),
        ..JournalConfig::default()
    };
    let dir = std::env::temp_dir().join(format!("tickwire-bench-journal-{}", std::process::id()));
    let rounds = if config.quick { 2 } else { 5 };
    let io = |e: &dyn std::fmt::Display| format!("{}: {e}", dir.display());
    let mut failure = None;
    let (write_wall, _) = best_of(rounds, || {
        let _ = std::fs::remove_dir_all(&dir);
        let result = JournalWriter::open(&dir, journal_config.clone()).and_then(|mut w| {
            for event in &events {
                w.append(event)?;
            }
            w.close()
        });
        if let Err(e) = result {
            failure = Some(io(&e));
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let (open_wall, _) = best_of(rounds, || match JournalReader::open(&dir) {
        Ok(r) => black_box(r.len()),
        Err(e) => {
            failure = Some(io(&e));
            0
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let reader = JournalReader::open(&dir).map_err(|e| io(&e))?;
    if reader.len() != n as u64 {
        return Err(format!(
            "{}: {} events read back, {n} written",
            dir.display(),
            reader.len()
        ));
    }
    let (read_wall, _) = best_of(rounds, || {
        reader.iter().fold(0u64, |acc, e| {
            acc.wrapping_add(e.receive_ts ^ u64::from(e.instrument))
        })
    });
    drop(reader);
    let _ = std::fs::remove_dir_all(&dir);
    let n = n as u64;
    let row = |case: &str, config: &str, wall| {
        Row::new("journal", case, "tickwire", config).throughput(rate(n, wall), "events/s")
    };
    Ok(Outcome {
        rows: vec![
            row("write", "append each, page cache (fsync never)", write_wall),
            row("open", "open + verify every CRC", open_wall),
            row("read", "sequential, memory-mapped", read_wall),
        ],
        detail: format!(
            "{n} events ({} MB) in {}; best of {rounds} rounds",
            (n * 64) >> 20,
            dir.display()
        ),
        ..Outcome::default()
    })
}

fn quic_scenario(config: &SuiteConfig) -> Result<Outcome, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let n = if config.quick { 100_000 } else { 1_000_000 };
    let seconds = if config.quick { 0.5 } else { 3.0 };
    let rates: &[u64] = if config.quick {
        &[10_000]
    } else {
        &[10_000, 100_000]
    };
    runtime.block_on(async {
        let mut outcome = Outcome {
            detail: format!("127.0.0.1, TLS 1.3; {n} quotes flat out; paced runs {seconds} s each"),
            ..Outcome::default()
        };
        let (tw, complete) = quic::fan_out(1, n).await;
        let (bare, _) = quic::bare(quic::frames_of(n, 256), 256, None).await;
        outcome.rows.push(
            Row::new(
                "quic",
                "1 subscriber, flat out",
                "tickwire",
                "ring -> publisher -> server -> client",
            )
            .throughput(tw, "events/s")
            .note(format!("{complete}/1 subscriber received all {n}"))
            .ratio_to(tw),
        );
        outcome.rows.push(
            Row::new(
                "quic",
                "1 subscriber, flat out",
                "bare quinn",
                "one uni stream, same frames (256 events)",
            )
            .throughput(bare, "events/s")
            .ratio_to(tw),
        );
        outcome.bar_plots.push((
            "quic".into(),
            "QUIC delivery to one subscriber: M events/s".into(),
            "M events/s".into(),
            vec![
                ("tickwire".into(), tw / 1e6),
                ("bare quinn stream".into(), bare / 1e6),
            ],
        ));
        let mut series = Vec::new();
        for &rate in rates {
            let h = quic::latency(rate, seconds).await;
            let (_, bare_h) = quic::bare(
                quic::frames_of((rate as f64 * seconds) as u64, 1),
                1,
                Some(rate),
            )
            .await;
            let case = format!("1 subscriber @ {}k events/s", rate / 1000);
            let reference = Percentiles::of(&h).p99;
            outcome.rows.push(
                Row::new("quic", &case, "tickwire", "receive -> subscriber")
                    .latency(&h)
                    .throughput(rate as f64, "events/s"),
            );
            let mut bare_row = Row::new(
                "quic",
                &case,
                "bare quinn",
                "send -> read, one event per frame",
            )
            .latency(&bare_h)
            .throughput(rate as f64, "events/s");
            bare_row.p99_ratio =
                Some(Percentiles::of(&bare_h).p99 as f64 / reference.max(1) as f64);
            outcome.rows.push(bare_row);
            series.push((format!("tickwire @ {}k/s", rate / 1000), h));
            series.push((format!("bare quinn @ {}k/s", rate / 1000), bare_h));
        }
        outcome.latency_plots.push((
            "quic-latency".into(),
            "QUIC receive -> subscriber latency (from scheduled send times)".into(),
            series,
        ));
        Ok(outcome)
    })
}

fn end_to_end_scenario(config: &SuiteConfig, context: &Context) -> Result<Outcome, String> {
    let seconds = if config.quick { 0.5 } else { 3.0 };
    let mut outcome = Outcome::default();
    let mut series = Vec::new();
    // The floor to compare with: one `disruptor` hop at 100k events/s in this run, from
    // ring-latency, or measured here when ring-latency is not selected.
    let (hop_p50, hop_p99, hop_source) = match context.disruptor_hop {
        Some((p50, p99)) => (p50, p99, "ring-latency, this run, median of runs"),
        None => {
            let measured = if config.quick { 30_000 } else { 200_000 };
            let latency = LatencyConfig {
                rate: 100_000,
                warmup: measured / 10,
                measured,
            };
            let case = latency_cases()
                .into_iter()
                .find(|c| c.implementation == "disruptor" && c.idle == "BusySpin")
                .ok_or("no disruptor BusySpin latency case")?;
            eprintln!("   one disruptor hop at 100k events/s (ring-latency not selected)");
            let h = case.run(&latency);
            let p = Percentiles::of(&h);
            outcome.rows.push(
                Row::new(
                    "end-to-end",
                    "1p1c @ 100k events/s",
                    "disruptor",
                    format!("{}, ring {}: one hop, the floor", case.idle, case.capacity),
                )
                .latency(&h)
                .throughput(100_000.0, "events/s")
                .note(format!(
                    "measured here (ring-latency not selected), {measured} recorded"
                )),
            );
            (p.p50, p.p99, "measured in this scenario")
        }
    };
    let disruptor = format!(
        "single disruptor hop at 100k/s ({hop_source}): p50 {} p99 {}",
        format_ns(hop_p50),
        format_ns(hop_p99)
    );
    let mut side_by_side = Vec::new();
    let mut push = |case: &str, run: &end_to_end::Run, scheduled: bool| {
        let report = &run.report;
        let throughput = report.events as f64 / report.elapsed.as_secs_f64().max(1e-9);
        for hop in &report.latency {
            if hop.percentiles.count == 0 {
                continue;
            }
            let mut row = Row::new("end-to-end", case, "tickwire", hop.name.clone())
                .latency(&hop.histogram)
                .throughput(throughput, "events/s")
                .note(format!(
                    "{} events, {} orders, {} fills, {} notifications{}",
                    report.events,
                    report.execution.orders + report.execution.cancels,
                    report.execution.fills,
                    report.notifier.notifications,
                    if scheduled {
                        ""
                    } else {
                        "; flat out: mostly queueing behind a full ring"
                    }
                ));
            if hop.name == "tick->order" {
                row.p99_ratio = Some(hop_p99 as f64 / hop.percentiles.p99.max(1) as f64);
                row.note.push_str(&format!("; {disruptor}"));
                side_by_side.push(format!(
                    "- {case}: receive -> order p50 {} p99 {}; one disruptor hop p99 {} \
                     (end to end = {:.2}x the hop)",
                    format_ns(hop.percentiles.p50),
                    format_ns(hop.percentiles.p99),
                    format_ns(hop_p99),
                    hop.percentiles.p99 as f64 / hop_p99.max(1) as f64
                ));
            }
            outcome.rows.push(row);
        }
        let s = &run.subscriber;
        let (published, conflated, slow) = s.publisher;
        let received_rate = s.received as f64 / s.elapsed.as_secs_f64().max(1e-9);
        outcome.rows.push(
            Row::new(
                "end-to-end",
                case,
                "tickwire",
                format!(
                    "receive->subscriber (QUIC, 1 client, all market data, policy {:?})",
                    s.policy
                ),
            )
            .latency(&s.latency)
            .throughput(received_rate, "events/s")
            .note(format!(
                "received {}/{} market-data events ({}); pipeline {:.2} M events/s; \
                 publisher: {published} events sequenced, {conflated} conflated, {slow} \
                 slow disconnects, {} gaps at the client",
                s.received,
                s.expected,
                match &s.ended {
                    _ if s.complete() => "complete".to_owned(),
                    Some(why) => format!("INCOMPLETE: {why}"),
                    None => "INCOMPLETE".to_owned(),
                },
                throughput / 1e6,
                s.gaps
            )),
        );
    };
    for rate in [10_000u64, 100_000, 1_000_000] {
        let events = (rate as f64 * seconds) as u64;
        eprintln!("   end to end at {rate} events/s ({events} events)");
        let run = end_to_end::at_rate(rate, events).map_err(|e| e.to_string())?;
        let case = format!("synthetic @ {}k events/s", rate / 1000);
        push(&case, &run, true);
        if let Some(hop) = run.report.latency.iter().find(|h| h.name == "tick->order") {
            series.push((
                format!("tick->order @ {}k/s", rate / 1000),
                hop.histogram.clone(),
            ));
        }
        series.push((
            format!("receive->subscriber @ {}k/s", rate / 1000),
            run.subscriber.latency.clone(),
        ));
    }
    let path = config.data.join("binance/usdm_btcusdt_20240808.gz");
    let binance = path.exists().then_some(path.as_path());
    eprintln!("   end to end flat out");
    let run = end_to_end::flat_out(binance, if config.quick { 300_000 } else { 2_000_000 })
        .map_err(|e| e.to_string())?;
    let case = match binance {
        Some(_) => "usdm BTCUSDT recording, flat out".to_owned(),
        None => "synthetic, flat out".to_owned(),
    };
    push(&case, &run, false);
    // The same 100k events/s run without the QUIC publisher, server and subscriber: what
    // the subscriber costs the trading path, in this run.
    let events = (100_000.0 * seconds) as u64;
    eprintln!("   end to end at 100000 events/s without the QUIC subscriber");
    let alone =
        end_to_end::at_rate_without_subscriber(100_000, events).map_err(|e| e.to_string())?;
    if let Some(hop) = alone.latency.iter().find(|h| h.name == "tick->order") {
        let throughput = alone.events as f64 / alone.elapsed.as_secs_f64().max(1e-9);
        let mut row = Row::new(
            "end-to-end",
            "synthetic @ 100k events/s, no QUIC subscriber",
            "tickwire",
            "tick->order",
        )
        .latency(&hop.histogram)
        .throughput(throughput, "events/s")
        .note(format!(
            "the pipeline alone (no publisher, server or client), for comparison; {} events, \
             {} orders; {disruptor}",
            alone.events,
            alone.execution.orders + alone.execution.cancels
        ));
        row.p99_ratio = Some(hop_p99 as f64 / hop.percentiles.p99.max(1) as f64);
        side_by_side.push(format!(
            "- synthetic @ 100k events/s without the QUIC subscriber: receive -> order p50 {} \
             p99 {}; one disruptor hop p99 {} (end to end = {:.2}x the hop)",
            format_ns(hop.percentiles.p50),
            format_ns(hop.percentiles.p99),
            format_ns(hop_p99),
            hop.percentiles.p99 as f64 / hop_p99.max(1) as f64
        ));
        outcome.rows.push(row);
    }
    outcome.latency_plots.push((
        "end-to-end-latency".into(),
        "tick -> order and receive -> QUIC subscriber latency (from scheduled send times)".into(),
        series,
    ));
    outcome.detail = format!(
        "trading pipeline (ma_cross + market_maker, risk, paper venue, notifier; trading thread \
         yielding) with the QUIC publisher on the market-data, execution-report and \
         notification rings (own thread, backoff), the server on 127.0.0.1 (one-worker tokio \
         runtime) and one subscriber to all market data (policy disconnect, one-worker \
         runtime); fixed rates for {seconds} s each from scheduled send times; flat out on {}.\n\n\
         Receive -> order p99 beside one `disruptor` hop in the same run:\n\n{}",
        binance.map_or_else(
            || format!("synthetic ({} absent)", path.display()),
            |p| p.display().to_string()
        ),
        side_by_side.join("\n")
    );
    Ok(outcome)
}

/// The results as markdown: the machine, one table per scenario, the notes.
pub fn markdown(results: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# tickwire bench{}\n\n{} cores; load average (1, 5, 15 min) {} before, {} after.\n",
        if results.quick { " --quick" } else { "" },
        results.cores,
        results.load_before,
        results.load_after
    );
    let fmt_rate = |r: &Row| {
        r.throughput.map_or_else(String::new, |t| {
            if t >= 1e6 {
                format!("{:.2} M", t / 1e6)
            } else {
                format!("{:.1} k", t / 1e3)
            }
        })
    };
    let ns = |v: Option<u64>| v.map_or_else(String::new, format_ns);
    let ratio = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.2}x"));
    for scenario in &results.scenarios {
        let _ = writeln!(
            out,
            "## {} ({}, {:.1} s)\n\n{}\n",
            scenario.name, scenario.status, scenario.seconds, scenario.detail
        );
        let rows: Vec<&Row> = results
            .rows
            .iter()
            .filter(|r| r.scenario == scenario.name)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "| case | implementation | configuration | throughput | p50 | p99 | p99.9 | max | tickwire faster by (throughput) | tickwire lower by (p99) | note |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        for r in rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} {} | {} | {} | {} | {} | {} | {} | {} |",
                r.case,
                r.implementation,
                r.config,
                fmt_rate(r),
                r.unit,
                ns(r.p50_ns),
                ns(r.p99_ns),
                ns(r.p999_ns),
                ns(r.max_ns),
                ratio(r.throughput_ratio),
                ratio(r.p99_ratio),
                r.note
            );
        }
        out.push('\n');
    }
    if !results.notes.is_empty() {
        let _ = writeln!(out, "## Notes\n");
        for note in &results.notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(status: &'static str, rows: Vec<Row>) -> Results {
        Results {
            quick: true,
            started_unix_s: 0,
            cores: 2,
            load_before: String::new(),
            load_after: String::new(),
            scenarios: vec![ScenarioRun {
                name: "journal".into(),
                status,
                detail: "why".into(),
                seconds: 0.0,
                rows: rows.len(),
            }],
            rows,
            plots: Vec::new(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn check_accepts_numbers_and_skips_and_refuses_failures_and_empty_rows() {
        let good = Row::new("journal", "write", "tickwire", "").throughput(1e6, "events/s");
        assert!(results("ok", vec![good.clone()]).check().is_ok());
        assert!(results("skipped", Vec::new()).check().is_ok());
        let failed = results("failed", vec![good])
            .check()
            .expect_err("a failure");
        assert!(
            failed.to_string().contains("journal failed: why"),
            "{failed}"
        );
        assert!(results("ok", Vec::new()).check().is_err(), "no rows");
        let empty = Row::new("journal", "write", "tickwire", "x");
        let error = results("ok", vec![empty]).check().expect_err("no numbers");
        assert!(error.to_string().contains("no numbers"), "{error}");
        let nan = Row::new("journal", "write", "tickwire", "x").throughput(f64::NAN, "events/s");
        assert!(
            results("ok", vec![nan]).check().is_err(),
            "NaN is not a number"
        );
    }

    #[test]
    fn a_filter_matching_nothing_is_an_error() {
        let config = SuiteConfig {
            quick: true,
            out: std::env::temp_dir().join("tickwire-suite-never-written"),
            filter: Some("no-such-scenario".into()),
            data: PathBuf::from("/nonexistent"),
        };
        let error = run(&config).expect_err("nothing selected");
        assert!(error.to_string().contains("ring-throughput"), "{error}");
    }
}
