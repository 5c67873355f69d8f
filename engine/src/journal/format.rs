//! The on-disk layout: constants, the segment header's encoding, block headers and record
//! checksums. Pure functions over byte slices; no I/O. The layout is documented byte for
//! byte in the [module docs](super).

use std::path::Path;

use crate::event::Event;
use crate::instrument::InstrumentRegistry;

use super::JournalError;

/// First 8 bytes of every segment file.
pub const MAGIC: [u8; 8] = *b"TWJOURNL";
/// Format version written by this build and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes per block: one x86-64/aarch64 Linux base page, so that a block is written to the
/// page cache by one page copy (a SIGKILL tears writes only between pages) and every block
/// starts page-aligned in the memory map.
pub const BLOCK_SIZE: usize = 4096;
/// Bytes of a block's header: 60 record checksums (240 B), the running max receive time
/// (8 B), the record count (4 B), the header's own checksum (4 B). 256 = 4 cache lines, so
/// records start 64-byte aligned.
pub const BLOCK_HEADER_SIZE: usize = 256;
/// Bytes per record: one [`Event`].
pub const RECORD_SIZE: usize = core::mem::size_of::<Event>();
/// Records per block: (4096 - 256) / 64.
pub const RECORDS_PER_BLOCK: usize = (BLOCK_SIZE - BLOCK_HEADER_SIZE) / RECORD_SIZE;
/// Byte offset of the running max receive time in a block header.
const HWM_OFFSET: usize = RECORDS_PER_BLOCK * 4;
/// Byte offset of the record count in a block header.
const COUNT_OFFSET: usize = HWM_OFFSET + 8;
/// Byte offset of the block header's checksum.
const HEADER_CRC_OFFSET: usize = COUNT_OFFSET + 4;
/// Bytes of the segment header's fixed part, before the instrument table.
pub const FIXED_HEADER_SIZE: usize = 64;
/// Segment file name suffix.
pub const SEGMENT_SUFFIX: &str = ".twj";
/// Digits of the first sequence in a segment's file name (`u64::MAX` has 20).
pub const SEGMENT_NAME_DIGITS: usize = 20;

const _: () = assert!(RECORDS_PER_BLOCK == 60);
const _: () = assert!(HEADER_CRC_OFFSET + 4 == BLOCK_HEADER_SIZE);
const _: () = assert!(BLOCK_HEADER_SIZE % core::mem::align_of::<Event>() == 0);

/// The checksum of the record holding sequence `sequence`: CRC-32C of the record's 64
/// bytes, XORed with the high 32 bits of `sequence × 0x9E37_79B9_7F4A_7C15` (Fibonacci
/// hashing, Knuth TAOCP vol. 3 §6.4). Tying the checksum to the sequence means that a
/// zeroed slot, or a valid record at the wrong place (a stale block), does not verify.
/// (Seeding the CRC with the sequence would be as strong, CRC being linear, but costs a
/// second CRC call: 26 vs 15 ns per record with the `crc32c` crate here.)
#[inline(always)]
pub fn record_crc(sequence: u64, record: &[u8]) -> u32 {
    crc32c::crc32c(record) ^ (sequence.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32
}

/// The file name of the segment whose first record is `first_sequence`.
pub fn segment_file_name(first_sequence: u64) -> String {
    format!(
        "{first_sequence:0width$}{SEGMENT_SUFFIX}",
        width = SEGMENT_NAME_DIGITS
    )
}

/// The first sequence a segment file name encodes, if it is one.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A segment's header, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Bytes before the first block: a multiple of [`BLOCK_SIZE`].
    pub header_len: u64,
    /// Sequence of the segment's first record.
    pub first_sequence: u64,
    /// When the segment was created, ns since the Unix epoch (UTC).
    pub created_ns: u64,
    /// Capacity in blocks; the writer rolls to a new segment when they are full.
    pub capacity_blocks: u64,
    /// The instruments known when the segment was created.
    pub instruments: InstrumentRegistry,
}

