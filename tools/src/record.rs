//! `tickwire record`: a feed through the market-data ring into a journal.
//!
//! ```text
//! input ──► ingest ──► MD ring ──► recorder ──► journal segments
//! ```
//!
//! The ingest agent and the [`RecorderAgent`] run on threads of their own. A journal
//! segment's instrument table is written when the segment is created, so before the
//! pipeline starts the feed is *primed*: up to [`PRIME_EVENTS`] events are decoded into
//! memory, which reads the symbol tables of every format here (ITCH stock directory, DBN
//! metadata, Binance's first messages), and the journal is opened with the instruments
//! they named. The primed events go first into the ring. Instruments first seen later are
//! in the table of the segments created after them only (the command warns).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use tickwire_engine::agent::{Layout, StopToken, ThreadSpec};
use tickwire_engine::event::Event;
use tickwire_engine::idle::IdleStrategy;
use tickwire_engine::instrument::InstrumentRegistry;
use tickwire_engine::journal::{
    FsyncPolicy, JournalConfig, JournalReader, JournalWriter, RecorderAgent,
};
use tickwire_engine::ring::RingBuilder;
use tickwire_feeds::open::FeedSpec;
use tickwire_feeds::primed::Primed;
use tickwire_feeds::{Feed, FeedError, FeedStatus, IngestAgent, Sink};

use crate::pipeline::{PipelineArgs, install_ctrl_c, pick_cores};
use crate::progress::events_bar;

/// Events decoded before the journal is opened, to learn the instruments.
pub use tickwire_feeds::primed::PRIME_EVENTS;

/// When the journal is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FsyncArg {
    /// Never (the OS writes back when it likes); a clean exit still syncs once.
    Never,
    /// After every batch the recorder appends.
    Batch,
    /// At most every `--fsync-interval-ms`.
    Interval,
}

