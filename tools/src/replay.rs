//! `tickwire replay`: a recorded file or journal through the market-data pipeline (the
//! one `run` uses, see [`crate::pipeline`]) at a chosen speed, with a progress bar, then
//! a per-hop latency report and the event rate.
//!
//! By default each event's `receive_ts` is re-stamped with the local clock when it enters
//! the ring, so the hop latencies measure this pipeline; the recorded receive time then
//! only paces the replay (`--keep-receive-ts` keeps it, and the latencies then measure
//! "since the recording").
//!
//! After the run it writes, into `--out` (default `tickwire-replay/<input stem>/`), the
//! whole run's histogram per hop as an HdrHistogram interval log (`latency.hlog`) and a
//! latency percentile plot (`latency.svg`, `latency.png`), and prints their paths.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;
use tickwire_bench::plot::{percentile_plot, write_interval_log};
use tickwire_engine::agent::StopToken;
use tickwire_feeds::Feed;
use tickwire_feeds::journal::JournalFeed;
use tickwire_feeds::open::FeedSpec;
use tickwire_feeds::primed::{PRIME_EVENTS, Primed};
use tickwire_feeds::replay::{Paced, ReplayConfig, Schedule, Speed};
use tickwire_strategies::pipeline::{Taps, TradingPipeline};

use crate::config::ServiceConfig;
use crate::pipeline::{HopReport, PipelineArgs, install_ctrl_c, md_pipeline};
use crate::progress::events_bar;
use crate::timestamp::{parse_time, utc};

/// Options of `tickwire replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// What to replay: a Binance recording (`.gz`), a DBN file (`.dbn`, `.dbn.zst`), an
    /// ITCH 5.0 file (`.itch`), a journal directory,
    /// `synthetic[:seed=N,instruments=N,events=N,rate=N]`, or a NATS JetStream stream
    /// `nats://HOST:PORT/STREAM[?durable=NAME&pace=original&subject=FILTER&follow=true]`.
    pub input: String,
    /// Speed: `max` (flat out, zero copy), `recorded` (the recorded pace) or a factor of it
    /// such as `10x` or `0.5x`.
    #[arg(
        long,
        default_value = "recorded",
        value_name = "max|recorded|<factor>x"
    )]
    pub speed: Speed,
    /// Start at this journal sequence (journal inputs), or stream sequence (NATS).
    #[arg(long, value_name = "N", conflicts_with = "from_time")]
    pub from_seq: Option<u64>,
    /// Start at the first event received at or after this time: RFC 3339
    /// (`2024-08-08T04:55:10Z`) or ns since the Unix epoch. Journals seek to it; other
    /// inputs skip the events recorded before it.
    #[arg(long, value_name = "RFC3339|NS", value_parser = parse_time)]
    pub from_time: Option<u64>,
    /// Keep the recorded receive timestamps instead of re-stamping them at injection
    /// (latencies then run from the recorded receive time).
    #[arg(long)]
    pub keep_receive_ts: bool,
    /// Print the final report as JSON on stdout (progress and notes go to stderr).
    #[arg(long)]
    pub json: bool,
    /// Run the full trading pipeline (strategies, risk checks, paper venue, alerts) with
    /// the `[pipeline]`, `[risk]`, `[strategies.*]` and `[[alerts]]` of this file (the
    /// format of `tickwire run --config`; other sections are ignored). Without it the
    /// replay runs the market-data pipeline's probe handlers.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the HdrHistogram log (`latency.hlog`) and the latency percentile plot
    /// (`latency.svg`, `latency.png`). Default: `tickwire-replay/<input stem>/`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

/// The final report (`--json` prints it as is).
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// The input as given.
    pub input: String,
    /// The adapter: binance, dbn, itch, journal, synthetic.
    pub format: &'static str,
    /// `max`, `recorded` or `<factor>x`.
    pub speed: String,
    /// Whether receive timestamps were re-stamped at injection.
    pub restamped: bool,
    /// Events through the whole pipeline.
    pub events: u64,
    /// Wall time from the start of the pipeline to its end, seconds.
    pub elapsed_s: f64,
    /// `events / elapsed_s`.
    pub events_per_s: f64,
    /// Latency per hop.
    pub hops: Vec<HopReport>,
    /// The files written: the HdrHistogram log and the plot (SVG, PNG).
    pub files: Vec<PathBuf>,
}

