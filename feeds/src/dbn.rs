//! Databento DBN files (market by order, MBP-1, trades, BBO) as a [`Feed`], decoded with
//! the official [`dbn`] crate.
//!
//! DBN already uses tickwire's price convention (`i64` in 10⁻⁹), so prices pass through;
//! DBN sizes are whole contracts or shares (`u32`), multiplied by
//! [`SIZE_SCALE`] into tickwire's 10⁻⁸ units. Timestamps: `ts_event` (the matching engine's
//! time) becomes `exchange_ts`, `ts_recv` (Databento's capture time) becomes `receive_ts`;
//! an undefined `ts_event` (`u64::MAX`) is written as 0 with [`flags::BAD_TS`].
//!
//! | DBN record | events |
//! |---|---|
//! | MBO `A` add | [`BookDelta`] `Add` (L3: `order_id`, price, size) |
//! | MBO `C` cancel | [`BookDelta`] `Cancel`, `size` = the size removed (cancels may be partial) |
//! | MBO `M` modify | [`BookDelta`] `Modify`, the order's new price and size |
//! | MBO `R` clear | [`BookDelta`] `Clear` |
//! | MBO `T` trade | [`Trade`], aggressor = the record's side (`None` when DBN has none) |
//! | MBO `F` fill, `N` none | nothing (counted): DBN documents that they do not change the book; the resting order's size goes by a following `C` or `M` |
//! | MBP-1 / TBBO | [`Trade`] for a `T` action, then the [`Quote`] the record carries |
//! | trades (MBP-0) | [`Trade`] |
//! | BBO-1s / BBO-1m | [`Quote`] |
//! | symbol mapping | updates the symbol names (live data) |
//! | anything else | skipped (counted) |
//!
//! **MBO drives an [`OrderBooks`].** A `Quote` with the new top of book follows whenever a
//! record with DBN's `F_LAST` flag (the last record of one venue event for an instrument)
//! leaves the top different from the last quote emitted: the book is only consistent at
//! `F_LAST`, so intermediate tops are not published. The last event produced from an
//! `F_LAST` record has [`flags::LAST`] (when that record produces none, as a fill, and the top
//! is unchanged, the event group has no `LAST` mark). DBN's `F_SNAPSHOT` becomes
//! [`flags::SNAPSHOT`] and `F_MAYBE_BAD_BOOK` becomes [`flags::GAP`].
//!
//! **Edge cases follow Databento's reference book** (the order-book example of the
//! databento crate): a modify of an unknown order adds it; a cancel or modify of an unknown
//! order, a cancel larger than the order (the order is removed), an add with a duplicate id
//! or without a side are counted in [`DbnStats::book_errors`] and the venue's event is still
//! emitted; nothing panics.
//!
//! **Instruments.** Each DBN `instrument_id` is one tickwire instrument, named by the
//! metadata's symbology mappings (or live symbol-mapping records): `ESH4`. An id without a
//! mapping is named by its number; a second id mapped to an already used symbol (a
//! continuous contract across a roll) is named `SYMBOL#id`, so two contracts never share a
//! book.
//!
//! **Errors** name the record index from 0 ([`Position::Record`]); errors in the metadata
//! header are at [`Position::Byte`] 0. Records are read in the version the file was written
//! in (never upgraded), so each one's length is checked against its type; a length that does
//! not fit, a record type DBN does not define, a stream that ends inside a record and a
//! zstd stream that ends inside a frame are errors. After an error the feed ends: DBN
//! framing cannot resynchronise.
//!
//! ```
//! use dbn::encode::{dbn::Encoder, EncodeRecord};
//! use dbn::{MboMsg, Metadata, RecordHeader, SType, Schema, flags as dbn_flags, rtype};
//! use tickwire_engine::event::{Event, Side};
//! use tickwire_feeds::dbn::{DbnConfig, DbnFeed};
//! use tickwire_feeds::{Feed, FeedStatus, Sink};
//!
//! let metadata = Metadata::builder()
//!     .dataset("GLBX.MDP3")
//!     .schema(Some(Schema::Mbo))
//!     .start(0)
//!     .stype_in(Some(SType::RawSymbol))
//!     .stype_out(SType::InstrumentId)
//!     .build();
//! let mut bytes = Vec::new();
//! let mut encoder = Encoder::new(&mut bytes, &metadata).expect("metadata");
//! let add = MboMsg {
//!     hd: RecordHeader::new::<MboMsg>(rtype::MBO, 1, 7, 1_000),
//!     order_id: 42,
//!     price: 4_800_250_000_000, // 4800.25
//!     size: 3,
//!     flags: dbn_flags::LAST.into(),
//!     action: b'A' as _,
//!     side: b'B' as _,
//!     ts_recv: 1_500,
//!     ..MboMsg::default()
//! };
//! encoder.encode_record(&add).expect("record");
//!
//! let mut feed = DbnFeed::from_reader("example", &bytes[..], DbnConfig::default()).expect("metadata");
//! let mut buf = [Event::default(); 4];
//! let mut sink = Sink::from_slice(&mut buf);
//! while feed.poll(&mut sink).expect("valid") != FeedStatus::End {}
//! // The add, then the new top of book.
//! assert_eq!(sink.events()[0].book_delta().map(|d| d.order_id), Some(42));
//! let quote = sink.events()[1].quote().expect("top changed");
//! assert_eq!((quote.bid_px, quote.bid_size), (4_800_250_000_000, 300_000_000));
//! assert_eq!(feed.instruments().symbol(0), Some("7"), "no mapping: named by its id");
//! ```

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use dbn::compat::{SymbolMappingMsgV1, SymbolMappingRec};
use dbn::decode::{DbnDecoder, DbnMetadata, DecodeRecordRef, DynReader};
use dbn::{
    BboMsg, BidAskPair, MboMsg, Mbp1Msg, Record, RecordRef, SymbolMappingMsg, TradeMsg,
    UNDEF_PRICE, UNDEF_TIMESTAMP, VersionUpgradePolicy,
};
use rustc_hash::FxHashMap;
use tickwire_engine::event::{BookAction, BookDelta, Event, Quote, SIZE_SCALE, Side, Trade, flags};
use tickwire_engine::instrument::{InstrumentId, InstrumentRegistry};

use crate::book::{BookError, OrderBook, OrderBooks};
use crate::{Feed, FeedError, FeedErrorKind, FeedStatus, Position, Sink};

/// The decompressing reader [`DbnFeed::open`] uses (zstd or plain, by the file's magic).
pub type DbnFile = DynReader<'static, BufReader<File>>;

