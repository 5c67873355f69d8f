//! The journal: append-only segment files of fixed-size event records. It is the
//! recorder's output ([`RecorderAgent`] writes a ring into a [`JournalWriter`]) and the
//! replay feed's input (`tickwire_feeds::journal::JournalFeed` reads a [`JournalReader`]).
//!
//! **Data flow.** The writer copies each [`Event`](crate::event::Event)'s 64 bytes into an
//! in-memory image of the current block, with its CRC-32C, and writes the buffered blocks
//! to the current segment in one positioned write when its buffer is full or on
//! [`flush`](JournalWriter::flush); [`FsyncPolicy`] says when that reaches the disk.
//! The reader memory-maps every segment, recovers a crash's torn tail, verifies checksums
//! once, and then serves `&Event`s straight from the maps: [`get`](JournalReader::get) by
//! sequence in O(1), [`iter_from`](JournalReader::iter_from) a sequence, or
//! [`seek_time`](JournalReader::seek_time) by receive time with a binary search.
//!
//! ```
//! use tickwire_engine::event::{Event, Trade};
//! use tickwire_engine::journal::{JournalConfig, JournalReader, JournalWriter};
//!
//! let dir = std::env::temp_dir().join(format!("tickwire-journal-doc-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! let mut writer = JournalWriter::open(&dir, JournalConfig::default())?;
//! for i in 0..1000u64 {
//!     let mut event = Event::new(0, 1, 1_000 + i, 2_000 + i); // exchange_ts, receive_ts (ns)
//!     event.set_trade(Trade { price: 100, size: 1, seq: i, ..Trade::default() });
//!     writer.append(&event)?;
//! }
//! writer.close()?;
//!
//! let reader = JournalReader::open(&dir)?;
//! assert_eq!(reader.len(), 1000);
//! assert_eq!(reader.get(500).and_then(|e| e.trade()).map(|t| t.seq), Some(500));
//! assert_eq!(reader.seek_time(2_750), 750);
//! assert_eq!(reader.iter_from(998).count(), 2);
//! # drop(reader);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Format (version 1)
//!
//! A journal is a directory of **segments** named by their first sequence, 20 decimal
//! digits and `.twj` (`00000000000000000000.twj`, `00000000000000491520.twj`, ...), so
//! names sort in sequence order; plus a `LOCK` file (see below). Sequences are `u64`,
//! contiguous across segments. All integers are little-endian.
//!
//! **Segment header**, at byte 0, `header_len` bytes (a multiple of 4096):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `TWJOURNL` |
//! | 8 | 4 | format version, `1` |
//! | 12 | 4 | `header_len`: bytes before the first block |
//! | 16 | 4 | block size, `4096` |
//! | 20 | 4 | records per block, `60` |
//! | 24 | 8 | first sequence (matches the file name) |
//! | 32 | 8 | created, ns since the Unix epoch (UTC) |
//! | 40 | 8 | capacity in blocks (the segment is sealed when they are full) |
//! | 48 | 4 | instrument count `n` |
//! | 52 | 4 | instrument table length `t`, bytes |
//! | 56 | 4 | CRC-32C of bytes 0..56 followed by the table |
//! | 60 | 4 | zero |
//! | 64 | `t` | instrument table: `n` entries of id (u32, dense from 0), symbol length (u16), symbol (UTF-8) |
//! | 64+`t` | .. | zero up to `header_len` |
//!
//! **Blocks** follow, 4096 bytes each (block `b` at `header_len + 4096 b`, page-aligned):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 240 | 60 record checksums (u32); zero for an empty slot |
//! | 240 | 8 | running max of `receive_ts` (ns) over the journal through this block's last record |
//! | 248 | 4 | records in the block (1..=60) |
//! | 252 | 4 | CRC-32C of bytes 0..252 |
//! | 256 | 3840 | 60 records of 64 bytes: [`Event::as_bytes`](crate::event::Event::as_bytes) |
//!
//! The checksum of the record with sequence `s` is the CRC-32C of its 64 bytes XORed with
//! the high 32 bits of `s × 0x9E3779B97F4A7C15` (wrapping): a zeroed slot, or a valid
//! record at the wrong place, does not verify. The
//! last block is not padded: a segment holding `r` records is exactly
//! `header_len + 4096 ⌊(r-1)/60⌋ + 256 + 64 ((r-1) mod 60 + 1)` bytes long. So record `s`
//! is at `header_len + 4096 ⌊i/60⌋ + 256 + 64 (i mod 60)` with `i = s - first`: O(1)
//! arithmetic after a binary search over the segments' first sequences.
//!
//! *Why this layout.* Per-record checksums find a torn tail to the record. Records start
//! 64-byte aligned in a page-aligned map, so they are read in place as `&Event`. A block
//! is one page, so the writer's rewrite of its partial last block (header and records,
//! earlier records unchanged) reaches the page cache by whole pages, and a SIGKILL tears
//! only between pages. Keeping the block's checksums in front of its records (rather than
//! interleaved) keeps records aligned; keeping the running max receive time in each block
//! header makes seek-by-time a binary search over blocks without an index file, exact even
//! when the clock stepped back (the running max never decreases).
//!
//! # Recovery and verification
//!
//! On open, the last segment is scanned back from its end to its last record whose
//! checksum verifies; everything after it is a **torn tail**: cut off the file (the last
//! block's header rewritten to match) when the reader can take the `LOCK` file, skipped
//! otherwise, never read as data. A record or block header that does not verify *before*
//! the last valid record is **corruption**: [`JournalError::Corrupt`] names the file and
//! byte offset. (A corrupt last record is indistinguishable from a torn one, and is cut.)
//! A sealed segment must be full and exactly its length. A reader opened with
//! [`OpenOptions::stop_at_damage`] serves every record before the first damage instead,
//! and reports it ([`JournalReader::damage`]); writers never continue a damaged journal.
//!
//! Checksums are verified **once, at open**, not on every read ([`Verify::All`], the
//! default; [`Verify::LastSegment`] checks only the segment a crash can tear): reads are
//! then plain loads from the map.
//!
//! **Concurrency.** A [`JournalWriter`] holds an exclusive `flock` on `LOCK` for its life,
//! so a journal has one writer, and a reader never truncates under it. A reader is a
//! snapshot of the journal at open. The maps assume that nothing but a journal writer
//! modifies segment files (memmap2's contract).

