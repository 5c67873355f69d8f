//! The journal writer: appends events into block images in memory and writes them to the
//! current segment in large positioned writes.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::clock::wall_ns;
use crate::event::Event;
use crate::instrument::InstrumentRegistry;

use super::format::{
    BLOCK_HEADER_SIZE, BLOCK_SIZE, RECORD_SIZE, RECORDS_PER_BLOCK, SegmentHeader, record_crc,
    seal_block_header, segment_file_name, set_slot_crc,
};
use super::lock::DirLock;
use super::reader::{JournalReader, OpenOptions as ReadOptions, Verify};
use super::{FsyncPolicy, JournalConfig, JournalError, io_error};

/// Appends events to a journal directory. The only writer of its journal: it holds the
/// directory's lock until dropped.
///
/// Events are copied into block images in a buffer of
/// [`JournalConfig::write_buffer_bytes`]; the buffer goes to the file (one `pwrite`) when
/// it is full and on every [`flush`](Self::flush), and is fsynced as
/// [`JournalConfig::fsync`] says. Nothing is allocated and no system call is made per
/// event.
///
/// Dropping the writer writes what is buffered (errors are lost then: call
/// [`close`](Self::close) to see them).
#[derive(Debug)]
pub struct JournalWriter {
    dir: PathBuf,
    fsync: FsyncPolicy,
    segment_bytes: u64,
    instruments: InstrumentRegistry,
    /// The current segment's file, path and header.
    file: File,
    path: PathBuf,
    header: SegmentHeader,
    /// Block images; block `buffer_first_block` of the segment is at byte 0.
    buffer: Vec<u8>,
    buffer_blocks: u64,
    buffer_first_block: u64,
    /// Sequence of the next record appended.
    next: u64,
    /// Records below this sequence are in the file (page cache).
    written: u64,
    /// Records below this sequence were fsynced.
    synced: u64,
    /// Running max of receive timestamps (ns) over the journal, for block headers.
    max_receive_ts: u64,
    last_sync: Instant,
    closed: bool,
    _lock: DirLock,
}