/// Configuration of a [`DbnFeed`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbnConfig {
    /// Feed id written into each event's header. Default 0.
    pub feed_id: u16,
}

/// Counts of what a [`DbnFeed`] decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbnStats {
    /// Records read (all types).
    pub records: u64,
    /// MBO records by action: add.
    pub adds: u64,
    /// MBO cancels.
    pub cancels: u64,
    /// MBO modifies.
    pub modifies: u64,
    /// MBO clears.
    pub clears: u64,
    /// MBO trades.
    pub trades: u64,
    /// MBO fills.
    pub fills: u64,
    /// MBO `N` (none) records.
    pub nones: u64,
    /// MBP-1 / TBBO records.
    pub mbp1: u64,
    /// Trades-schema records.
    pub trade_records: u64,
    /// BBO records.
    pub bbo: u64,
    /// Quotes emitted for a changed MBO top of book.
    pub book_quotes: u64,
    /// MBO records the book could not apply as given (unknown order, duplicate add, add
    /// without side, cancel larger than the order); see the module docs.
    pub book_errors: u64,
    /// Records of other types, skipped.
    pub skipped: u64,
}

/// The size of the record header every DBN version 1-3 record starts with.
const RECORD_HEADER_LEN: usize = 16;

/// Reads the DBN stream for the `dbn` decoder, counting bytes, keeping the first 8 (DBN's
/// magic, version and metadata length) and checking each record's length byte before the
/// decoder sees the record.
///
/// The decoder frames records by that byte alone and takes references to a whole batch of
/// them at once, so a length that is not a multiple of 8 would make it address every
/// following record out of alignment before the feed could look at the first. The
/// reader hands over the bytes before such a record and then fails with
/// [`StreamError::BadLength`].
#[derive(Debug)]
struct CountingReader<R> {
    inner: R,
    read: u64,
    prefix: [u8; 8],
    /// Decompressed offset of the next record's length byte, once the metadata length is
    /// known.
    next_record: Option<u64>,
    /// Where the last record wholly read ends (the metadata's end before any): a stream
    /// that ends past it ends inside a record.
    whole_end: u64,
    /// The error to return from now on.
    failed: Option<StreamError>,
}

/// What the reader found wrong with the stream beneath the `dbn` decoder.
#[derive(Debug, Clone, thiserror::Error)]
enum StreamError {
    #[error(
        "the compressed stream ends inside a frame, after {0} decompressed bytes: the file is cut short"
    )]
    CutFrame(u64),
    #[error(
        "the record at byte {at} (of the uncompressed stream) says it is {size} bytes long; \
         a record is a multiple of 8 bytes and at least {RECORD_HEADER_LEN}"
    )]
    BadLength { at: u64, size: usize },
}

impl<R> CountingReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            read: 0,
            prefix: [0; 8],
            next_record: None,
            whole_end: 0,
            failed: None,
        }
    }

    /// Checks the record lengths in `chunk` (the bytes from offset `self.read`); the number
    /// of bytes to hand over: all of them, or those before a record with a bad length.
    fn frame(&mut self, chunk: &[u8]) -> usize {
        let start = self.read;
        let end = start + chunk.len() as u64;
        for (i, &b) in chunk.iter().enumerate() {
            let Some(slot) = self.prefix.get_mut(start as usize + i) else {
                break;
            };
            *slot = b;
        }
        if self.next_record.is_none() && end >= 8 {
            // Magic "DBN", version, then the length of the metadata that follows.
            let [.., a, b, c, d] = self.prefix;
            let first = 8 + u64::from(u32::from_le_bytes([a, b, c, d]));
            self.next_record = Some(first);
            self.whole_end = first;
        }
        let Some(mut at) = self.next_record else {
            return chunk.len();
        };
        while at < end {
            let size = usize::from(chunk[(at - start) as usize]) * 4;
            if size < RECORD_HEADER_LEN || size % 8 != 0 {
                self.failed = Some(StreamError::BadLength { at, size });
                self.next_record = Some(at);
                return (at - start) as usize;
            }
            at += size as u64;
            if at <= end {
                self.whole_end = at;
            }
        }
        self.next_record = Some(at);
        chunk.len()
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(io::Error::new(io::ErrorKind::InvalidData, e.clone()));
        }
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            // A zstd frame cut short reports `UnexpectedEof`, which the `dbn` decoder takes
            // for a clean end of the records: it must stay an error.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                let e = StreamError::CutFrame(self.read);
                self.failed = Some(e.clone());
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            Err(e) => return Err(e),
        };
        let n = self.frame(&buf[..n]);
        self.read += n as u64;
        if n == 0 {
            if let Some(e) = &self.failed {
                return Err(io::Error::new(io::ErrorKind::InvalidData, e.clone()));
            }
        }
        Ok(n)
    }
}

/// A DBN stream as a [`Feed`].
pub struct DbnFeed<R: Read> {
    name: String,
    config: DbnConfig,
    decoder: DbnDecoder<CountingReader<R>>,
    /// Index of the next record.
    record: u64,
    layout: Layout,
    done: bool,
    registry: InstrumentRegistry,
    /// DBN instrument id -> symbol, from the metadata and symbol-mapping records.
    symbols: FxHashMap<u32, String>,
    /// DBN instrument id -> tickwire id.
    ids: FxHashMap<u32, InstrumentId>,
    books: OrderBooks,
    /// Last quote emitted per tickwire instrument (book-derived).
    tops: Vec<Quote>,
    stats: DbnStats,
}

impl<R: Read> std::fmt::Debug for DbnFeed<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbnFeed")
            .field("name", &self.name)
            .field("record", &self.record)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl DbnFeed<DbnFile> {
    /// Opens a DBN file, zstd-compressed or not; the feed's name is the path.
    pub fn open(path: impl AsRef<Path>, config: DbnConfig) -> Result<Self, FeedError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let reader = DynReader::from_file(path)
            .map_err(|e| FeedError::new(&name, Position::Byte(0), dbn_error(e)))?;
        Self::from_reader(name, reader, config)
    }
}