impl SegmentHeader {
    /// Records the segment holds when full.
    pub fn capacity_records(&self) -> u64 {
        self.capacity_blocks * RECORDS_PER_BLOCK as u64
    }

    /// Byte offset of block `block`.
    #[inline(always)]
    pub fn block_offset(&self, block: u64) -> u64 {
        self.header_len + block * BLOCK_SIZE as u64
    }

    /// Byte offset of the record at index `index` within the segment.
    #[inline(always)]
    pub fn record_offset(&self, index: u64) -> u64 {
        let block = index / RECORDS_PER_BLOCK as u64;
        let slot = index % RECORDS_PER_BLOCK as u64;
        self.block_offset(block) + (BLOCK_HEADER_SIZE + slot as usize * RECORD_SIZE) as u64
    }

    /// File length of the segment holding `records` records: the header, full blocks, and
    /// the last block's header and records (a partial block is not padded).
    pub fn file_len(&self, records: u64) -> u64 {
        if records == 0 {
            self.header_len
        } else {
            self.record_offset(records - 1) + RECORD_SIZE as u64
        }
    }

    /// The header's bytes, padded with zeros to [`header_len`](Self::header_len)
    /// (computed here from the instrument table, so the field's value is ignored).
    pub fn encode(&self) -> Vec<u8> {
        let mut table = Vec::new();
        for (id, symbol) in self.instruments.iter() {
            table.extend_from_slice(&id.to_le_bytes());
            // Symbols longer than u16::MAX bytes are cut (no venue has one near that).
            let bytes = &symbol.as_bytes()[..symbol.len().min(u16::MAX as usize)];
            table.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
            table.extend_from_slice(bytes);
        }
        let header_len = header_len_for(table.len());
        let mut out = vec![0u8; header_len as usize];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&(header_len as u32).to_le_bytes());
        out[16..20].copy_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
        out[20..24].copy_from_slice(&(RECORDS_PER_BLOCK as u32).to_le_bytes());
        out[24..32].copy_from_slice(&self.first_sequence.to_le_bytes());
        out[32..40].copy_from_slice(&self.created_ns.to_le_bytes());
        out[40..48].copy_from_slice(&self.capacity_blocks.to_le_bytes());
        out[48..52].copy_from_slice(&(self.instruments.len() as u32).to_le_bytes());
        out[52..56].copy_from_slice(&(table.len() as u32).to_le_bytes());
        out[FIXED_HEADER_SIZE..FIXED_HEADER_SIZE + table.len()].copy_from_slice(&table);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&out[0..56]), &table);
        out[56..60].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes the header at the start of `bytes` (the whole file or more than the header).
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Self, JournalError> {
        let bad = |offset: usize, reason: String| JournalError::Header {
            path: path.to_owned(),
            offset: offset as u64,
            reason,
        };
        if bytes.len() < FIXED_HEADER_SIZE {
            return Err(bad(
                bytes.len(),
                format!("file is {} bytes, shorter than a header", bytes.len()),
            ));
        }
        if bytes[0..8] != MAGIC {
            return Err(bad(0, "bad magic: not a tickwire journal segment".into()));
        }
        let version = le_u32(bytes, 8);
        if version != FORMAT_VERSION {
            return Err(bad(
                8,
                format!("format version {version}; this build reads {FORMAT_VERSION}"),
            ));
        }
        let header_len = u64::from(le_u32(bytes, 12));
        let block_size = le_u32(bytes, 16);
        let records_per_block = le_u32(bytes, 20);
        if block_size as usize != BLOCK_SIZE || records_per_block as usize != RECORDS_PER_BLOCK {
            return Err(bad(
                16,
                format!(
                    "block geometry {block_size} B x {records_per_block} records; expected {BLOCK_SIZE} x {RECORDS_PER_BLOCK}"
                ),
            ));
        }
        let table_len = le_u32(bytes, 52) as usize;
        if header_len != header_len_for(table_len) {
            return Err(bad(
                12,
                format!(
                    "header length {header_len} does not fit a {table_len}-byte instrument table"
                ),
            ));
        }
        if (bytes.len() as u64) < header_len {
            return Err(bad(
                bytes.len(),
                format!(
                    "file is {} bytes, shorter than its {header_len}-byte header",
                    bytes.len()
                ),
            ));
        }
        let table = &bytes[FIXED_HEADER_SIZE..FIXED_HEADER_SIZE + table_len];
        let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[0..56]), table);
        if crc != le_u32(bytes, 56) {
            return Err(JournalError::Corrupt {
                path: path.to_owned(),
                offset: 0,
                what: "segment header checksum mismatch".into(),
            });
        }
        let count = le_u32(bytes, 48);
        let mut instruments = InstrumentRegistry::default();
        let mut at = 0;
        for expected_id in 0..count {
            let entry_offset = FIXED_HEADER_SIZE + at;
            if at + 6 > table.len() {
                return Err(bad(entry_offset, "instrument table ends early".into()));
            }
            let id = le_u32(table, at);
            let len = u16::from_le_bytes([table[at + 4], table[at + 5]]) as usize;
            at += 6;
            if id != expected_id {
                return Err(bad(
                    entry_offset,
                    format!("instrument id {id} where {expected_id} was expected (ids are dense)"),
                ));
            }
            let Some(symbol) = table.get(at..at + len) else {
                return Err(bad(entry_offset, "instrument table ends early".into()));
            };
            let Ok(symbol) = core::str::from_utf8(symbol) else {
                return Err(bad(
                    entry_offset,
                    format!("instrument {id}: symbol is not UTF-8"),
                ));
            };
            if instruments.intern(symbol) != id {
                return Err(bad(
                    entry_offset,
                    format!("instrument {id}: duplicate symbol {symbol:?}"),
                ));
            }
            at += len;
        }
        if at != table.len() {
            return Err(bad(
                FIXED_HEADER_SIZE + at,
                "bytes after the instrument table".into(),
            ));
        }
        let capacity_blocks = le_u64(bytes, 40);
        if capacity_blocks == 0 || capacity_blocks > (u64::MAX - header_len) / BLOCK_SIZE as u64 {
            return Err(bad(
                40,
                format!("segment capacity {capacity_blocks} blocks"),
            ));
        }
        Ok(Self {
            header_len,
            first_sequence: le_u64(bytes, 24),
            created_ns: le_u64(bytes, 32),
            capacity_blocks,
            instruments,
        })
    }
}

