//! The journal reader: memory-maps every segment, recovers a torn tail, verifies
//! checksums once at open, then serves events by reference.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::event::Event;
use crate::instrument::InstrumentRegistry;

use super::format::{
    BLOCK_HEADER_SIZE, BLOCK_SIZE, BlockView, RECORD_SIZE, RECORDS_PER_BLOCK, SegmentHeader,
    parse_segment_file_name, record_crc, seal_block_header,
};
use super::lock::DirLock;
use super::{JournalError, io_error};

/// How much of a journal [`JournalReader::open_with`] checks before serving reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Verify {
    /// Every record's and every block header's checksum, in every segment (the default):
    /// after a successful open, every event served has been verified. Costs one pass over
    /// the journal at open, at memory bandwidth (see the journal benchmark).
    #[default]
    All,
    /// Checksums of the last segment only (the one a crash can tear); sealed segments are
    /// checked for their header, length and sequence continuity. For opening huge
    /// journals quickly; [`JournalReader::verify`] checks the rest on demand.
    LastSegment,
}

/// Options of [`JournalReader::open_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// What to verify. Default: [`Verify::All`].
    pub verify: Verify,
    /// Cut a torn tail off the last segment's file (when no writer holds the journal).
    /// When false, or when a live writer holds the lock, the torn tail is left on disk and
    /// simply not read. Default: true.
    pub truncate_torn_tail: bool,
    /// On damage (a checksum that fails before the last valid record, a bad segment
    /// header, a segment missing or of the wrong length), open the journal up to the last
    /// valid record before it instead of refusing it, and report the damage through
    /// [`JournalReader::damage`]. Stopping at damage changes nothing on disk (a torn tail
    /// is still cut when `truncate_torn_tail` says so). Default: false (damage is an error,
    /// so a writer never continues a damaged journal).
    pub stop_at_damage: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            verify: Verify::All,
            truncate_torn_tail: true,
            stop_at_damage: false,
        }
    }
}

/// What recovery did to a torn tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The last segment.
    pub path: PathBuf,
    /// Its length before, in bytes.
    pub from_len: u64,
    /// Its length after (or the length of its valid prefix, when not truncated), in bytes.
    pub to_len: u64,
    /// Whether the file was cut (false: the tail was only skipped).
    pub truncated: bool,
}

/// One segment as opened.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    header: SegmentHeader,
    /// The file's map; at least the header and every valid record.
    map: Mmap,
    /// Valid records.
    records: u64,
    /// Running max receive time (ns) through the segment's last valid record.
    max_receive_ts: u64,
}

impl Segment {
    fn block(&self, block: u64) -> BlockView<'_> {
        let start = self.header.block_offset(block) as usize;
        BlockView::new(&self.map[start.min(self.map.len())..])
    }

    fn blocks(&self) -> u64 {
        self.records.div_ceil(RECORDS_PER_BLOCK as u64)
    }

    /// The stored running max receive time of block `block`; the last block's is the
    /// segment's, computed at open from its records.
    fn block_max_receive_ts(&self, block: u64) -> u64 {
        if block + 1 >= self.blocks() {
            self.max_receive_ts
        } else {
            self.block(block).max_receive_ts()
        }
    }

    /// The running max receive time (ns) through the last valid record: the stored one of
    /// the block before the last block (whose header verified), then the last block's
    /// records; `previous` (the previous segment's) where there is nothing before.
    fn running_max_receive_ts(&self, previous: u64) -> u64 {
        if self.records == 0 {
            return previous;
        }
        let per_block = RECORDS_PER_BLOCK as u64;
        let tail_block = (self.records - 1) / per_block;
        let before = if tail_block > 0 {
            self.block(tail_block - 1).max_receive_ts()
        } else {
            previous
        };
        self.run(tail_block * per_block)
            .iter()
            .fold(before, |max, event| max.max(event.receive_ts))
    }

    /// The events from index `index` to the end of its block (or of the valid records).
    #[inline]
    fn run(&self, index: u64) -> &[Event] {
        let block_end = (index / RECORDS_PER_BLOCK as u64 + 1) * RECORDS_PER_BLOCK as u64;
        let end = block_end.min(self.records);
        let start = self.header.record_offset(index) as usize;
        let len = (end - index) as usize * RECORD_SIZE;
        // Cannot panic: the map is page-aligned (checked at open), record offsets are
        // multiples of 64 = align_of::<Event>(), and `len` is a multiple of 64 within the
        // map (every valid record is inside it).
        bytemuck::cast_slice(&self.map[start..start + len])
    }
}