impl<R: Read> DbnFeed<R> {
    /// A feed over uncompressed DBN from `reader`; reads the metadata header now.
    pub fn from_reader(
        name: impl Into<String>,
        reader: R,
        config: DbnConfig,
    ) -> Result<Self, FeedError> {
        let name = name.into();
        let counting = CountingReader::new(reader);
        // Records are read as the file's version wrote them: the crate's upgrade of older
        // versions asserts on a record too short for its type (a panic on malformed input),
        // and the types tickwire reads have one layout in every version but the symbol
        // mapping, which `Owned` reads in both of its layouts.
        let decoder = DbnDecoder::with_upgrade_policy(counting, VersionUpgradePolicy::AsIs)
            .map_err(|e| FeedError::new(&name, Position::Byte(0), dbn_error(e)))?;
        let metadata = decoder.metadata();
        let mut symbols = FxHashMap::default();
        for mapping in &metadata.mappings {
            for interval in &mapping.intervals {
                // Normally stype_out is the instrument id; with ids as input it is reversed.
                if let Ok(id) = interval.symbol.parse::<u32>() {
                    symbols.insert(id, mapping.raw_symbol.clone());
                } else if let Ok(id) = mapping.raw_symbol.parse::<u32>() {
                    symbols.insert(id, interval.symbol.clone());
                }
            }
        }
        let layout = Layout {
            version: metadata.version,
            ts_out: metadata.ts_out,
        };
        Ok(Self {
            name,
            config,
            decoder,
            record: 0,
            layout,
            done: false,
            registry: InstrumentRegistry::default(),
            symbols,
            ids: FxHashMap::default(),
            books: OrderBooks::default(),
            tops: Vec::new(),
            stats: DbnStats::default(),
        })
    }

    /// Starts from `registry`: its symbols keep their ids, new ones are appended.
    pub fn with_registry(mut self, registry: InstrumentRegistry) -> Self {
        self.registry = registry;
        self.ids.clear();
        self
    }

    /// The DBN metadata header.
    pub fn metadata(&self) -> &dbn::Metadata {
        self.decoder.metadata()
    }

    /// The MBO order books.
    pub fn books(&self) -> &OrderBooks {
        &self.books
    }

    /// The MBO book of `instrument`.
    pub fn book(&self, instrument: InstrumentId) -> Option<&OrderBook> {
        self.books.book(instrument)
    }

    /// Counters so far.
    pub fn stats(&self) -> &DbnStats {
        &self.stats
    }

    fn error(&self, kind: FeedErrorKind) -> FeedError {
        FeedError::new(&self.name, Position::Record(self.record), kind)
    }

    /// The tickwire id of a DBN instrument id, registering it on first sight.
    fn instrument(&mut self, dbn_id: u32) -> InstrumentId {
        if let Some(&id) = self.ids.get(&dbn_id) {
            return id;
        }
        let name = match self.symbols.get(&dbn_id) {
            Some(symbol) => {
                let taken = self
                    .registry
                    .id(symbol)
                    .is_some_and(|id| self.ids.values().any(|&v| v == id));
                if taken {
                    format!("{symbol}#{dbn_id}")
                } else {
                    symbol.clone()
                }
            }
            None => dbn_id.to_string(),
        };
        let id = self.registry.intern(&name);
        self.ids.insert(dbn_id, id);
        id
    }

    /// Checks at the end of the stream that no partial record was left.
    fn check_end(&self) -> Result<(), FeedError> {
        let counting = self.decoder.get_ref();
        if counting.read > counting.whole_end {
            return Err(self.error(FeedErrorKind::Truncated(format!(
                "{} bytes after the last whole record",
                counting.read - counting.whole_end
            ))));
        }
        Ok(())
    }

    /// Decodes one record into `sink` (which has room for two events).
    fn decode_one(&mut self, sink: &mut Sink<'_>) -> Result<bool, FeedError> {
        let record = match self.decoder.decode_record_ref() {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(false),
            Err(e) => return Err(self.error(dbn_error(e))),
        };
        // Copy the record out of the decoder's buffer (at most 176 bytes), ending the borrow.
        // A record whose length does not fit its type is malformed input, not a reason to
        // panic or to read the records after it out of place (see `Owned::read`).
        let owned = match Owned::read(&record, self.layout) {
            Ok(owned) => owned,
            Err(reason) => return Err(self.error(FeedErrorKind::Malformed(reason))),
        };
        self.stats.records += 1;
        match owned {
            Owned::Mbo(mbo) => self.on_mbo(&mbo, sink)?,
            Owned::Mbp1(mbp) => self.on_mbp1(&mbp, sink)?,
            Owned::Trade(trade) => {
                self.stats.trade_records += 1;
                let side = self.side(trade.side)?;
                let mut event = self.header(&trade.hd, trade.ts_recv, trade.flags.raw());
                event.set_trade(Trade {
                    price: trade.price,
                    size: u64::from(trade.size) * SIZE_SCALE,
                    trade_id: 0,
                    seq: u64::from(trade.sequence),
                    aggressor: side as u8,
                    ..Trade::default()
                });
                event.flags |= last_flag(trade.flags.raw());
                sink.push(event);
            }
            Owned::Bbo(bbo) => {
                self.stats.bbo += 1;
                let mut event = self.header(&bbo.hd, bbo.ts_recv, bbo.flags.raw());
                event.set_quote(quote(&bbo.levels[0], bbo.sequence));
                event.flags |= last_flag(bbo.flags.raw());
                sink.push(event);
            }
            Owned::Mapping {
                instrument_id,
                symbol,
            } => {
                if let Some(symbol) = symbol {
                    self.symbols.entry(instrument_id).or_insert(symbol);
                }
            }
            Owned::Other => self.stats.skipped += 1,
        }
        self.record += 1;
        Ok(true)
    }

    fn side(&self, code: std::ffi::c_char) -> Result<Side, FeedError> {
        match code as u8 {
            b'B' => Ok(Side::Bid),
            b'A' => Ok(Side::Ask),
            b'N' | 0 => Ok(Side::None),
            other => Err(self.error(FeedErrorKind::Malformed(format!(
                "side {other:#04x} is not A, B or N"
            )))),
        }
    }

    /// An event with the header of a DBN record (flags mapped, LAST not yet set).
    fn header(&mut self, hd: &dbn::RecordHeader, ts_recv: u64, dbn_flags: u8) -> Event {
        let instrument = self.instrument(hd.instrument_id);
        let (exchange_ts, bad) = if hd.ts_event == UNDEF_TIMESTAMP {
            (0, flags::BAD_TS)
        } else {
            (hd.ts_event, 0)
        };
        let receive_ts = if ts_recv == UNDEF_TIMESTAMP {
            0
        } else {
            ts_recv
        };
        let mut event = Event::new(self.config.feed_id, instrument, exchange_ts, receive_ts);
        event.flags = bad | mapped_flags(dbn_flags);
        event
    }