impl JournalWriter {
    /// Opens the journal in `dir` for appending, creating the directory and the first
    /// segment when there is none. An existing journal is recovered first as
    /// [`JournalReader::open`] does (a torn tail is truncated, corruption is an error);
    /// appending continues at its end sequence and `config.first_sequence` is ignored.
    pub fn open(dir: impl AsRef<Path>, config: JournalConfig) -> Result<Self, JournalError> {
        let dir = dir.as_ref().to_owned();
        fs::create_dir_all(&dir).map_err(|e| io_error(&dir, "create journal directory", e))?;
        let lock = DirLock::try_exclusive(&dir)
            .map_err(|e| io_error(&dir, "lock journal directory", e))?
            .ok_or_else(|| JournalError::Locked { dir: dir.clone() })?;
        remove_stale_temporaries(&dir)?;
        let buffer_blocks = (config.write_buffer_bytes / BLOCK_SIZE).max(1) as u64;
        let buffer = vec![0u8; buffer_blocks as usize * BLOCK_SIZE];
        let segment_bytes = config.segment_bytes;

        // Recover the existing journal if there is one. The reader sees our lock and would
        // not truncate, so tell it to recover under the lock we hold.
        let existing = match JournalReader::open_locked(
            &dir,
            ReadOptions {
                verify: Verify::LastSegment,
                truncate_torn_tail: true,
                stop_at_damage: false,
            },
        ) {
            Ok(reader) => Some(reader),
            Err(JournalError::NoSegments { .. }) => None,
            Err(e) => return Err(e),
        };

        let mut writer = match existing {
            None => {
                let header = new_header(config.first_sequence, segment_bytes, &config.instruments);
                let (file, path) = create_segment(&dir, &header, config.fsync)?;
                Self {
                    dir,
                    fsync: config.fsync,
                    segment_bytes,
                    instruments: config.instruments,
                    file,
                    path,
                    header,
                    buffer,
                    buffer_blocks,
                    buffer_first_block: 0,
                    next: config.first_sequence,
                    written: config.first_sequence,
                    synced: config.first_sequence,
                    max_receive_ts: 0,
                    last_sync: Instant::now(),
                    closed: false,
                    _lock: lock,
                }
            }
            Some(reader) => {
                let tail = reader.tail_state();
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&tail.path)
                    .map_err(|e| io_error(&tail.path, "open segment for append", e))?;
                let end = reader.end_sequence();
                let index = end - tail.header.first_sequence;
                let block = index / RECORDS_PER_BLOCK as u64;
                let mut writer = Self {
                    dir,
                    fsync: config.fsync,
                    segment_bytes,
                    instruments: config.instruments,
                    file,
                    path: tail.path.clone(),
                    header: tail.header.clone(),
                    buffer,
                    buffer_blocks,
                    buffer_first_block: block,
                    next: end,
                    written: end,
                    synced: end,
                    max_receive_ts: tail.max_receive_ts,
                    last_sync: Instant::now(),
                    closed: false,
                    _lock: lock,
                };
                let partial = (index % RECORDS_PER_BLOCK as u64) as usize;
                if partial > 0 {
                    // Reload the partial last block's image so appends extend it.
                    let len = BLOCK_HEADER_SIZE + partial * RECORD_SIZE;
                    let offset = writer.header.block_offset(block);
                    writer
                        .file
                        .read_exact_at(&mut writer.buffer[..len], offset)
                        .map_err(|e| io_error(&writer.path, "read last block", e))?;
                }
                drop(reader);
                writer
            }
        };
        writer.last_sync = Instant::now();
        Ok(writer)
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sequence the next appended event gets (= the journal's end sequence).
    pub fn next_sequence(&self) -> u64 {
        self.next
    }

    /// Records below this sequence have been written to the file (they survive a crash of
    /// this process, not of the machine).
    pub fn written_sequence(&self) -> u64 {
        self.written
    }

    /// Records below this sequence have been fsynced (they survive a power loss).
    pub fn synced_sequence(&self) -> u64 {
        self.synced
    }

    /// The segment being written.
    pub fn segment_path(&self) -> &Path {
        &self.path
    }

    /// Replaces the instrument table written into segments created from now on.
    pub fn set_instruments(&mut self, instruments: InstrumentRegistry) {
        self.instruments = instruments;
    }

    /// Appends one event; returns its sequence. Writes to the file only when the buffer is
    /// full or the segment rolls.
    #[inline]
    pub fn append(&mut self, event: &Event) -> Result<u64, JournalError> {
        let sequence = self.next;
        let mut index = sequence - self.header.first_sequence;
        if index == self.header.capacity_records() {
            self.roll()?;
            index = 0;
        }
        let block = index / RECORDS_PER_BLOCK as u64;
        let slot = (index % RECORDS_PER_BLOCK as u64) as usize;
        if block - self.buffer_first_block == self.buffer_blocks {
            self.write_buffer()?;
        }
        let start = (block - self.buffer_first_block) as usize * BLOCK_SIZE;
        let image = &mut self.buffer[start..start + BLOCK_SIZE];
        let (header, records) = image.split_at_mut(BLOCK_HEADER_SIZE);
        if slot == 0 {
            header.fill(0);
        }
        let record = &mut records[slot * RECORD_SIZE..(slot + 1) * RECORD_SIZE];
        record.copy_from_slice(event.as_bytes());
        set_slot_crc(header, slot, record_crc(sequence, record));
        self.max_receive_ts = self.max_receive_ts.max(event.receive_ts);
        if slot == RECORDS_PER_BLOCK - 1 {
            seal_block_header(header, self.max_receive_ts, RECORDS_PER_BLOCK as u32);
        }
        self.next = sequence + 1;
        Ok(sequence)
    }

    /// Appends `events` in order; returns the sequence of the first.
    pub fn append_batch(&mut self, events: &[Event]) -> Result<u64, JournalError> {
        let first = self.next;
        for event in events {
            self.append(event)?;
        }
        Ok(first)
    }

    /// Writes what is buffered to the file, then fsyncs if the policy says so: always for
    /// [`FsyncPolicy::EveryBatch`], when the interval has passed since the last sync for
    /// [`FsyncPolicy::Interval`] (checked here, so call `flush` when idle too).
    pub fn flush(&mut self) -> Result<(), JournalError> {
        self.write_buffer()?;
        if self.synced == self.written {
            return Ok(());
        }
        match self.fsync {
            FsyncPolicy::Never => Ok(()),
            FsyncPolicy::EveryBatch => self.sync_file(),
            FsyncPolicy::Interval(interval) => {
                if self.last_sync.elapsed() >= interval {
                    self.sync_file()
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Writes what is buffered and fsyncs it, whatever the policy.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.write_buffer()?;
        self.sync_file()
    }

    /// Writes what is buffered, fsyncs (unless the policy is [`FsyncPolicy::Never`]) and
    /// closes the journal.
    pub fn close(mut self) -> Result<(), JournalError> {
        self.closed = true;
        self.write_buffer()?;
        if self.fsync != FsyncPolicy::Never {
            self.sync_file()?;
        }
        Ok(())
    }

    fn sync_file(&mut self) -> Result<(), JournalError> {
        self.file
            .sync_data()
            .map_err(|e| io_error(&self.path, "fsync segment", e))?;
        self.synced = self.written;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Writes the buffered block images, from the first block holding unwritten records to
    /// the last record, in one positioned write; keeps a partial last block's image at the
    /// front of the buffer so later appends extend it (it is rewritten whole, with its
    /// earlier records unchanged, next time).
    fn write_buffer(&mut self) -> Result<(), JournalError> {
        if self.written == self.next {
            return Ok(());
        }
        let end_index = self.next - self.header.first_sequence;
        let last_block = (end_index - 1) / RECORDS_PER_BLOCK as u64;
        let in_last = (end_index - last_block * RECORDS_PER_BLOCK as u64) as usize;
        let last_start = (last_block - self.buffer_first_block) as usize * BLOCK_SIZE;
        if in_last < RECORDS_PER_BLOCK {
            seal_block_header(
                &mut self.buffer[last_start..last_start + BLOCK_HEADER_SIZE],
                self.max_receive_ts,
                in_last as u32,
            );
        }
        let len = last_start + BLOCK_HEADER_SIZE + in_last * RECORD_SIZE;
        let offset = self.header.block_offset(self.buffer_first_block);
        self.file
            .write_all_at(&self.buffer[..len], offset)
            .map_err(|e| io_error(&self.path, "write segment", e))?;
        self.written = self.next;
        if in_last < RECORDS_PER_BLOCK {
            self.buffer
                .copy_within(last_start..last_start + BLOCK_SIZE, 0);
            self.buffer_first_block = last_block;
        } else {
            self.buffer_first_block = last_block + 1;
        }
        Ok(())
    }

    /// Seals the full current segment and starts the next.
    fn roll(&mut self) -> Result<(), JournalError> {
        self.write_buffer()?;
        if self.fsync != FsyncPolicy::Never {
            self.sync_file()?;
        }
        let header = new_header(self.next, self.segment_bytes, &self.instruments);
        let (file, path) = create_segment(&self.dir, &header, self.fsync)?;
        self.file = file;
        self.path = path;
        self.header = header;
        self.buffer_first_block = 0;
        Ok(())
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        if !self.closed {
            // Best effort; `close` reports errors.
            let _ = self.write_buffer();
        }
    }
}

/// A header for a segment starting at `first_sequence`, sized to `segment_bytes`.
fn new_header(
    first_sequence: u64,
    segment_bytes: u64,
    instruments: &InstrumentRegistry,
) -> SegmentHeader {
    let mut header = SegmentHeader {
        header_len: 0,
        first_sequence,
        created_ns: wall_ns(),
        capacity_blocks: 1,
        instruments: instruments.clone(),
    };
    header.header_len = header.encode().len() as u64;
    header.capacity_blocks =
        (segment_bytes.saturating_sub(header.header_len) / BLOCK_SIZE as u64).max(1);
    header
}

/// Creates a segment file with its header, atomically: written under a temporary name,
/// then renamed, so a segment file with a final name always has a whole header. Fsyncs the
/// file and the directory unless the policy is `Never`.
fn create_segment(
    dir: &Path,
    header: &SegmentHeader,
    fsync: FsyncPolicy,
) -> Result<(File, PathBuf), JournalError> {
    let name = segment_file_name(header.first_sequence);
    let path = dir.join(&name);
    let temporary = dir.join(format!("{name}.tmp"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&temporary)
        .map_err(|e| io_error(&temporary, "create segment", e))?;
    file.write_all_at(&header.encode(), 0)
        .map_err(|e| io_error(&temporary, "write segment header", e))?;
    if fsync != FsyncPolicy::Never {
        file.sync_all()
            .map_err(|e| io_error(&temporary, "fsync segment header", e))?;
    }
    if path.exists() {
        return Err(JournalError::Exists { path });
    }
    fs::rename(&temporary, &path).map_err(|e| io_error(&path, "rename new segment", e))?;
    if fsync != FsyncPolicy::Never {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(dir, "fsync journal directory", e))?;
    }
    Ok((file, path))
}

/// Removes `*.twj.tmp` files a crash left between creating and renaming a segment.
fn remove_stale_temporaries(dir: &Path) -> Result<(), JournalError> {
    let entries = fs::read_dir(dir).map_err(|e| io_error(dir, "list journal directory", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, "list journal directory", e))?;
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| n.ends_with(".twj.tmp")) {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| io_error(&path, "remove stale temporary", e))?;
        }
    }
    Ok(())
}