/// Reads a journal directory. Every segment is memory-mapped; [`get`](Self::get) is O(1)
/// arithmetic plus a binary search over the (few) segments; iteration walks the maps a
/// block at a time. Events are served by reference into the map, with no copy and no
/// check: checksums were verified at open (see [`Verify`]).
///
/// Opening recovers a crash: a torn tail of the last segment (records whose checksum does
/// not verify, after the last one that does) is cut off the file and never read;
/// a bad checksum *before* the last valid record is corruption, reported as
/// [`JournalError::Corrupt`] with the file and byte offset.
///
/// The reader is a snapshot: records appended by a live writer after open are not seen.
#[derive(Debug)]
pub struct JournalReader {
    dir: PathBuf,
    segments: Vec<Segment>,
    first: u64,
    end: u64,
    recovery: Option<Recovery>,
    damage: Option<JournalError>,
}

/// The last segment's state, for a writer that continues the journal.
#[derive(Debug)]
pub(super) struct TailState {
    pub path: PathBuf,
    pub header: SegmentHeader,
    pub max_receive_ts: u64,
}

impl JournalReader {
    /// Opens the journal in `dir` with the default [`OpenOptions`]: full verification,
    /// torn tail truncated.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, JournalError> {
        Self::open_with(dir, OpenOptions::default())
    }

    /// Opens the journal in `dir`.
    pub fn open_with(dir: impl AsRef<Path>, options: OpenOptions) -> Result<Self, JournalError> {
        let dir = dir.as_ref();
        // Truncate only under the directory's lock, so never under a live writer. No lock
        // (a live writer, or a read-only directory): skip the torn tail instead.
        let lock = if options.truncate_torn_tail {
            DirLock::try_exclusive(dir).ok().flatten()
        } else {
            None
        };
        let truncate = lock.is_some();
        Self::open_inner(dir, options, truncate)
    }

    /// Opens for a writer that holds the lock already.
    pub(super) fn open_locked(dir: &Path, options: OpenOptions) -> Result<Self, JournalError> {
        Self::open_inner(dir, options, options.truncate_torn_tail)
    }

    fn open_inner(dir: &Path, options: OpenOptions, truncate: bool) -> Result<Self, JournalError> {
        let mut names = Vec::new();
        let entries = fs::read_dir(dir).map_err(|e| io_error(dir, "list journal directory", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error(dir, "list journal directory", e))?;
            if let Some(first) = entry.file_name().to_str().and_then(parse_segment_file_name) {
                names.push((first, entry.path()));
            }
        }
        if names.is_empty() {
            return Err(JournalError::NoSegments {
                dir: dir.to_owned(),
            });
        }
        names.sort();
        let last = names.len() - 1;
        let last_file = names[last]
            .1
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut segments: Vec<Segment> = Vec::with_capacity(names.len());
        let mut recovery = None;
        let mut damage = None;
        let mut max_receive_ts = 0;
        for (i, (named_first, path)) in names.into_iter().enumerate() {
            let role = if i == last {
                Role::Last { truncate }
            } else {
                Role::Sealed {
                    verify: options.verify,
                    last_file: &last_file,
                }
            };
            let opened = open_segment(
                path.clone(),
                named_first,
                segments.last(),
                max_receive_ts,
                role,
            );
            let segment = match opened {
                Ok((segment, rec)) => {
                    recovery = rec;
                    segment
                }
                Err(e) if options.stop_at_damage && e.is_damage() => {
                    // Keep what verifies before the damage, in this segment too, and stop.
                    let expected = segments
                        .last()
                        .map_or(named_first, |p| p.header.first_sequence + p.records);
                    if let Some(segment) = valid_prefix(&path, expected, max_receive_ts, i == last)
                    {
                        segments.push(segment);
                    }
                    if segments.is_empty() {
                        return Err(e);
                    }
                    damage = Some(e);
                    break;
                }
                Err(e) => return Err(e),
            };
            max_receive_ts = segment.max_receive_ts;
            segments.push(segment);
        }
        let first = segments[0].header.first_sequence;
        let end = segments
            .last()
            .map_or(first, |s| s.header.first_sequence + s.records);
        Ok(Self {
            dir: dir.to_owned(),
            segments,
            first,
            end,
            recovery,
            damage,
        })
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Sequence of the first record.
    pub fn first_sequence(&self) -> u64 {
        self.first
    }

    /// One past the sequence of the last record.
    pub fn end_sequence(&self) -> u64 {
        self.end
    }

    /// Number of records.
    pub fn len(&self) -> u64 {
        self.end - self.first
    }

    /// Whether the journal holds no record.
    pub fn is_empty(&self) -> bool {
        self.end == self.first
    }

    /// What recovery did at open, if the last segment had a torn tail.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }

    /// The damage this reader stopped at (opened with [`OpenOptions::stop_at_damage`]): it
    /// serves the records before it, up to [`end_sequence`](Self::end_sequence), and none
    /// after, though the journal may hold more.
    pub fn damage(&self) -> Option<&JournalError> {
        self.damage.as_ref()
    }

    /// The instrument table of the newest segment (tables only grow, so it names every
    /// instrument of the journal).
    pub fn instruments(&self) -> &InstrumentRegistry {
        &self.segments[self.segments.len() - 1].header.instruments
    }

    /// `(path, first sequence, records, created ns)` of every segment, in order.
    pub fn segments(&self) -> impl Iterator<Item = (&Path, u64, u64, u64)> {
        self.segments.iter().map(|s| {
            (
                s.path.as_path(),
                s.header.first_sequence,
                s.records,
                s.header.created_ns,
            )
        })
    }

    #[inline]
    fn segment_of(&self, sequence: u64) -> &Segment {
        let i = self
            .segments
            .partition_point(|s| s.header.first_sequence <= sequence);
        // `sequence >= first` was checked, so the first segment qualifies and i >= 1.
        &self.segments[i.saturating_sub(1)]
    }

    /// The event with sequence `sequence`, if the journal holds it.
    #[inline]
    pub fn get(&self, sequence: u64) -> Option<&Event> {
        if sequence < self.first || sequence >= self.end {
            return None;
        }
        let segment = self.segment_of(sequence);
        segment
            .run(sequence - segment.header.first_sequence)
            .first()
    }

    /// The events from `sequence` to the end of its block: up to 60 contiguous events, for
    /// bulk copies. Empty when the journal does not hold `sequence`.
    #[inline]
    pub fn run(&self, sequence: u64) -> &[Event] {
        if sequence < self.first || sequence >= self.end {
            return &[];
        }
        let segment = self.segment_of(sequence);
        segment.run(sequence - segment.header.first_sequence)
    }

    /// Every event, in sequence order.
    pub fn iter(&self) -> Iter<'_> {
        self.iter_from(self.first)
    }

    /// The events from `sequence` on (from the first, if it is below).
    pub fn iter_from(&self, sequence: u64) -> Iter<'_> {
        Iter {
            reader: self,
            next: sequence.clamp(self.first, self.end),
            run: [].iter(),
        }
    }

    /// The events from the first whose receive time is at or after `receive_ns`.
    pub fn iter_from_time(&self, receive_ns: u64) -> Iter<'_> {
        self.iter_from(self.seek_time(receive_ns))
    }

    /// The sequence of the first record (in sequence order) whose receive timestamp is at
    /// or after `receive_ns` (ns since the Unix epoch), or the end sequence if none is.
    ///
    /// A binary search over blocks by their headers' running max receive time, which never
    /// decreases, so it is exact even if the clock stepped back; then a scan of one block.
    pub fn seek_time(&self, receive_ns: u64) -> u64 {
        let s = self
            .segments
            .partition_point(|s| s.max_receive_ts < receive_ns);
        let Some(segment) = self.segments.get(s) else {
            return self.end;
        };
        let blocks = segment.blocks();
        let (mut lo, mut hi) = (0, blocks);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if segment.block_max_receive_ts(mid) < receive_ns {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let start = segment.header.first_sequence + lo * RECORDS_PER_BLOCK as u64;
        // With consistent headers the match is in this block; scanning on is the answer
        // for a journal whose sealed segments were not verified and lie.
        let mut events = self.iter_from(start);
        loop {
            let sequence = events.sequence();
            match events.next() {
                Some(event) if event.receive_ts >= receive_ns => return sequence,
                Some(_) => {}
                None => return self.end,
            }
        }
    }

    /// Verifies every checksum of every segment (what [`Verify::All`] does at open).
    pub fn verify(&self) -> Result<(), JournalError> {
        for segment in &self.segments {
            verify_blocks(segment, segment.records)?;
        }
        Ok(())
    }

    /// The last segment's state, for the writer.
    pub(super) fn tail_state(&self) -> TailState {
        let last = &self.segments[self.segments.len() - 1];
        TailState {
            path: last.path.clone(),
            header: last.header.clone(),
            max_receive_ts: last.max_receive_ts,
        }
    }
}