    fn on_mbp1(&mut self, mbp: &Mbp1Msg, sink: &mut Sink<'_>) -> Result<(), FeedError> {
        self.stats.mbp1 += 1;
        let side = self.side(mbp.side)?;
        let template = self.header(&mbp.hd, mbp.ts_recv, mbp.flags.raw());
        if mbp.action as u8 == b'T' {
            let mut event = template;
            event.set_trade(Trade {
                price: mbp.price,
                size: u64::from(mbp.size) * SIZE_SCALE,
                trade_id: 0,
                seq: u64::from(mbp.sequence),
                aggressor: side as u8,
                ..Trade::default()
            });
            sink.push(event);
        }
        let mut event = template;
        event.set_quote(quote(&mbp.levels[0], mbp.sequence));
        event.flags |= last_flag(mbp.flags.raw());
        sink.push(event);
        Ok(())
    }

    fn on_mbo(&mut self, mbo: &MboMsg, sink: &mut Sink<'_>) -> Result<(), FeedError> {
        let side = self.side(mbo.side)?;
        let dbn_flags = mbo.flags.raw();
        let template = self.header(&mbo.hd, mbo.ts_recv, dbn_flags);
        let instrument = template.instrument;
        let size = u64::from(mbo.size) * SIZE_SCALE;
        let seq = u64::from(mbo.sequence);
        let delta = |action: BookAction| {
            let mut event = template;
            event.set_book_delta(BookDelta {
                order_id: mbo.order_id,
                price: mbo.price,
                size,
                seq,
                side: side as u8,
                action: action as u8,
                ..BookDelta::default()
            });
            event
        };
        let event = match mbo.action as u8 {
            b'A' => {
                self.stats.adds += 1;
                let added = self
                    .books
                    .add(instrument, mbo.order_id, side, mbo.price, size);
                self.count(added.map(drop));
                Some(delta(BookAction::Add))
            }
            b'C' => {
                self.stats.cancels += 1;
                match self.books.reduce(mbo.order_id, size) {
                    Ok(_) => {}
                    Err(BookError::Overfill { .. }) => {
                        self.stats.book_errors += 1;
                        let deleted = self.books.delete(mbo.order_id).map(drop);
                        self.count(deleted);
                    }
                    Err(_) => self.stats.book_errors += 1,
                }
                Some(delta(BookAction::Cancel))
            }
            b'M' => {
                self.stats.modifies += 1;
                let result = if self.books.order(mbo.order_id).is_some() {
                    self.books
                        .replace(mbo.order_id, mbo.order_id, mbo.price, size)
                        .map(drop)
                } else {
                    // Databento's reference book: a modify of an unknown order adds it.
                    self.books
                        .add(instrument, mbo.order_id, side, mbo.price, size)
                };
                self.count(result);
                Some(delta(BookAction::Modify))
            }
            b'R' => {
                self.stats.clears += 1;
                self.books.clear_instrument(instrument);
                Some(delta(BookAction::Clear))
            }
            b'T' => {
                self.stats.trades += 1;
                let mut event = template;
                event.set_trade(Trade {
                    price: mbo.price,
                    size,
                    trade_id: 0,
                    seq,
                    aggressor: side as u8,
                    ..Trade::default()
                });
                Some(event)
            }
            b'F' => {
                self.stats.fills += 1;
                None
            }
            b'N' => {
                self.stats.nones += 1;
                None
            }
            other => {
                return Err(self.error(FeedErrorKind::Malformed(format!(
                    "MBO action {other:#04x} is not A, C, M, R, T, F or N"
                ))));
            }
        };
        let last = dbn_flags & dbn::flags::LAST != 0;
        let quote = if last {
            self.top_change(instrument)
        } else {
            None
        };
        match (event, quote) {
            (Some(mut event), None) => {
                event.flags |= last_flag(dbn_flags);
                sink.push(event);
            }
            (event, Some(quote)) => {
                if let Some(event) = event {
                    sink.push(event);
                }
                let mut event = template;
                event.set_quote(Quote { seq, ..quote });
                event.flags |= flags::LAST;
                self.stats.book_quotes += 1;
                sink.push(event);
            }
            (None, None) => {}
        }
        Ok(())
    }

    fn count(&mut self, result: Result<(), BookError>) {
        if result.is_err() {
            self.stats.book_errors += 1;
        }
    }

    /// The instrument's top if it differs from the last one emitted (and records it).
    fn top_change(&mut self, instrument: InstrumentId) -> Option<Quote> {
        let top = self
            .books
            .book(instrument)
            .map(OrderBook::top)
            .unwrap_or_default();
        let i = instrument as usize;
        if i >= self.tops.len() {
            self.tops.resize(i + 1, Quote::default());
        }
        (self.tops[i] != top).then(|| {
            self.tops[i] = top;
            top
        })
    }
}

impl<R: Read + Send> Feed for DbnFeed<R> {
    fn name(&self) -> &str {
        &self.name
    }

    /// 2: a book delta or trade, and the new top of book.
    fn max_events_per_message(&self) -> usize {
        2
    }

    fn poll(&mut self, sink: &mut Sink<'_>) -> Result<FeedStatus, FeedError> {
        while !self.done && sink.remaining() >= 2 {
            match self.decode_one(sink) {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    self.check_end()?;
                }
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            }
        }
        Ok(if self.done {
            FeedStatus::End
        } else {
            FeedStatus::Active
        })
    }

    fn instruments(&self) -> &InstrumentRegistry {
        &self.registry
    }
}

/// The records this feed reads, copied out of the decoder's buffer.
enum Owned {
    Mbo(MboMsg),
    Mbp1(Mbp1Msg),
    Trade(TradeMsg),
    Bbo(BboMsg),
    Mapping {
        instrument_id: u32,
        symbol: Option<String>,
    },
    Other,
}

/// How the records of one file are laid out.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// The DBN version that wrote the records (they are read as they are, not upgraded).
    version: u8,
    /// Whether every record carries an 8-byte send timestamp after its body.
    ts_out: bool,
}