/// Runs the replay and prints the report.
pub fn replay(args: &ReplayArgs) -> Result<()> {
    if args.input.starts_with("nats://") || args.input.starts_with("tls://") {
        let feed = open_nats(args)?;
        let described = format!("nats {}", args.input);
        return replay_feed(
            args,
            feed,
            None,
            "nats",
            &described,
            Schedule::Receive,
            false,
        );
    }
    let spec = FeedSpec::parse(&args.input).context("cannot open the replay input")?;
    let (feed, total): (Box<dyn Feed>, Option<u64>) = match &spec {
        FeedSpec::Journal(dir) => {
            let mut feed = JournalFeed::open_to_damage(dir).context("cannot open the journal")?;
            if let Some(sequence) = args.from_seq {
                feed = feed.from_sequence(sequence);
            }
            if let Some(time) = args.from_time {
                feed = feed.from_time(time);
            }
            let reader = feed.reader();
            let (first, end) = (reader.first_sequence(), reader.end_sequence());
            if (args.from_seq.is_some() || args.from_time.is_some()) && feed.position() == end {
                let time = |sequence| {
                    reader
                        .get(sequence)
                        .map_or_else(String::new, |e| utc(e.receive_ts))
                };
                let asked = match (args.from_seq, args.from_time) {
                    (Some(sequence), _) => format!("--from-seq {sequence}"),
                    (_, Some(time)) => format!("--from-time {}", utc(time)),
                    _ => String::new(),
                };
                // A damaged journal holds more than can be read: say where it stops.
                let damaged = reader
                    .damage()
                    .map(|d| format!(" (read up to the damage at {end}: {d})"))
                    .unwrap_or_default();
                if first == end {
                    bail!("{asked}: the journal {} is empty{damaged}", dir.display());
                }
                bail!(
                    "{asked} is past the end of the journal {}: it holds sequences {first}..{end}, \
                     received {} to {}{damaged}",
                    dir.display(),
                    time(first),
                    time(end - 1)
                );
            }
            let total = end - feed.position();
            (Box::new(feed), Some(total))
        }
        other => {
            if args.from_seq.is_some() {
                bail!(
                    "--from-seq needs a journal directory, and {} is a {} input (use --from-time)",
                    args.input,
                    other.kind()
                );
            }
            let total = match other {
                FeedSpec::Synthetic(config) => config.events,
                _ => None,
            };
            (other.open().context("cannot open the replay input")?, total)
        }
    };
    // Journals seeked already.
    let seeked = matches!(spec, FeedSpec::Journal(_));
    let described = spec.to_string();
    replay_feed(
        args,
        feed,
        total,
        spec.kind(),
        &described,
        spec.schedule(),
        seeked,
    )
}

/// A JetStream stream (`nats://HOST:PORT/STREAM?...`, see `tickwire_nats::source`):
/// `--from-seq` is a stream sequence and `--from-time` a storage time, both sought by the
/// server.
fn open_nats(args: &ReplayArgs) -> Result<Box<dyn Feed>> {
    let mut config = tickwire_nats::SourceConfig::from_url(&args.input)?;
    if let Some(sequence) = args.from_seq {
        config.start = tickwire_nats::source::Start::Sequence(sequence);
    }
    if let Some(time) = args.from_time {
        config.start = tickwire_nats::source::Start::Time(time);
    }
    Ok(Box::new(
        tickwire_nats::NatsFeed::open(config)
            .with_context(|| format!("cannot open the replay input {}", args.input))?,
    ))
}