/// Header length for an instrument table of `table_len` bytes: the fixed part plus the
/// table, rounded up to whole blocks so that blocks stay page-aligned.
fn header_len_for(table_len: usize) -> u64 {
    let raw = (FIXED_HEADER_SIZE + table_len) as u64;
    raw.div_ceil(BLOCK_SIZE as u64) * BLOCK_SIZE as u64
}

/// Reads a little-endian u32 at `at`; the caller checked the bounds.
#[inline(always)]
pub fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Reads a little-endian u64 at `at`; the caller checked the bounds.
#[inline(always)]
pub fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// A view of one block's bytes (a whole block, or the prefix of a torn last block).
#[derive(Debug, Clone, Copy)]
pub struct BlockView<'a> {
    bytes: &'a [u8],
}

impl<'a> BlockView<'a> {
    /// A view of `bytes`, at most one block.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes: &bytes[..bytes.len().min(BLOCK_SIZE)],
        }
    }

    /// Whether the block header is entirely present.
    pub fn has_header(&self) -> bool {
        self.bytes.len() >= BLOCK_HEADER_SIZE
    }

    /// Slots whose 64 bytes are entirely present.
    pub fn slots_present(&self) -> usize {
        self.bytes.len().saturating_sub(BLOCK_HEADER_SIZE) / RECORD_SIZE
    }

    /// The stored checksum of slot `slot`.
    pub fn stored_crc(&self, slot: usize) -> u32 {
        le_u32(self.bytes, slot * 4)
    }

    /// The bytes of slot `slot`; the caller checked `slot < slots_present()`.
    pub fn record(&self, slot: usize) -> &'a [u8] {
        let at = BLOCK_HEADER_SIZE + slot * RECORD_SIZE;
        &self.bytes[at..at + RECORD_SIZE]
    }

    /// Whether slot `slot`, which should hold `sequence`, is present and verifies.
    #[inline]
    pub fn slot_verifies(&self, slot: usize, sequence: u64) -> bool {
        slot < self.slots_present()
            && self.has_header()
            && record_crc(sequence, self.record(slot)) == self.stored_crc(slot)
    }

    /// The header's running max receive time (ns).
    pub fn max_receive_ts(&self) -> u64 {
        le_u64(self.bytes, HWM_OFFSET)
    }

    /// The header's record count.
    pub fn count(&self) -> u32 {
        le_u32(self.bytes, COUNT_OFFSET)
    }

    /// Whether the header's own checksum verifies.
    pub fn header_verifies(&self) -> bool {
        self.has_header()
            && crc32c::crc32c(&self.bytes[..HEADER_CRC_OFFSET])
                == le_u32(self.bytes, HEADER_CRC_OFFSET)
    }
}