impl Owned {
    /// Copies out a record of a type tickwire reads, after checking its length.
    ///
    /// The length in the header is all the framing DBN has: a record of a known type must be
    /// exactly that type's size (plus the send timestamp with `ts_out`), or the records after
    /// it would be read out of place (`CountingReader` has already checked that it is a
    /// multiple of 8). A type DBN does not define is an error;
    /// a defined type tickwire does not read is [`Owned::Other`].
    fn read(record: &RecordRef<'_>, layout: Layout) -> Result<Self, String> {
        /// The record as a `T` if its type says so; an error if its length is not `T`'s.
        fn typed<'a, T: dbn::record::HasRType<Header = dbn::RecordHeader>>(
            record: &RecordRef<'a>,
            layout: Layout,
            what: &str,
        ) -> Result<Option<&'a T>, String> {
            if !record.has::<T>() {
                return Ok(None);
            }
            let expected = std::mem::size_of::<T>() + if layout.ts_out { 8 } else { 0 };
            let size = record.record_size();
            if size != expected {
                return Err(format!(
                    "record type {what} is {expected} bytes in DBN version {}, this record's header says {size}",
                    layout.version
                ));
            }
            record.try_get::<T>().map(Some).map_err(|e| e.to_string())
        }
        if let Err(e) = record.rtype() {
            return Err(format!("not a DBN record type: {e}"));
        }
        Ok(if let Some(r) = typed::<MboMsg>(record, layout, "MBO")? {
            Self::Mbo(r.clone())
        } else if let Some(r) = typed::<Mbp1Msg>(record, layout, "MBP-1")? {
            Self::Mbp1(r.clone())
        } else if let Some(r) = typed::<TradeMsg>(record, layout, "trade")? {
            Self::Trade(r.clone())
        } else if let Some(r) = typed::<BboMsg>(record, layout, "BBO")? {
            Self::Bbo(r.clone())
        } else if layout.version == 1 {
            match typed::<SymbolMappingMsgV1>(record, layout, "symbol mapping")? {
                Some(r) => Self::mapping(r.hd.instrument_id, r),
                None => Self::Other,
            }
        } else {
            match typed::<SymbolMappingMsg>(record, layout, "symbol mapping")? {
                Some(r) => Self::mapping(r.hd.instrument_id, r),
                None => Self::Other,
            }
        })
    }

    fn mapping(instrument_id: u32, record: &impl SymbolMappingRec) -> Self {
        Self::Mapping {
            instrument_id,
            symbol: record.stype_out_symbol().ok().map(str::to_owned),
        }
    }
}

/// A [`Quote`] from DBN's top level (undefined prices become empty sides).
fn quote(level: &BidAskPair, sequence: u32) -> Quote {
    let side = |px: i64, size: u32| {
        if px == UNDEF_PRICE {
            (0, 0)
        } else {
            (px, u64::from(size) * SIZE_SCALE)
        }
    };
    let (bid_px, bid_size) = side(level.bid_px, level.bid_sz);
    let (ask_px, ask_size) = side(level.ask_px, level.ask_sz);
    Quote {
        bid_px,
        ask_px,
        bid_size,
        ask_size,
        seq: u64::from(sequence),
    }
}

/// tickwire flags for DBN flags (all but LAST, which depends on the events produced).
fn mapped_flags(dbn_flags: u8) -> u8 {
    let mut out = 0;
    if dbn_flags & dbn::flags::SNAPSHOT != 0 {
        out |= flags::SNAPSHOT;
    }
    if dbn_flags & dbn::flags::MAYBE_BAD_BOOK != 0 {
        out |= flags::GAP;
    }
    out
}

fn last_flag(dbn_flags: u8) -> u8 {
    if dbn_flags & dbn::flags::LAST != 0 {
        flags::LAST
    } else {
        0
    }
}

