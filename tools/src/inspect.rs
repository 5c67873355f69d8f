//! `tickwire inspect`: what a journal holds. Instruments and their event counts, counts by
//! event kind, time range (first and last receive and exchange timestamps, in UTC), the
//! sequence range, gaps, segments and their sizes, and what recovery found.
//!
//! The journal is opened read-only: a torn tail is reported and skipped, never truncated
//! (a later writer or `record --append` cuts it). Checksums are verified in full first.
//!
//! **Gaps** are of two sorts: events a feed flagged [`flags::GAP`] (the source skipped
//! sequence numbers and resynchronised), and breaks in the journal's own sequence between
//! segments (which the reader refuses to open, so a journal that opens has none; the
//! check is kept for the report).

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use tickwire_engine::event::{EventKind, flags};
use tickwire_engine::journal::{JournalReader, OpenOptions, Verify, has_live_writer};

use crate::timestamp::utc;

/// Options of `tickwire inspect`.
#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// The journal directory.
    pub journal: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Gap positions listed at most (the count is always exact).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub max_gaps: usize,
}

/// One instrument.
#[derive(Debug, Clone, Serialize)]
pub struct InstrumentReport {
    /// Instrument id.
    pub id: u32,
    /// Symbol (`?` for an id the table does not name).
    pub symbol: String,
    /// Events of this instrument.
    pub events: u64,
}

/// A timestamp, ns and UTC.
#[derive(Debug, Clone, Serialize)]
pub struct Timestamp {
    /// ns since the Unix epoch (0: none).
    pub ns: u64,
    /// RFC 3339 UTC.
    pub utc: String,
}

impl Timestamp {
    fn of(ns: u64) -> Self {
        Self { ns, utc: utc(ns) }
    }
}

/// One segment.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentReport {
    /// File name.
    pub file: String,
    /// First sequence.
    pub first_sequence: u64,
    /// Records.
    pub records: u64,
    /// File size, bytes.
    pub bytes: u64,
    /// When it was created.
    pub created: Timestamp,
}

/// A break in the journal's sequence between two segments.
#[derive(Debug, Clone, Serialize)]
pub struct Discontinuity {
    /// The segment where it shows.
    pub file: String,
    /// Where the sequence should have continued.
    pub expected: u64,
    /// Where it did.
    pub found: u64,
}

/// What recovery found at the end of the last segment.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryReport {
    /// The last segment.
    pub file: String,
    /// Its length on disk, bytes.
    pub file_bytes: u64,
    /// The length of its valid prefix, bytes.
    pub valid_bytes: u64,
    /// Whether the file was cut (always false here: inspect only reads).
    pub truncated: bool,
}

/// The whole report (`--json` prints it as is).
#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    /// The journal directory.
    pub journal: String,
    /// Events.
    pub events: u64,
    /// First sequence.
    pub first_sequence: u64,
    /// One past the last sequence.
    pub end_sequence: u64,
    /// Instruments of the table, with their counts (plus ids the table lacks).
    pub instruments: Vec<InstrumentReport>,
    /// Counts by kind name (`quote`, `trade`, `book_delta`, ...; `unknown` for bad codes).
    pub kinds: std::collections::BTreeMap<String, u64>,
    /// First non-zero receive time, in sequence order.
    pub first_receive: Timestamp,
    /// Last non-zero receive time.
    pub last_receive: Timestamp,
    /// First non-zero exchange time (0: no event carries one).
    pub first_exchange: Timestamp,
    /// Last non-zero exchange time.
    pub last_exchange: Timestamp,
    /// Events whose receive time is below the one before (the clock stepped back).
    pub receive_ts_regressions: u64,
    /// Events flagged GAP.
    pub gap_events: u64,
    /// Sequences of the first flagged events (up to `--max-gaps`).
    pub gap_sequences: Vec<u64>,
    /// Sequence breaks between segments.
    pub discontinuities: Vec<Discontinuity>,
    /// Events flagged SNAPSHOT.
    pub snapshot_events: u64,
    /// Segments, in order.
    pub segments: Vec<SegmentReport>,
    /// Bytes of all segments.
    pub bytes: u64,
    /// A torn tail found at open, if any.
    pub recovery: Option<RecoveryReport>,
    /// Whether a writer held the journal's `LOCK` when it was read: the last segment was
    /// still being written, and its end is where the writer was, not a torn tail.
    pub live_writer: bool,
    /// The damage the journal was read up to, if any (a bad checksum, segment header, or a
    /// missing or short segment): the report covers the records before it only.
    pub damage: Option<String>,
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}