/// Iterator over a journal's events, by reference. See [`JournalReader::iter_from`].
#[derive(Debug)]
pub struct Iter<'a> {
    reader: &'a JournalReader,
    /// Sequence of the first event after `run`.
    next: u64,
    run: core::slice::Iter<'a, Event>,
}

impl<'a> Iter<'a> {
    /// The sequence of the event the next call to `next` returns.
    pub fn sequence(&self) -> u64 {
        self.next - self.run.len() as u64
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a Event;

    #[inline]
    fn next(&mut self) -> Option<&'a Event> {
        if let Some(event) = self.run.next() {
            return Some(event);
        }
        let run = self.reader.run(self.next);
        self.next += run.len() as u64;
        self.run = run.iter();
        self.run.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.reader.end - self.next) as usize + self.run.len();
        (n, Some(n))
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// Which segment of the journal [`open_segment`] opens.
enum Role<'a> {
    /// The last: a crash may have torn its tail, cut when `truncate`.
    Last { truncate: bool },
    /// An earlier one, which must be full; `last_file` names the journal's last segment.
    Sealed { verify: Verify, last_file: &'a str },
}

/// Opens segment `path` (named for `named_first`) after `previous` in its `role`.
fn open_segment(
    path: PathBuf,
    named_first: u64,
    previous: Option<&Segment>,
    max_receive_ts: u64,
    role: Role<'_>,
) -> Result<(Segment, Option<Recovery>), JournalError> {
    let (map, header) = map_segment(&path)?;
    if header.first_sequence != named_first {
        return Err(JournalError::Header {
            path,
            offset: 24,
            reason: format!(
                "first sequence {} does not match the file name",
                header.first_sequence
            ),
        });
    }
    if let Some(previous) = previous {
        let expected = previous.header.first_sequence + previous.records;
        if header.first_sequence != expected {
            return Err(JournalError::Discontinuous {
                path,
                expected,
                found: header.first_sequence,
            });
        }
    }
    match role {
        Role::Last { truncate } => {
            recover_last_segment(path, map, header, max_receive_ts, truncate)
        }
        Role::Sealed { verify, last_file } => {
            check_sealed_segment(path, map, header, verify, last_file).map(|s| (s, None))
        }
    }
}

/// The records of a damaged segment before its first damage, as a segment; `None` when its
/// header cannot be read or does not start at `expected_first` (the sequence after the
/// previous segment's last, or its file name's for the first): nothing of it is trusted.
fn valid_prefix(
    path: &Path,
    expected_first: u64,
    previous_max_receive_ts: u64,
    is_last: bool,
) -> Option<Segment> {
    let (map, header) = map_segment(path).ok()?;
    if header.first_sequence != expected_first || (map.len() as u64) < header.header_len {
        return None;
    }
    // Whole records in the file (at most the segment's capacity).
    let blocks = (map.len() as u64 - header.header_len).div_ceil(BLOCK_SIZE as u64);
    let mut present = 0;
    for block in 0..blocks.min(header.capacity_blocks) {
        let room = map.len() as u64 - header.block_offset(block);
        let slots = room.saturating_sub(BLOCK_HEADER_SIZE as u64) / RECORD_SIZE as u64;
        present = block * RECORDS_PER_BLOCK as u64 + slots.min(RECORDS_PER_BLOCK as u64);
    }
    let mut segment = Segment {
        path: path.to_owned(),
        header,
        map,
        records: present,
        max_receive_ts: previous_max_receive_ts,
    };
    // In the last segment a crash can leave the header of the block being written stale
    // (recovery rewrites it): its records are judged by their own checksums.
    if let Some((valid, _)) = first_damage(&segment, present, is_last) {
        segment.records = valid;
    }
    segment.max_receive_ts = segment.running_max_receive_ts(previous_max_receive_ts);
    Some(segment)
}

/// Maps a segment file and decodes its header.
fn map_segment(path: &Path) -> Result<(Mmap, SegmentHeader), JournalError> {
    let file = File::open(path).map_err(|e| io_error(path, "open segment", e))?;
    // SAFETY: memmap2 requires that the mapped bytes not change while borrowed. Segment
    // files are written only by a `JournalWriter`, which appends past the end and rewrites
    // only the header and records of its partial last block, with identical record bytes;
    // the reader reads that block's header only at open, and copies what it needs from it.
    // Truncation (by a reader's recovery, under the directory lock) cuts only bytes after
    // the last valid record, which no reader reads. Files changed by anything else are
    // outside this contract, as documented in the module docs.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| io_error(path, "map segment", e))?;
    if map.as_ptr().align_offset(BLOCK_SIZE) != 0 {
        return Err(JournalError::Header {
            path: path.to_owned(),
            offset: 0,
            reason: "memory map is not page-aligned".into(),
        });
    }
    let header = SegmentHeader::decode(path, &map)?;
    Ok((map, header))
}

/// A sealed (not last) segment must be full: its length is exact; with `Verify::All`,
/// every checksum is verified.
fn check_sealed_segment(
    path: PathBuf,
    map: Mmap,
    header: SegmentHeader,
    verify: Verify,
    last_file: &str,
) -> Result<Segment, JournalError> {
    let records = header.capacity_records();
    let expected_len = header.file_len(records);
    let last_block = header.capacity_blocks - 1;
    let block_start = header.block_offset(last_block) as usize;
    if (map.len() as u64) != expected_len {
        return Err(JournalError::Corrupt {
            offset: (map.len() as u64).min(expected_len),
            // Often a stray or misnamed file after the real last segment made it "sealed".
            what: format!(
                "sealed segment is {} bytes, a full one is {expected_len} (it is not the \
                 last segment: {last_file} follows)",
                map.len()
            ),
            path,
        });
    }
    let max_receive_ts = BlockView::new(&map[block_start..]).max_receive_ts();
    let segment = Segment {
        path,
        header,
        map,
        records,
        max_receive_ts,
    };
    if verify == Verify::All {
        verify_blocks(&segment, records)?;
    }
    Ok(segment)
}

/// Verifies blocks and records of `segment` below `records`: every full block's header
/// checksum and count; every record's checksum. The first failure is the error.
fn verify_blocks(segment: &Segment, records: u64) -> Result<(), JournalError> {
    first_damage(segment, records, false).map_or(Ok(()), |(_, e)| Err(e))
}

/// The first failure [`verify_blocks`] would report, with the number of records before it
/// that verify (a bad block header fails its whole block). With `stale_tail_header`, the
/// header of the block holding the last of `records` is not checked.
fn first_damage(
    segment: &Segment,
    records: u64,
    stale_tail_header: bool,
) -> Option<(u64, JournalError)> {
    let header = &segment.header;
    let blocks = records.div_ceil(RECORDS_PER_BLOCK as u64);
    for block in 0..blocks {
        let view = segment.block(block);
        let offset = header.block_offset(block);
        let first_index = block * RECORDS_PER_BLOCK as u64;
        let in_block = (records - first_index).min(RECORDS_PER_BLOCK as u64) as usize;
        let tail = stale_tail_header && block + 1 == blocks;
        if in_block == RECORDS_PER_BLOCK
            && !tail
            && (!view.header_verifies() || view.count() as usize != RECORDS_PER_BLOCK)
        {
            return Some((
                first_index,
                JournalError::Corrupt {
                    path: segment.path.clone(),
                    offset,
                    what: format!("block {block} header checksum mismatch"),
                },
            ));
        }
        for slot in 0..in_block {
            let sequence = header.first_sequence + first_index + slot as u64;
            if !view.slot_verifies(slot, sequence) {
                return Some((
                    first_index + slot as u64,
                    JournalError::Corrupt {
                        path: segment.path.clone(),
                        offset: header.record_offset(first_index + slot as u64),
                        what: format!("record checksum mismatch at sequence {sequence}"),
                    },
                ));
            }
        }
    }
    None
}

/// Finds the last segment's last valid record, checks everything before it, and cuts
/// (or skips) the torn tail after it.
fn recover_last_segment(
    path: PathBuf,
    map: Mmap,
    header: SegmentHeader,
    previous_max_receive_ts: u64,
    truncate: bool,
) -> Result<(Segment, Option<Recovery>), JournalError> {
    let file_len = map.len() as u64;
    let data_len = file_len - header.header_len;
    let blocks_present = data_len
        .div_ceil(BLOCK_SIZE as u64)
        .min(header.capacity_blocks);

    // The last valid record: scan back from the last block for a slot that verifies.
    let mut records = 0;
    'scan: for block in (0..blocks_present).rev() {
        let start = header.block_offset(block) as usize;
        let view = BlockView::new(&map[start..]);
        let slots = view.slots_present();
        // A header that verifies bounds the block's records by its count.
        let slots = if view.header_verifies() {
            slots.min(view.count() as usize)
        } else {
            slots
        };
        let first_index = block * RECORDS_PER_BLOCK as u64;
        for slot in (0..slots).rev() {
            if view.slot_verifies(slot, header.first_sequence + first_index + slot as u64) {
                records = first_index + slot as u64 + 1;
                break 'scan;
            }
        }
    }