fn dbn_error(e: dbn::Error) -> FeedErrorKind {
    let found = match &e {
        dbn::Error::Io { source, .. } => source
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<StreamError>()),
        _ => None,
    };
    match found {
        Some(found @ StreamError::CutFrame(_)) => {
            return FeedErrorKind::Truncated(found.to_string());
        }
        Some(found @ StreamError::BadLength { .. }) => {
            return FeedErrorKind::Malformed(found.to_string());
        }
        None => {}
    }
    match e {
        dbn::Error::Io { source, context } if source.kind() == io::ErrorKind::UnexpectedEof => {
            FeedErrorKind::Truncated(format!("{context}: {source}"))
        }
        dbn::Error::Io { source, .. } => FeedErrorKind::Io(source),
        other => FeedErrorKind::Malformed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use dbn::encode::{EncodeRecord, dbn::Encoder};
    use dbn::{MappingInterval, Metadata, RecordHeader, SType, Schema, SymbolMapping, rtype};
    use proptest::prelude::*;
    use tickwire_engine::event::{EventKind, PRICE_SCALE};

    use super::*;

    const LAST: u8 = dbn::flags::LAST;

    fn metadata(schema: Schema, mappings: &[(&str, u32)]) -> Metadata {
        let day = |d| time::Date::from_calendar_date(2023, time::Month::December, d);
        let mappings = mappings
            .iter()
            .map(|(symbol, id)| SymbolMapping {
                raw_symbol: (*symbol).to_owned(),
                intervals: vec![MappingInterval {
                    start_date: day(24).expect("date"),
                    end_date: day(25).expect("date"),
                    symbol: id.to_string(),
                }],
            })
            .collect();
        Metadata::builder()
            .dataset("GLBX.MDP3")
            .schema(Some(schema))
            .start(0)
            .stype_in(Some(SType::RawSymbol))
            .stype_out(SType::InstrumentId)
            .mappings(mappings)
            .build()
    }

    fn mbo(action: u8, side: u8, order_id: u64, price: i64, size: u32, flags: u8) -> MboMsg {
        MboMsg {
            hd: RecordHeader::new::<MboMsg>(rtype::MBO, 1, 1, 1_000 + order_id),
            order_id,
            price: price * PRICE_SCALE,
            size,
            flags: flags.into(),
            action: action as _,
            side: side as _,
            ts_recv: 2_000,
            sequence: 7,
            ..MboMsg::default()
        }
    }

    fn encode_mbo(records: &[MboMsg]) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut encoder =
            Encoder::new(&mut bytes, &metadata(Schema::Mbo, &[("ESH4", 1)])).expect("metadata");
        for r in records {
            encoder.encode_record(r).expect("record");
        }
        bytes
    }

    /// Decodes everything with two-slot sinks.
    fn run(bytes: &[u8]) -> (DbnFeed<&[u8]>, Vec<Event>) {
        let mut feed = DbnFeed::from_reader("test", bytes, DbnConfig::default()).expect("metadata");
        let mut all = Vec::new();
        let mut buf = [Event::default(); 2];
        loop {
            let mut sink = Sink::from_slice(&mut buf);
            let status = feed.poll(&mut sink).expect("valid records");
            all.extend_from_slice(sink.events());
            if status == FeedStatus::End {
                return (feed, all);
            }
        }
    }

    fn describe(e: &Event) -> (Option<EventKind>, u8, i64, u64, u8) {
        let flags = e.flags;
        match e.body() {
            Some(tickwire_engine::event::Body::BookDelta(d)) => (
                e.kind(),
                d.action,
                d.price / PRICE_SCALE,
                d.size / SIZE_SCALE,
                flags,
            ),
            Some(tickwire_engine::event::Body::Trade(t)) => (
                e.kind(),
                t.aggressor,
                t.price / PRICE_SCALE,
                t.size / SIZE_SCALE,
                flags,
            ),
            Some(tickwire_engine::event::Body::Quote(q)) => (
                e.kind(),
                0,
                q.bid_px / PRICE_SCALE,
                u64::try_from(q.ask_px / PRICE_SCALE).unwrap_or(u64::MAX),
                flags,
            ),
            _ => (e.kind(), 0, 0, 0, flags),
        }
    }

    #[test]
    fn mbo_edge_cases_drive_the_book_without_panicking() {
        let records = [
            mbo(b'A', b'B', 1, 100, 5, LAST),
            mbo(b'A', b'A', 2, 101, 3, LAST),
            mbo(b'C', b'B', 1, 100, 2, LAST), // partial cancel: 3 left
            mbo(b'M', b'A', 2, 102, 4, LAST), // modify price and size
            mbo(b'M', b'B', 9, 99, 1, LAST),  // modify of an unknown order: an add
            mbo(b'C', b'A', 77, 105, 1, 0),   // cancel of an unknown order
            mbo(b'T', b'N', 0, 101, 1, LAST), // trade, no side, no resting order
            mbo(b'F', b'B', 1, 100, 1, 0),    // fill: no book change
            mbo(b'C', b'B', 1, 100, 9, LAST), // more than the order has: removed
            mbo(b'A', b'N', 5, 50, 1, 0),     // add without side
            mbo(b'R', b'N', 0, 0, 0, LAST),   // clear
            mbo(b'N', b'N', 0, 0, 0, 0),
        ];
        let bytes = encode_mbo(&records);
        let (feed, events) = run(&bytes);
        use EventKind::{BookDelta as D, Quote as Q, Trade as T};
        let (add, cancel, modify, clear) = (
            BookAction::Add as u8,
            BookAction::Cancel as u8,
            BookAction::Modify as u8,
            BookAction::Clear as u8,
        );
        let l = flags::LAST;
        let got: Vec<_> = events.iter().map(describe).collect();
        assert_eq!(
            got,
            [
                (Some(D), add, 100, 5, 0),
                (Some(Q), 0, 100, 0, l),
                (Some(D), add, 101, 3, 0),
                (Some(Q), 0, 100, 101, l),
                (Some(D), cancel, 100, 2, 0),
                (Some(Q), 0, 100, 101, l), // bid size 5 -> 3
                (Some(D), modify, 102, 4, 0),
                (Some(Q), 0, 100, 102, l),
                (Some(D), modify, 99, 1, l), // top unchanged: no quote, LAST on the delta
                (Some(D), cancel, 105, 1, 0),
                (Some(T), Side::None as u8, 101, 1, l),
                (Some(D), cancel, 100, 9, 0),
                (Some(Q), 0, 99, 102, l),
                (Some(D), add, 50, 1, 0),
                (Some(D), clear, 0, 0, 0),
                (Some(Q), 0, 0, 0, l),
            ]
        );
        assert_eq!(events[5].quote().map(|q| q.bid_size), Some(3 * SIZE_SCALE));
        assert_eq!(
            (events[0].exchange_ts, events[0].receive_ts),
            (1_001, 2_000)
        );
        let stats = feed.stats();
        assert_eq!(
            (stats.adds, stats.cancels, stats.modifies, stats.clears),
            (3, 3, 2, 1)
        );
        assert_eq!(
            (stats.trades, stats.fills, stats.nones, stats.records),
            (1, 1, 1, 12)
        );
        // Unknown cancel, overfill, add without side.
        assert_eq!(stats.book_errors, 3);
        assert_eq!(feed.books().order_count(), 0);
        assert!(
            feed.book(0)
                .is_some_and(|b| b.bids.is_empty() && b.asks.is_empty())
        );
        assert_eq!(feed.instruments().symbol(0), Some("ESH4"));
    }

    #[test]
    fn mbp1_trades_and_bbo_become_quotes_and_trades() {
        let level = BidAskPair {
            bid_px: 10 * PRICE_SCALE,
            ask_px: UNDEF_PRICE,
            bid_sz: 2,
            ask_sz: 0,
            bid_ct: 1,
            ask_ct: 0,
        };
        let mbp = Mbp1Msg {
            hd: RecordHeader::new::<Mbp1Msg>(rtype::MBP_1, 1, 3, 5),
            price: 10 * PRICE_SCALE,
            size: 1,
            action: b'T' as _,
            side: b'A' as _,
            flags: LAST.into(),
            ts_recv: 6,
            sequence: 9,
            levels: [level.clone()],
            ..Mbp1Msg::default()
        };
        let trade = TradeMsg {
            hd: RecordHeader::new::<TradeMsg>(rtype::MBP_0, 1, 3, UNDEF_TIMESTAMP),
            price: 11 * PRICE_SCALE,
            size: 4,
            action: b'T' as _,
            side: b'B' as _,
            ts_recv: 8,
            ..TradeMsg::default()
        };
        let bbo = BboMsg {
            hd: RecordHeader::new::<BboMsg>(rtype::BBO_1S, 1, 4, 9),
            ts_recv: 10,
            levels: [level],
            ..BboMsg::default_for_schema(Schema::Bbo1S)
        };
        let mut bytes = Vec::new();
        let mut encoder =
            Encoder::new(&mut bytes, &metadata(Schema::Mbp1, &[("CLF4", 4)])).expect("metadata");
        encoder.encode_record(&mbp).expect("record");
        encoder.encode_record(&trade).expect("record");
        encoder.encode_record(&bbo).expect("record");
        let (feed, events) = run(&bytes);
        assert_eq!(events.len(), 4);
        let t = events[0].trade().expect("trade first");
        assert_eq!(
            (t.price, t.size, t.aggressor),
            (10 * PRICE_SCALE, SIZE_SCALE, Side::Ask as u8)
        );
        assert_eq!(events[0].flags, 0);
        let q = events[1].quote().expect("then the quote");
        assert_eq!(
            *q,
            Quote {
                bid_px: 10 * PRICE_SCALE,
                ask_px: 0,
                bid_size: 2 * SIZE_SCALE,
                ask_size: 0,
                seq: 9
            }
        );
        assert_eq!(events[1].flags, flags::LAST);
        assert_eq!(events[2].flags, flags::BAD_TS, "undefined ts_event");
        assert_eq!(
            events[2].trade().map(|t| t.aggressor),
            Some(Side::Bid as u8)
        );
        assert!(events[3].quote().is_some());
        assert_eq!(feed.instruments().symbol(events[0].instrument), Some("3"));
        assert_eq!(
            feed.instruments().symbol(events[3].instrument),
            Some("CLF4")
        );
        let stats = feed.stats();
        assert_eq!((stats.mbp1, stats.trade_records, stats.bbo), (1, 1, 1));
    }

    #[test]
    fn file_feeds_can_move_to_the_ingest_thread() {
        fn feed<F: Feed>() {}
        feed::<DbnFeed<DbnFile>>();
        feed::<crate::binance::BinanceFeed<crate::binance::GzipLines>>();
    }

    #[test]
    fn errors_name_the_record() {
        let records = [
            mbo(b'A', b'B', 1, 100, 5, LAST),
            mbo(b'X', b'B', 2, 100, 5, LAST),
        ];
        let bytes = encode_mbo(&records);
        let mut feed =
            DbnFeed::from_reader("bad", &bytes[..], DbnConfig::default()).expect("metadata");
        let mut buf = [Event::default(); 8];
        let mut sink = Sink::from_slice(&mut buf);
        let err = feed.poll(&mut sink).expect_err("bad action");
        assert_eq!(err.position, Position::Record(1));
        assert!(
            err.to_string()
                .starts_with("bad: record 1: malformed: MBO action 0x58"),
            "{err}"
        );
        assert_eq!(feed.poll(&mut sink).expect("ended"), FeedStatus::End);

        let bytes = encode_mbo(&records[..1]);
        let cut = &bytes[..bytes.len() - 10];
        let mut feed = DbnFeed::from_reader("cut", cut, DbnConfig::default()).expect("metadata");
        let mut sink = Sink::from_slice(&mut buf);
        let err = feed.poll(&mut sink).expect_err("partial record");
        assert_eq!(err.position, Position::Record(0));
        assert!(matches!(err.kind, FeedErrorKind::Truncated(_)), "{err}");

        let err = DbnFeed::from_reader("junk", &b"not dbn at all"[..], DbnConfig::default())
            .expect_err("no metadata");
        assert_eq!(err.position, Position::Byte(0));
    }

    fn drain<R: Read + Send>(feed: &mut DbnFeed<R>) -> (Vec<Event>, Result<(), FeedError>) {
        crate::test_util::drain(feed, 8)
    }

    #[test]
    fn a_record_length_that_does_not_fit_its_type_stops_the_feed_where_it_is() {
        let records: Vec<MboMsg> = (1..=3).map(|i| mbo(b'A', b'B', i, 100, 5, LAST)).collect();
        let good = encode_mbo(&records);
        let second = good.len() - 2 * std::mem::size_of::<MboMsg>();
        // (length byte in 4-byte units, what the error says)
        let cases: [(u8, &str); 3] = [
            (
                15,
                "says it is 60 bytes long; a record is a multiple of 8 bytes",
            ),
            (
                16,
                "record type MBO is 56 bytes in DBN version 3, this record's header says 64",
            ),
            (
                12,
                "record type MBO is 56 bytes in DBN version 3, this record's header says 48",
            ),
        ];
        for (length, says) in cases {
            let mut bytes = good.clone();
            bytes[second] = length;
            let mut feed =
                DbnFeed::from_reader("len", &bytes[..], DbnConfig::default()).expect("metadata");
            let (events, end) = drain(&mut feed);
            let err = end.expect_err("a lying length is an error, not a silent misread");
            assert_eq!(err.position, Position::Record(1), "{err}");
            assert!(err.to_string().contains(says), "{err}");
            let first = events
                .iter()
                .filter_map(Event::book_delta)
                .collect::<Vec<_>>();
            assert_eq!(
                first.iter().map(|d| d.order_id).collect::<Vec<_>>(),
                [1],
                "the record before the damage is delivered"
            );
        }

        let mut bytes = good.clone();
        bytes[second + 1] = 0x77;
        let mut feed =
            DbnFeed::from_reader("rtype", &bytes[..], DbnConfig::default()).expect("metadata");
        let err = drain(&mut feed).1.expect_err("an undefined record type");
        assert_eq!(err.position, Position::Record(1), "{err}");
        assert!(err.to_string().contains("not a DBN record type"), "{err}");
    }

    #[test]
    fn a_zstd_file_cut_inside_a_frame_is_an_error_not_an_early_end() {
        let records: Vec<MboMsg> = (0..4_000u64)
            .map(|i| {
                mbo(
                    b'A',
                    b"BA"[(i % 2) as usize],
                    i + 1,
                    100 + (i % 50) as i64,
                    5,
                    LAST,
                )
            })
            .collect();
        let plain = encode_mbo(&records);
        let mut compressed = Vec::new();
        {
            use std::io::Write;
            let mut writer = dbn::encode::DynWriter::new(&mut compressed, dbn::Compression::Zstd)
                .expect("zstd writer");
            writer.write_all(&plain).expect("compress");
            writer.finish().expect("finish the frame");
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let whole = dir.path().join("whole.dbn.zst");
        std::fs::write(&whole, &compressed).expect("write");
        let mut feed = DbnFeed::open(&whole, DbnConfig::default()).expect("opens");
        let (events, end) = drain(&mut feed);
        end.expect("the whole file decodes");
        assert_eq!(feed.stats().records, 4_000);
        assert!(events.len() >= 4_000);

        for keep in [
            compressed.len() / 4,
            compressed.len() / 2,
            compressed.len() - 3,
        ] {
            let cut = dir.path().join(format!("cut{keep}.dbn.zst"));
            std::fs::write(&cut, &compressed[..keep]).expect("write");
            let Ok(mut feed) = DbnFeed::open(&cut, DbnConfig::default()) else {
                continue; // cut inside the metadata: an error at byte 0 is fine too
            };
            let err = drain(&mut feed)
                .1
                .expect_err("a cut zstd stream must not look like the end of the records");
            assert!(
                matches!(err.kind, FeedErrorKind::Truncated(_)),
                "{keep} of {} bytes: {err}",
                compressed.len()
            );
            if keep <= compressed.len() / 2 {
                assert!(feed.stats().records < 4_000, "{keep}: {err}");
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_and_cuts_never_panic(
            junk in proptest::collection::vec(any::<u8>(), 0..200),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let _ = DbnFeed::from_reader("junk", &junk[..], DbnConfig::default());
            let records: Vec<MboMsg> = (0..6u8)
                .map(|i| mbo(b"ACMTFR"[usize::from(i)], b"BAN"[usize::from(i % 3)], u64::from(i % 3), 100, 2, LAST))
                .collect();
            let mut bytes = encode_mbo(&records);
            let i = flip.index(bytes.len());
            bytes[i] = byte;
            let bytes = &bytes[..cut.index(bytes.len() + 1)];
            if let Ok(mut feed) = DbnFeed::from_reader("cut", bytes, DbnConfig::default()) {
                let mut buf = [Event::default(); 2];
                for _ in 0..100 {
                    let mut sink = Sink::from_slice(&mut buf);
                    match feed.poll(&mut sink) {
                        Ok(FeedStatus::End) => break,
                        Ok(_) => {}
                        Err(e) => {
                            prop_assert!(matches!(e.position, Position::Record(n) if n <= 6), "{}", e);
                            break;
                        }
                    }
                }
            }
        }
    }

    // ---- Real data: ../shared/data/databento ----

    fn recording() -> Option<PathBuf> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data/databento/esh4-glbx-mdp3-20231224.mbo.dbn.zst");
        path.is_file().then_some(path)
    }

    #[test]
    fn dbn_esh4_damaged_records_are_errors_not_panics() {
        let Some(path) = recording() else {
            println!(
                "SKIPPED: ../shared/data/databento is absent; damaged DBN v1 records not checked"
            );
            return;
        };
        let mut plain = Vec::new();
        DynReader::from_file(&path)
            .expect("zstd")
            .read_to_end(&mut plain)
            .expect("decompress");
        assert_eq!(plain[3], 1, "the ESH4 file is DBN version 1");
        let metadata_len = u32::from_le_bytes([plain[4], plain[5], plain[6], plain[7]]);
        let first = 8 + metadata_len as usize;
        // (byte of the first record, new value, what the error says)
        let cases: [(usize, u8, &str); 4] = [
            // An instrument definition too short for its type: the `dbn` crate's upgrade of
            // version 1 records asserts (panics) on it.
            (1, 0x13, "not"),
            (
                0,
                15,
                "says it is 60 bytes long; a record is a multiple of 8 bytes",
            ),
            (
                0,
                16,
                "record type MBO is 56 bytes in DBN version 1, this record's header says 64",
            ),
            (1, 0x77, "not a DBN record type"),
        ];
        for (at, value, says) in cases {
            let mut bytes = plain.clone();
            bytes[first + at] = value;
            let mut feed =
                DbnFeed::from_reader("esh4", &bytes[..], DbnConfig::default()).expect("metadata");
            match drain(&mut feed).1 {
                Ok(()) if value == 0x13 => {
                    // Read as is, a definition record is skipped (counted), not upgraded.
                    assert_eq!(feed.stats().skipped, 1);
                    assert_eq!(feed.stats().records, 8_725);
                }
                Ok(()) => panic!("byte {at} = {value:#x}: no error"),
                Err(err) => {
                    assert_eq!(err.position, Position::Record(0), "{err}");
                    assert!(err.to_string().contains(says), "{value:#x}: {err}");
                }
            }
        }
    }

    #[test]
    fn dbn_esh4_mbo_recording() {
        let Some(path) = recording() else {
            println!("SKIPPED: ../shared/data/databento is absent; the ESH4 MBO file not checked");
            return;
        };
        // Independently: replay the raw records with the dbn crate into BTreeMap books
        // (price -> total size, per side) and count actions.
        let mut decoder = DbnDecoder::from_zstd_file(&path).expect("zstd DBN");
        let mut orders: BTreeMap<u64, (u8, i64, u64)> = BTreeMap::new();
        let mut levels: [BTreeMap<i64, u64>; 2] = [BTreeMap::new(), BTreeMap::new()];
        let mut actions: BTreeMap<char, u64> = BTreeMap::new();
        let mut n = 0u64;
        while let Some(record) = decoder.decode_record_ref().expect("record") {
            let m = record.get::<MboMsg>().expect("only MBO records");
            n += 1;
            *actions.entry(m.action as u8 as char).or_default() += 1;
            let book = |side: u8| usize::from(side == b'A');
            match m.action as u8 {
                b'A' => {
                    orders.insert(m.order_id, (m.side as u8, m.price, u64::from(m.size)));
                    *levels[book(m.side as u8)].entry(m.price).or_default() += u64::from(m.size);
                }
                b'C' | b'M' | b'R' => unreachable!("the file is one snapshot of adds"),
                _ => {}
            }
        }
        assert_eq!(n, 8_725);
        assert_eq!(actions, BTreeMap::from([('A', 8_725)]));
        let best_bid = levels[0]
            .last_key_value()
            .map(|(p, s)| (*p, *s))
            .expect("bids");
        let best_ask = levels[1]
            .first_key_value()
            .map(|(p, s)| (*p, *s))
            .expect("asks");

        let mut feed = DbnFeed::open(&path, DbnConfig::default()).expect("opens");
        let mut buf = [Event::default(); 64];
        let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
        let mut quotes = Vec::new();
        loop {
            let mut sink = Sink::from_slice(&mut buf);
            let status = feed.poll(&mut sink).expect("decodes");
            for e in sink.events() {
                *kinds
                    .entry(e.kind().map_or("?", EventKind::name))
                    .or_default() += 1;
                assert!(e.flags & flags::SNAPSHOT != 0, "all records are a snapshot");
                if let Some(q) = e.quote() {
                    quotes.push((*q, e.flags));
                }
            }
            if status == FeedStatus::End {
                break;
            }
        }
        let stats = feed.stats().clone();
        assert_eq!(
            (stats.records, stats.adds, stats.book_errors),
            (8_725, 8_725, 0)
        );
        assert_eq!(
            (
                stats.cancels,
                stats.modifies,
                stats.clears,
                stats.trades,
                stats.fills
            ),
            (0, 0, 0, 0, 0)
        );
        // One delta per add, and one quote: only the last record has F_LAST.
        assert_eq!(kinds, BTreeMap::from([("book_delta", 8_725), ("quote", 1)]));
        let instrument = feed
            .instruments()
            .id("ESH4")
            .expect("symbol from the metadata");
        let top = feed.book(instrument).map(OrderBook::top).expect("book");
        assert_eq!(
            (top.bid_px, top.bid_size),
            (best_bid.0, best_bid.1 * SIZE_SCALE)
        );
        assert_eq!(
            (top.ask_px, top.ask_size),
            (best_ask.0, best_ask.1 * SIZE_SCALE)
        );
        assert_eq!(quotes.len(), 1);
        assert_eq!(
            (quotes[0].0.bid_px, quotes[0].0.ask_px),
            (top.bid_px, top.ask_px)
        );
        assert!(quotes[0].1 & flags::LAST != 0);
        assert_eq!(feed.books().order_count(), orders.len());
        println!(
            "ESH4: {} records; best bid {} x {}, best ask {} x {}",
            stats.records, best_bid.0, best_bid.1, best_ask.0, best_ask.1
        );
    }
}