fn replay_feed(
    args: &ReplayArgs,
    feed: Box<dyn Feed>,
    total: Option<u64>,
    format: &'static str,
    spec: &str,
    schedule: Schedule,
    seeked: bool,
) -> Result<()> {
    let config = ReplayConfig {
        speed: args.speed,
        restamp: !args.keep_receive_ts,
        from_time: args.from_time.filter(|_| !seeked && format != "nats"),
        schedule,
    };
    if let Some(path) = &args.config {
        return replay_trading(args, path, spec, format, feed, total, config);
    }
    let feed = Paced::new(feed, config);
    let instruments = feed.instruments().len().max(1);
    let stop = StopToken::new();
    let (layout, mut hops) = md_pipeline(feed, instruments, &args.pipeline, &stop)?;
    eprintln!(
        "replaying {spec} at {} speed{}",
        args.speed,
        if config.restamp {
            ", receive_ts re-stamped at injection"
        } else {
            ""
        }
    );

    install_ctrl_c(&stop)?;
    let bar = events_bar(total, "replay");
    let started = Instant::now();
    let pipeline = layout.spawn()?;
    while !pipeline.is_finished() {
        thread::sleep(Duration::from_millis(20));
        bar.set_position(hops.handled());
    }
    let elapsed = started.elapsed();
    let result = pipeline.join();
    bar.finish_and_clear();
    hops.finish();
    result.with_context(|| {
        format!(
            "replay of {} failed after {} events",
            args.input,
            hops.handled()
        )
    })?;

    let events = hops.handled();
    let mut report = ReplayReport {
        input: args.input.clone(),
        format,
        speed: args.speed.to_string(),
        restamped: config.restamp,
        events,
        elapsed_s: elapsed.as_secs_f64(),
        events_per_s: events as f64 / elapsed.as_secs_f64().max(1e-9),
        hops: hops.report(),
        files: Vec::new(),
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out_dir(&args.input));
    report.files = write_latency_files(&out, &hops.histograms(), &args.input)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("serialising the report")?
        );
    } else {
        hops.print_summary(elapsed);
        println!();
        for file in &report.files {
            println!("wrote {}", file.display());
        }
    }
    Ok(())
}

/// `tickwire-replay/<stem>`: the input's file name without its format's extensions
/// (`spot_btcusdt_20240808.gz` -> `spot_btcusdt_20240808`), or `synthetic`.
pub fn default_out_dir(input: &str) -> PathBuf {
    let name = if input.starts_with("synthetic") {
        "synthetic".to_owned()
    } else {
        let file = Path::new(input.trim_end_matches('/'))
            .file_name()
            .map_or_else(|| "input".to_owned(), |f| f.to_string_lossy().into_owned());
        let mut stem = file.as_str();
        for ext in [".gz", ".zst", ".dbn", ".itch"] {
            stem = stem.strip_suffix(ext).unwrap_or(stem);
        }
        if stem.is_empty() {
            file.clone()
        } else {
            stem.to_owned()
        }
    };
    Path::new("tickwire-replay").join(name)
}

/// Writes the HdrHistogram log and the percentile plot of `histograms` into `dir`; returns
/// the files written (log, SVG, PNG). Takes named histograms so that it serves whichever
/// pipeline the replay runs.
pub fn write_latency_files(
    dir: &Path,
    histograms: &[(&str, &Histogram<u64>)],
    input: &str,
) -> Result<Vec<PathBuf>> {
    let log = dir.join("latency.hlog");
    write_interval_log(&log, histograms)
        .with_context(|| format!("writing the HdrHistogram log into {}", dir.display()))?;
    let title = format!("tickwire replay: {input}");
    let plotted = percentile_plot(&dir.join("latency"), &title, histograms)
        .with_context(|| format!("writing the latency plot into {}", dir.display()))?;
    if let Some(note) = &plotted.note {
        eprintln!("note: {note}");
    }
    Ok(vec![log, plotted.svg, plotted.png])
}