    let segment = Segment {
        path,
        header,
        map,
        records,
        max_receive_ts: previous_max_receive_ts,
    };
    // Every block before the one holding the last valid record must verify whole. That
    // block's records must verify; its header may be stale or torn (it is rewritten below).
    let per_block = RECORDS_PER_BLOCK as u64;
    let tail_block = records.saturating_sub(1) / per_block;
    let before_tail = tail_block * per_block;
    let in_tail = (records - before_tail) as usize;
    if let Some((_, damage)) = first_damage(&segment, records, true) {
        return Err(damage);
    }
    let first_sequence = segment.header.first_sequence;
    let tail_view = segment.block(tail_block);
    let max_receive_ts = segment.running_max_receive_ts(previous_max_receive_ts);

    let valid_len = segment.header.file_len(records);
    let header_is_current = in_tail == 0
        || (tail_view.header_verifies()
            && tail_view.count() as usize == in_tail
            && tail_view.max_receive_ts() == max_receive_ts
            && (in_tail..RECORDS_PER_BLOCK).all(|slot| tail_view.stored_crc(slot) == 0));
    let mut tail_header = None;
    if !header_is_current {
        let mut block_header = [0u8; BLOCK_HEADER_SIZE];
        for (slot, event) in segment.run(before_tail).iter().enumerate() {
            let crc = record_crc(first_sequence + before_tail + slot as u64, event.as_bytes());
            block_header[slot * 4..slot * 4 + 4].copy_from_slice(&crc.to_le_bytes());
        }
        seal_block_header(&mut block_header, max_receive_ts, in_tail as u32);
        tail_header = Some(block_header);
    }
    let tail_offset = segment.header.block_offset(tail_block);
    let segment = Segment {
        max_receive_ts,
        ..segment
    };
    if valid_len == file_len && tail_header.is_none() {
        return Ok((segment, None));
    }
    if !truncate {
        let recovery = Recovery {
            path: segment.path.clone(),
            from_len: file_len,
            to_len: valid_len,
            truncated: false,
        };
        return Ok((segment, Some(recovery)));
    }

    // Rewrite the tail block's header to describe exactly the valid records, cut the file
    // after them, fsync, and map the result again.
    let path = segment.path.clone();
    drop(segment);
    let file = fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| io_error(&path, "open segment to truncate", e))?;
    if let Some(block_header) = tail_header {
        file.write_all_at(&block_header, tail_offset)
            .map_err(|e| io_error(&path, "rewrite last block header", e))?;
    }
    file.set_len(valid_len)
        .map_err(|e| io_error(&path, "truncate torn tail", e))?;
    file.sync_all()
        .map_err(|e| io_error(&path, "fsync truncated segment", e))?;
    drop(file);
    let (map, header) = map_segment(&path)?;
    let recovery = Recovery {
        path: path.clone(),
        from_len: file_len,
        to_len: valid_len,
        truncated: true,
    };
    Ok((
        Segment {
            path,
            header,
            map,
            records,
            max_receive_ts,
        },
        Some(recovery),
    ))
}