/// Builds the report of the journal in `args.journal`.
pub fn report(args: &InspectArgs) -> Result<InspectReport> {
    let dir = &args.journal;
    if !dir.is_dir() {
        let what = if dir.exists() {
            "is not a directory (a journal is a directory of segments)"
        } else {
            "does not exist"
        };
        anyhow::bail!("{}: {what}", dir.display());
    }
    let reader = JournalReader::open_with(
        dir,
        OpenOptions {
            verify: Verify::All,
            truncate_torn_tail: false,
            stop_at_damage: true,
        },
    )
    .context("cannot open the journal")?;

    let mut per_instrument: Vec<u64> = vec![0; reader.instruments().len()];
    let mut kinds = std::collections::BTreeMap::new();
    let mut gap_events = 0;
    let mut gap_sequences = Vec::new();
    let mut snapshot_events = 0;
    let mut regressions = 0;
    let mut last_receive = 0;
    // First and last non-zero timestamps in sequence order (a source without exchange
    // times, such as Binance's spot bookTicker, writes 0).
    let (mut first_receive, mut last_receive_ts) = (0, 0);
    let (mut first_exchange, mut last_exchange) = (0, 0);
    let mut iter = reader.iter();
    loop {
        let sequence = iter.sequence();
        let Some(event) = iter.next() else { break };
        let index = event.instrument as usize;
        if index >= per_instrument.len() {
            per_instrument.resize(index + 1, 0);
        }
        per_instrument[index] += 1;
        let kind = event.kind().map_or("unknown", EventKind::name);
        *kinds.entry(kind.to_owned()).or_insert(0u64) += 1;
        if event.flags & flags::GAP != 0 {
            gap_events += 1;
            if gap_sequences.len() < args.max_gaps {
                gap_sequences.push(sequence);
            }
        }
        if event.flags & flags::SNAPSHOT != 0 {
            snapshot_events += 1;
        }
        if event.receive_ts < last_receive {
            regressions += 1;
        }
        last_receive = event.receive_ts;
        for (ts, first, last) in [
            (event.receive_ts, &mut first_receive, &mut last_receive_ts),
            (event.exchange_ts, &mut first_exchange, &mut last_exchange),
        ] {
            if ts != 0 {
                if *first == 0 {
                    *first = ts;
                }
                *last = ts;
            }
        }
    }

    let instruments = per_instrument
        .iter()
        .enumerate()
        .map(|(id, &events)| InstrumentReport {
            id: id as u32,
            symbol: reader
                .instruments()
                .symbol(id as u32)
                .unwrap_or("?")
                .to_owned(),
            events,
        })
        .collect();

    let mut segments = Vec::new();
    let mut discontinuities = Vec::new();
    let mut bytes = 0;
    let mut expected = None;
    for (path, first_sequence, records, created_ns) in reader.segments() {
        let size = fs::metadata(path)
            .with_context(|| format!("{}: cannot stat", path.display()))?
            .len();
        bytes += size;
        if let Some(expected) = expected.filter(|&e| e != first_sequence) {
            discontinuities.push(Discontinuity {
                file: file_name(path),
                expected,
                found: first_sequence,
            });
        }
        expected = Some(first_sequence + records);
        segments.push(SegmentReport {
            file: file_name(path),
            first_sequence,
            records,
            bytes: size,
            created: Timestamp::of(created_ns),
        });
    }
    // Best effort: a LOCK this user cannot open says nothing about a writer, and the rest
    // of the report stands without it.
    let live_writer = has_live_writer(dir).unwrap_or(false);
    let recovery = reader.recovery().map(|r| RecoveryReport {
        file: file_name(&r.path),
        file_bytes: r.from_len,
        valid_bytes: r.to_len,
        truncated: r.truncated,
    });
    Ok(InspectReport {
        journal: dir.display().to_string(),
        events: reader.len(),
        first_sequence: reader.first_sequence(),
        end_sequence: reader.end_sequence(),
        instruments,
        kinds,
        first_receive: Timestamp::of(first_receive),
        last_receive: Timestamp::of(last_receive_ts),
        first_exchange: Timestamp::of(first_exchange),
        last_exchange: Timestamp::of(last_exchange),
        receive_ts_regressions: regressions,
        gap_events,
        gap_sequences,
        discontinuities,
        snapshot_events,
        segments,
        bytes,
        recovery,
        live_writer,
        damage: reader.damage().map(ToString::to_string),
    })
}