/// The report of a replay through the trading pipeline (`--config`; `--json` prints it).
#[derive(Debug, Clone, Serialize)]
pub struct TradingReplayReport {
    /// The input as given.
    pub input: String,
    /// The adapter.
    pub format: &'static str,
    /// `max`, `recorded` or `<factor>x`.
    pub speed: String,
    /// Market events through the pipeline.
    pub events: u64,
    /// Wall time, seconds.
    pub elapsed_s: f64,
    /// `events / elapsed_s`.
    pub events_per_s: f64,
    /// Orders received by execution (new orders).
    pub orders: u64,
    /// Fill reports.
    pub fills: u64,
    /// Rejected orders.
    pub rejects: u64,
    /// Notifications raised.
    pub notifications: u64,
    /// Realized + unrealized PnL of all positions, quote currency.
    pub pnl: f64,
    /// Latency per hop.
    pub hops: Vec<HopReport>,
    /// The HdrHistogram log and the plots written.
    pub files: Vec<PathBuf>,
}

/// `tickwire replay --config`: the input through [`TradingPipeline`], paced by
/// `replay`, with the strategies of the configuration.
fn replay_trading(
    args: &ReplayArgs,
    path: &Path,
    spec: &str,
    format: &'static str,
    feed: Box<dyn Feed>,
    total: Option<u64>,
    replay: ReplayConfig,
) -> Result<()> {
    let service = ServiceConfig::from_file(path)?;
    let mut trading = service.trading();
    // Pacing is done here (the recorded schedule of each format); the pipeline re-stamps
    // receive times at injection and keeps the event time for strategies and timers.
    trading.pipeline.pace = None;
    trading.pipeline.restamp = replay.restamp;
    // A replay is deterministic: the same file gives the same orders, fills and alerts.
    trading.pipeline.lockstep = true;
    let primed = Primed::prime(feed, PRIME_EVENTS);
    let feed = Paced::new(
        primed,
        ReplayConfig {
            restamp: false,
            ..replay
        },
    );
    let assembled = TradingPipeline::new(trading)
        .assemble(feed, &Taps::default())
        .with_context(|| format!("{}: cannot build the trading pipeline", path.display()))?;
    eprintln!(
        "replaying {spec} at {} speed through the trading pipeline ({} strategies: {})",
        args.speed,
        service.strategies.len(),
        service
            .strategies
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
    let md = assembled.monitors.md.clone();
    let finish = assembled.finish;
    let bar = events_bar(total, "replay");
    let started = Instant::now();
    let pipeline = assembled.layout.spawn()?;
    install_ctrl_c(pipeline.stop_token())?;
    while !pipeline.is_finished() {
        thread::sleep(Duration::from_millis(20));
        bar.set_position(md.published());
    }
    let elapsed = started.elapsed();
    let threads = pipeline.join();
    bar.finish_and_clear();
    let threads = threads.with_context(|| {
        format!(
            "replay of {} failed after {} events",
            args.input,
            md.published()
        )
    })?;
    let result = finish.report(&threads, elapsed);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out_dir(&args.input));
    let histograms: Vec<(&str, &Histogram<u64>)> = result
        .latency
        .iter()
        .filter(|h| !h.histogram.is_empty())
        .map(|h| (h.name.as_str(), &h.histogram))
        .collect();
    let files = write_latency_files(&out, &histograms, &args.input)?;
    if args.json {
        let e = &result.execution;
        let report = TradingReplayReport {
            input: args.input.clone(),
            format,
            speed: args.speed.to_string(),
            events: result.events,
            elapsed_s: elapsed.as_secs_f64(),
            events_per_s: result.events as f64 / elapsed.as_secs_f64().max(1e-9),
            orders: e.orders,
            fills: e.fills,
            rejects: e.rejects.iter().map(|(_, n)| n).sum(),
            notifications: result.notifier.notifications,
            pnl: result.total_pnl(),
            hops: result
                .latency
                .iter()
                .map(|h| HopReport {
                    hop: h.name.clone(),
                    events: h.percentiles.count,
                    p50_ns: h.percentiles.p50,
                    p99_ns: h.percentiles.p99,
                    p999_ns: h.percentiles.p999,
                    max_ns: h.percentiles.max,
                })
                .collect(),
            files,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("serialising the report")?
        );
    } else {
        println!(
            "{result}
"
        );
        for file in &files {
            println!("wrote {}", file.display());
        }
    }
    Ok(())
}