/// Options of `tickwire record`.
#[derive(Debug, Clone, Args)]
pub struct RecordArgs {
    /// What to record: a Binance recording (`.gz`), a DBN file (`.dbn`, `.dbn.zst`), an
    /// ITCH 5.0 file (`.itch`), a journal directory, or
    /// `synthetic[:seed=N,instruments=N,events=N,rate=N]`.
    pub input: String,
    /// The journal directory to write (created if missing; it must not hold a journal
    /// already unless `--append`).
    #[arg(long, short)]
    pub out: PathBuf,
    /// When to fsync the journal.
    #[arg(long, value_enum, default_value_t = FsyncArg::Interval)]
    pub fsync: FsyncArg,
    /// The interval of `--fsync interval`, ms.
    #[arg(long, default_value_t = 1_000, value_name = "MS")]
    pub fsync_interval_ms: u64,
    /// Segment size, MiB (header included), 1 to 1048576.
    #[arg(long, default_value_t = 256, value_name = "MIB",
          value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub segment_mib: u64,
    /// Append to the journal in `--out` if there is one.
    #[arg(long)]
    pub append: bool,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

/// The feed as the ingest agent sees it: the primed events first, then the rest of the
/// input; it counts what it publishes and keeps the latest instrument table for the end.
struct RecordFeed {
    inner: Primed<Box<dyn Feed>>,
    published: Arc<AtomicU64>,
    instruments: Arc<Mutex<InstrumentRegistry>>,
    known: usize,
}

impl RecordFeed {
    fn prime(inner: Box<dyn Feed>) -> Self {
        let inner = Primed::prime(inner, PRIME_EVENTS);
        let instruments = inner.instruments().clone();
        Self {
            known: instruments.len(),
            instruments: Arc::new(Mutex::new(instruments)),
            inner,
            published: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Feed for RecordFeed {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn max_events_per_message(&self) -> usize {
        self.inner.max_events_per_message()
    }

    fn poll(&mut self, sink: &mut Sink<'_>) -> Result<FeedStatus, FeedError> {
        let status = self.inner.poll(sink);
        // Relaxed: a progress counter; `join` orders the final value.
        self.published
            .fetch_add(sink.written() as u64, Ordering::Relaxed);
        let known = self.inner.instruments().len();
        if known != self.known {
            self.known = known;
            *self
                .instruments
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) =
                self.inner.instruments().clone();
        }
        status
    }

    fn instruments(&self) -> &InstrumentRegistry {
        self.inner.instruments()
    }
}

fn has_segments(dir: &Path) -> Result<usize> {
    if !dir.exists() {
        return Ok(0);
    }
    let entries = fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?;
    let mut segments = 0;
    for entry in entries {
        let entry = entry.with_context(|| format!("{}: cannot list", dir.display()))?;
        if entry.file_name().to_string_lossy().ends_with(".twj") {
            segments += 1;
        }
    }
    Ok(segments)
}

/// Records the input and prints a summary.
pub fn record(args: &RecordArgs) -> Result<()> {
    let spec = FeedSpec::parse(&args.input).context("cannot open the input to record")?;
    if spec.path().is_some_and(|p| p == args.out) {
        bail!(
            "--out {} is the input itself; choose another directory",
            args.out.display()
        );
    }
    let existing = has_segments(&args.out)?;
    if existing > 0 && !args.append {
        bail!(
            "{}: already holds a journal ({existing} segment{}); pass --append to add to it, or choose another --out",
            args.out.display(),
            if existing == 1 { "" } else { "s" }
        );
    }
    let feed = spec.open().context("cannot open the input to record")?;
    let total = match &spec {
        FeedSpec::Synthetic(config) => config.events,
        _ => None,
    };
    let started = Instant::now();
    let feed = RecordFeed::prime(feed);
    let primed_instruments = feed.inner.instruments().clone();
    let published = Arc::clone(&feed.published);
    let instruments = Arc::clone(&feed.instruments);

    let fsync = match args.fsync {
        FsyncArg::Never => FsyncPolicy::Never,
        FsyncArg::Batch => FsyncPolicy::EveryBatch,
        FsyncArg::Interval => FsyncPolicy::Interval(Duration::from_millis(args.fsync_interval_ms)),
    };
    let writer = JournalWriter::open(
        &args.out,
        JournalConfig {
            segment_bytes: args.segment_mib << 20,
            fsync,
            instruments: primed_instruments.clone(),
            ..JournalConfig::default()
        },
    )
    .context("cannot open the output journal")?;
    let first_sequence = writer.next_sequence();

    let (ingest_core, recorder_core) = pick_cores(&args.pipeline.cores)?;
    let mut ring = RingBuilder::<Event>::new(args.pipeline.ring_size)
        .with_context(|| format!("--ring-size {}", args.pipeline.ring_size))?;
    let subscriber = ring.subscriber("recorder");
    let publisher = ring.build()?;
    let stop = StopToken::new();
    let layout = Layout::new()
        .with_stop_token(stop.clone())
        .thread(
            ThreadSpec::new("ingest")
                .core(ingest_core)
                .idle(IdleStrategy::YIELDING)
                .agent(IngestAgent::new(feed, publisher)),
        )
        .thread(
            ThreadSpec::new("recorder")
                .core(recorder_core)
                .idle(args.pipeline.idle)
                .agent(RecorderAgent::new(subscriber, writer)),
        );
    eprintln!("recording {spec} into {}", args.out.display());
    install_ctrl_c(&stop)?;
    let bar = events_bar(total, "record");
    let pipeline = layout.spawn()?;
    while !pipeline.is_finished() {
        thread::sleep(Duration::from_millis(20));
        bar.set_position(published.load(Ordering::Relaxed));
    }
    let result = pipeline.join();
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    let report = result.with_context(|| {
        format!(
            "recording {} into {} failed after {} events (what was recorded is in the journal)",
            args.input,
            args.out.display(),
            published.load(Ordering::Relaxed)
        )
    })?;
    let recorded: u64 = report
        .threads
        .iter()
        .flat_map(|t| &t.agents)
        .filter(|a| a.name == "recorder")
        .map(|a| a.work)
        .sum();

    let reader = JournalReader::open(&args.out).context("cannot reopen the recorded journal")?;
    let mut bytes = 0;
    let mut segments = 0;
    for (path, ..) in reader.segments() {
        segments += 1;
        bytes += fs::metadata(path)
            .with_context(|| format!("{}: cannot stat", path.display()))?
            .len();
    }
    let seen = instruments
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .len();
    println!(
        "recorded {recorded} events, {seen} instrument{} into {} ({segments} segment{}, {:.1} MiB, sequences {first_sequence}..{}) in {:.2}s ({:.0} ev/s)",
        if seen == 1 { "" } else { "s" },
        args.out.display(),
        if segments == 1 { "" } else { "s" },
        bytes as f64 / (1 << 20) as f64,
        reader.end_sequence(),
        elapsed.as_secs_f64(),
        recorded as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    if seen > reader.instruments().len() {
        eprintln!(
            "warning: {} instruments appeared after the journal's last segment was created; \
             their events are recorded, but the segment tables name only {}",
            seen - reader.instruments().len(),
            reader.instruments().len()
        );
    }
    Ok(())
}