/// Prints the report of `args.journal`.
pub fn inspect(args: &InspectArgs) -> Result<()> {
    let r = report(args)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).context("serialising the report")?
        );
        return damaged(&r);
    }
    println!("journal    {}", r.journal);
    println!(
        "events     {} (sequences {}..{})",
        r.events, r.first_sequence, r.end_sequence
    );
    let kinds: Vec<String> = r.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("kinds      {}", kinds.join(", "));
    println!(
        "receive    {} .. {}",
        r.first_receive.utc, r.last_receive.utc
    );
    println!(
        "exchange   {} .. {}",
        r.first_exchange.utc, r.last_exchange.utc
    );
    if r.last_receive.ns > r.first_receive.ns {
        println!(
            "span       {:.3}s of receive time",
            (r.last_receive.ns - r.first_receive.ns) as f64 / 1e9
        );
    }
    println!(
        "gaps       {} events flagged GAP{}; {} sequence breaks between segments",
        r.gap_events,
        if r.gap_sequences.is_empty() {
            String::new()
        } else {
            format!(" (at {:?})", r.gap_sequences)
        },
        r.discontinuities.len()
    );
    println!("snapshots  {} events flagged SNAPSHOT", r.snapshot_events);
    if r.receive_ts_regressions > 0 {
        println!(
            "clock      receive time stepped back {} times",
            r.receive_ts_regressions
        );
    }
    println!("instruments {}:", r.instruments.len());
    for i in &r.instruments {
        println!("  {:>5} {:<16} {:>12} events", i.id, i.symbol, i.events);
    }
    println!(
        "segments   {} ({:.1} MiB):",
        r.segments.len(),
        r.bytes as f64 / (1 << 20) as f64
    );
    for s in &r.segments {
        println!(
            "  {}  first {:>12}  records {:>10}  {:>12} bytes  created {}",
            s.file, s.first_sequence, s.records, s.bytes, s.created.utc
        );
    }
    match &r.recovery {
        _ if r.live_writer => println!(
            "recovery   a live writer holds the journal: read as it was at open, its last segment still growing"
        ),
        None => println!("recovery   clean: no torn tail"),
        Some(rec) => println!(
            "recovery   torn tail in {}: {} of {} bytes valid; skipped, not truncated (a writer opening the journal cuts it)",
            rec.file, rec.valid_bytes, rec.file_bytes
        ),
    }
    if let Some(damage) = &r.damage {
        println!(
            "damage     read up to sequence {}, where the journal is damaged: {damage}",
            r.end_sequence
        );
    }
    damaged(&r)
}

/// A damaged journal is an error (exit 1) after its report.
fn damaged(r: &InspectReport) -> Result<()> {
    match &r.damage {
        Some(damage) => anyhow::bail!(
            "{}: damaged at sequence {} (the records before it read as above): {damage}",
            r.journal,
            r.end_sequence
        ),
        None => Ok(()),
    }
}