/// Fills in a block header's running max receive time, record count and header checksum
/// (the record checksums are written as records are appended).
pub fn seal_block_header(header: &mut [u8], max_receive_ts: u64, count: u32) {
    header[HWM_OFFSET..HWM_OFFSET + 8].copy_from_slice(&max_receive_ts.to_le_bytes());
    header[COUNT_OFFSET..COUNT_OFFSET + 4].copy_from_slice(&count.to_le_bytes());
    let crc = crc32c::crc32c(&header[..HEADER_CRC_OFFSET]);
    header[HEADER_CRC_OFFSET..BLOCK_HEADER_SIZE].copy_from_slice(&crc.to_le_bytes());
}

/// Writes the checksum of slot `slot` into a block header.
#[inline(always)]
pub fn set_slot_crc(header: &mut [u8], slot: usize, crc: u32) {
    header[slot * 4..slot * 4 + 4].copy_from_slice(&crc.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_sort_by_sequence() {
        assert_eq!(segment_file_name(42), "00000000000000000042.twj");
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_file_name("42.twj"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.twj"), None);
        assert!(segment_file_name(9) < segment_file_name(10));
    }

    #[test]
    fn header_round_trips_and_detects_a_flipped_bit() {
        let header = SegmentHeader {
            header_len: 0,
            first_sequence: 7,
            created_ns: 11,
            capacity_blocks: 3,
            instruments: InstrumentRegistry::from_symbols(["BTCUSDT", "ETHUSDT", "AAPL"]),
        };
        let bytes = header.encode();
        assert_eq!(bytes.len(), BLOCK_SIZE);
        let path = Path::new("x.twj");
        let back = SegmentHeader::decode(path, &bytes).expect("valid header");
        assert_eq!(
            back,
            SegmentHeader {
                header_len: 4096,
                ..header
            }
        );
        for byte in [0, 9, 30, 70] {
            let mut bad = bytes.clone();
            bad[byte] ^= 0x10;
            assert!(SegmentHeader::decode(path, &bad).is_err(), "byte {byte}");
        }
    }

    #[test]
    fn a_large_instrument_table_grows_the_header_by_whole_blocks() {
        let symbols: Vec<String> = (0..1000).map(|i| format!("SYMBOL{i:05}")).collect();
        let header = SegmentHeader {
            header_len: 0,
            first_sequence: 0,
            created_ns: 0,
            capacity_blocks: 1,
            instruments: InstrumentRegistry::from_symbols(&symbols),
        };
        let bytes = header.encode();
        assert_eq!(bytes.len(), 5 * BLOCK_SIZE); // 64 + 1000 * (6 + 11) = 17 064 bytes
        let back = SegmentHeader::decode(Path::new("x"), &bytes).expect("valid header");
        assert_eq!(back.instruments.symbol(999), Some("SYMBOL00999"));
    }
}
