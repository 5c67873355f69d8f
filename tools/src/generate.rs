//! `tickwire gen`: synthetic inputs for tests and benchmarks, deterministic from a seed.
//!
//! * `gen itch <out-file>`: a generated ITCH 5.0 day
//!   ([`tickwire_feeds::itch::generate_file`]), length-prefixed as Nasdaq's sample files.
//! * `gen journal <out-dir>`: a journal of synthetic quotes and trades
//!   ([`SyntheticFeed`] in simulated time), written directly, without a ring.

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tickwire_engine::event::Event;
use tickwire_engine::journal::{FsyncPolicy, JournalConfig, JournalWriter};
use tickwire_feeds::itch::{GeneratorConfig, generate_file};
use tickwire_feeds::synthetic::{SyntheticConfig, SyntheticFeed};
use tickwire_feeds::{Feed, FeedStatus, Sink};

/// `tickwire gen` and its targets.
#[derive(Debug, Clone, Args)]
pub struct GenArgs {
    #[command(subcommand)]
    pub target: GenTarget,
}

/// What to generate.
#[derive(Debug, Clone, Subcommand)]
pub enum GenTarget {
    /// An ITCH 5.0 file: system events, a stock directory, order flow, crosses.
    Itch(GenItchArgs),
    /// A journal of synthetic quotes and trades.
    Journal(GenJournalArgs),
}

/// Options of `tickwire gen itch`.
#[derive(Debug, Clone, Args)]
pub struct GenItchArgs {
    /// The file to write (replaced if it exists).
    pub out: PathBuf,
    /// Order-flow messages between the open and the close.
    #[arg(long, default_value_t = 100_000)]
    pub messages: u64,
    /// Stocks (1..=65535).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub stocks: u16,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Options of `tickwire gen journal`.
#[derive(Debug, Clone, Args)]
pub struct GenJournalArgs {
    /// The journal directory to create (it must not hold a journal already).
    pub out: PathBuf,
    /// Events.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Instruments (symbols SYN000, SYN001, ...).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub instruments: u32,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Simulated events per second: timestamps are `1/rate` apart from 2024-01-02T14:30Z.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: u64,
}

/// Runs `tickwire gen`.
pub fn generate(args: &GenArgs) -> Result<()> {
    match &args.target {
        GenTarget::Itch(a) => itch(a),
        GenTarget::Journal(a) => journal(a),
    }
}

fn itch(args: &GenItchArgs) -> Result<()> {
    let started = Instant::now();
    let bytes = generate_file(&GeneratorConfig {
        seed: args.seed,
        stocks: args.stocks,
        messages: args.messages,
        ..GeneratorConfig::default()
    })
    .context("generating the ITCH day")?;
    fs::write(&args.out, &bytes)
        .with_context(|| format!("{}: cannot write", args.out.display()))?;
    println!(
        "wrote {} ({} bytes: {} order-flow messages, {} stocks, seed {}) in {:.2}s",
        args.out.display(),
        bytes.len(),
        args.messages,
        args.stocks,
        args.seed,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn journal(args: &GenJournalArgs) -> Result<()> {
    let started = Instant::now();
    if args.out.is_dir()
        && fs::read_dir(&args.out)
            .with_context(|| format!("{}: cannot list", args.out.display()))?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".twj"))
    {
        bail!(
            "{}: already holds a journal; choose another directory",
            args.out.display()
        );
    }
    let mut feed = SyntheticFeed::new(SyntheticConfig {
        seed: args.seed,
        instruments: args.instruments,
        rate: args.rate,
        events: Some(args.events),
        real_time: false,
        ..SyntheticConfig::default()
    });
    let mut writer = JournalWriter::open(
        &args.out,
        JournalConfig {
            fsync: FsyncPolicy::Never,
            instruments: feed.instruments().clone(),
            ..JournalConfig::default()
        },
    )
    .context("cannot create the journal")?;
    let mut buf = vec![Event::default(); 4096];
    loop {
        let mut sink = Sink::from_slice(&mut buf);
        let status = feed.poll(&mut sink).context("synthetic feed")?;
        writer
            .append_batch(sink.events())
            .context("writing the journal")?;
        if status == FeedStatus::End {
            break;
        }
    }
    let end = writer.next_sequence();
    // Generated data is cheap to make again, but a finished file should be on disk.
    writer.sync().context("syncing the journal")?;
    writer.close().context("closing the journal")?;
    println!(
        "wrote {} ({end} events, {} instruments, seed {}) in {:.2}s",
        args.out.display(),
        args.instruments,
        args.seed,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