mod format;
mod lock;
mod reader;
mod recorder;
mod writer;

#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::instrument::InstrumentRegistry;

pub use format::{BLOCK_SIZE, FORMAT_VERSION, RECORDS_PER_BLOCK, segment_file_name};
pub use reader::{Iter, JournalReader, OpenOptions, Recovery, Verify};
pub use recorder::RecorderAgent;
pub use writer::JournalWriter;

/// Whether the journal in `dir` has a live writer now (a [`JournalWriter`] holds its `LOCK`):
/// a reader then sees the last segment as it was at open, still growing.
pub fn has_live_writer(dir: &Path) -> io::Result<bool> {
    lock::held(dir)
}

/// When the writer fsyncs what it wrote. Whatever the policy, [`JournalWriter::flush`]
/// puts what is buffered into the page cache, which survives a crash of the process; an
/// fsync makes it survive a crash of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Never fsync (the OS writes back when it likes; segment creation is not fsynced
    /// either).
    Never,
    /// Fsync on every [`flush`](JournalWriter::flush) that wrote something: the recorder
    /// flushes at the end of every ring batch.
    EveryBatch,
    /// Fsync on a `flush` when at least this long passed since the last fsync.
    Interval(Duration),
}

/// Configuration of a [`JournalWriter`].
#[derive(Debug, Clone, PartialEq)]
pub struct JournalConfig {
    /// Segment size in bytes, header included; segments hold whole blocks, at least one.
    /// Default: 256 MiB (about 3.9 M events), small enough to copy or delete by the hour
    /// at a few thousand events per second, large enough that rolling is rare at millions.
    pub segment_bytes: u64,
    /// When to fsync. Default: [`FsyncPolicy::Interval`] of 1 s.
    pub fsync: FsyncPolicy,
    /// Bytes of block images buffered before a write, rounded down to whole blocks (at
    /// least one). Default: 1 MiB (256 blocks, 15 360 events): one `pwrite` per 15 k
    /// events, which measured at the top of the write throughput curve here.
    pub write_buffer_bytes: usize,
    /// Sequence of the first record of a new journal (ignored when appending to an
    /// existing one). Default: 0.
    pub first_sequence: u64,
    /// Instrument table written into each segment header. Default: empty.
    pub instruments: InstrumentRegistry,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 256 << 20,
            fsync: FsyncPolicy::Interval(Duration::from_secs(1)),
            write_buffer_bytes: 1 << 20,
            first_sequence: 0,
            instruments: InstrumentRegistry::default(),
        }
    }
}

/// Why a journal operation failed: every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// A system call failed.
    #[error("{path}: {action}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done ("write segment", ...).
        action: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A segment header is not one this build reads.
    #[error("{path}: byte {offset}: bad segment header: {reason}")]
    Header {
        /// The segment.
        path: PathBuf,
        /// Byte offset of the offending field.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A checksum does not verify before the last valid record, or a sealed segment is
    /// short: data in the middle of the journal is damaged.
    #[error("{path}: byte {offset}: corrupt: {what}")]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Byte offset of the damaged record or block header.
        offset: u64,
        /// What failed.
        what: String,
    },
    /// A segment does not start where the one before it ends.
    #[error("{path}: starts at sequence {found}, expected {expected}: a segment is missing")]
    Discontinuous {
        /// The segment.
        path: PathBuf,
        /// The end sequence of the segment before.
        expected: u64,
        /// Its first sequence.
        found: u64,
    },
    /// The directory holds no segment.
    #[error("{dir}: no journal segments")]
    NoSegments {
        /// The directory.
        dir: PathBuf,
    },
    /// Another writer holds the journal.
    #[error("{dir}: the journal has a live writer (LOCK is held)")]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// A segment the writer was about to create exists already.
    #[error("{path}: segment exists already")]
    Exists {
        /// The segment.
        path: PathBuf,
    },
}

impl JournalError {
    /// Whether this is damage to what is on disk (a bad checksum, segment header, missing
    /// or short segment), as opposed to an I/O error or a state of the directory.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            Self::Header { .. } | Self::Corrupt { .. } | Self::Discontinuous { .. }
        )
    }
}

fn io_error(path: &Path, action: &'static str, source: io::Error) -> JournalError {
    JournalError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}
