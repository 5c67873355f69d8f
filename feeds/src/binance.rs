//! Binance recorded WebSocket streams: gzip text files of `<receive ns> <raw JSON>` lines,
//! decoded into quotes, trades and L2 book deltas, with the order book kept in sync by
//! Binance's update-id rules.
//!
//! # Input
//!
//! One message a line: the local receive time (ns since the Unix epoch), one space, the raw
//! JSON. The JSON is the combined-stream envelope `{"stream": "...", "data": {...}}` (a bare
//! `data` object, as a single raw stream sends it, is accepted too), or a REST depth snapshot
//! `{"lastUpdateId": ..., "bids": [...], "asks": [...]}` (futures add `E` and `T`). Fields
//! follow the public API docs ("WebSocket Streams" for spot, "Websocket Market Streams" for
//! USD-M futures):
//!
//! | message | fields used | events |
//! |---|---|---|
//! | bookTicker | `u s b B a A` (futures: `E`) | one [`Quote`], `seq = u` |
//! | trade | `E s t p q m` | one [`Trade`], `trade_id = t` |
//! | depthUpdate | `E s U u b a` (futures: `pu`) | [`BookDelta`]s, L2 |
//! | REST snapshot | `lastUpdateId bids asks` (futures: `E`) | a `Clear` and `Add`s, [`flags::SNAPSHOT`] |
//!
//! Other event types (`aggTrade`, `kline`, ...) are skipped and counted
//! ([`BinanceStats::skipped`]); blank lines too.
//!
//! # Design choices
//!
//! * **Numbers are exact.** Prices and quantities are decimal strings, converted by
//!   [`decimal`](crate::decimal) without floats: prices to 10⁻⁹, quantities to 10⁻⁸.
//! * **Timestamps.** `receive_ts` is the line's first field. `exchange_ts` is the event time
//!   `E` (ms, times 10⁶ to ns). Spot bookTicker messages and spot REST snapshots carry no
//!   event time: their `exchange_ts` is 0 and they have [`flags::BAD_TS`] (the receive time
//!   is not substituted, so latency statistics never mistake it for an exchange stamp).
//!   Trades use `E` too (not the trade time `T`, usually a millisecond earlier).
//! * **Quotes come only from bookTicker.** The book is not turned into quotes: a consumer
//!   that wants the depth book's top applies the deltas (the [`flags::LAST`] delta of a
//!   message leaves a consistent book) or reads [`BinanceFeed::book`].
//! * **Book deltas are L2 level sets** (`order_id` 0, `seq` = the message's final update id
//!   `u`): [`BookAction::Add`] a new level with its size; [`BookAction::Modify`] an existing
//!   level's new total size; [`BookAction::Cancel`] a level removed (quantity 0), `size` being
//!   the size it had. Levels that do not change (removing an absent level, setting the same
//!   size) produce no delta. The last delta of a message has [`flags::LAST`].
//! * **Update-id continuity** (Binance "How to manage a local order book correctly"). Depth
//!   updates are buffered until the instrument's REST snapshot arrives (recordings, like live
//!   clients, open the stream before fetching the snapshot). On the snapshot the book is
//!   replaced (a `Clear` then one `Add` per level, all [`flags::SNAPSHOT`]) and the buffered
//!   updates are replayed: updates older than the snapshot are dropped (spot `u <=
//!   lastUpdateId`, futures `u < lastUpdateId`), the first applied one must straddle it (spot
//!   `U <= lastUpdateId + 1 <= u`, futures `U <= lastUpdateId <= u`), and every later one must
//!   follow its predecessor (spot `U == previous u + 1`, futures `pu == previous u`; an
//!   update is futures-style when it has `pu`). Replayed events keep their own receive times,
//!   so they arrive after the snapshot's events with earlier stamps.
//! * **Gaps** are never silently continued: the book is cleared and marked unsynced, one
//!   `Clear` delta with [`flags::GAP`] is emitted (the instrument's next event), the gap is
//!   counted ([`BinanceStats::gaps`]), and updates are buffered again until the next REST
//!   snapshot line resynchronises the book. The buffer keeps the newest
//!   [`BinanceConfig::max_buffered_updates`] updates; older ones are dropped and counted, as
//!   a later snapshot supersedes them.
//! * **The snapshot's instrument.** A REST snapshot names no symbol: it belongs to
//!   [`BinanceConfig::snapshot_symbol`] if set, otherwise to the symbol of the latest depth
//!   stream message (a recording holds one symbol's depth stream).
//! * **Message size.** A depth message or snapshot can hold thousands of levels, more than a
//!   sink may ever offer, so [`max_events_per_message`](Feed::max_events_per_message) is 1:
//!   a depth message is applied to the book at once and its deltas are staged in a reused
//!   buffer and streamed over as many polls as needed; quotes and trades are written straight
//!   into the sink.
//! * **Speed.** Lines are read into one reused buffer, and the JSON is read by a small
//!   scanner for these fixed shapes (keys in any order, unknown keys skipped): no
//!   allocation per line on the hot path.
//!
//! Errors name the file and the line ([`Position::Line`]); a poll after an error resumes at
//! the next line, except after a line longer than [`MAX_LINE`], which ends the feed (the
//! rest of such a line is not read into memory).
//!
//! ```
//! use tickwire_engine::event::{Event, EventKind, PRICE_SCALE};
//! use tickwire_feeds::binance::{BinanceConfig, BinanceFeed};
//! use tickwire_feeds::{Feed, FeedStatus, Sink};
//!
//! let text = concat!(
//!     r#"1723161254087891268 {"stream":"btcusdt@bookTicker","data":{"u":5,"s":"BTCUSDT","b":"61837.63","B":"3.78826","a":"61837.64","A":"1.5"}}"#,
//!     "\n",
//!     r#"1723161254087896568 {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":9,"p":"61837.63","q":"0.02","T":1723161255342,"m":true}}"#,
//!     "\n",
//! );
//! let mut feed = BinanceFeed::from_reader("example", text.as_bytes(), BinanceConfig::default());
//! let mut buf = [Event::default(); 8];
//! let mut sink = Sink::from_slice(&mut buf);
//! while feed.poll(&mut sink).expect("valid lines") != FeedStatus::End {}
//! let events = sink.events();
//! assert_eq!(events.len(), 2);
//! assert_eq!(events[0].quote().map(|q| q.bid_px), Some(61_837_630_000_000));
//! let trade = events[1].trade().expect("a trade");
//! assert_eq!((trade.price, trade.aggressor), (61_837 * PRICE_SCALE + 630_000_000, 2)); // seller aggressed
//! assert_eq!(events[1].exchange_ts, 1_723_161_255_343_000_000);
//! assert_eq!(feed.instruments().symbol(events[1].instrument), Some("BTCUSDT"));
//! ```

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use tickwire_engine::event::{BookAction, BookDelta, Event, Quote, Side, Trade, flags};
use tickwire_engine::instrument::{InstrumentId, InstrumentRegistry};

use crate::book::OrderBook;
use crate::decimal::{DecimalError, parse_price, parse_size};
use crate::{Feed, FeedError, FeedErrorKind, FeedStatus, Position, Sink};

/// Read buffer between the gzip decoder and the line splitter: 256 KiB, so one refill holds
/// about a thousand average lines (270 bytes each in the spot BTCUSDT recording) and even the
/// largest depth line (42 KB, USD-M) several times. Not tuned: `bench/benches/binance.rs`
/// measures the whole path.
const READ_BUFFER: usize = 256 * 1024;

/// The longest line read (bytes, newline included): a full 5000-level depth snapshot is
/// ~250 KB; a longer line is an error, so a hostile file cannot make one line take all the
/// memory there is.
pub const MAX_LINE: usize = 4 * 1024 * 1024;

/// Nanoseconds per millisecond, for Binance's `E` (ms since the Unix epoch).
const NS_PER_MS: u64 = 1_000_000;

/// The reader [`BinanceFeed::open`] builds: gzip (one or more members) over a file.
pub type GzipLines = BufReader<MultiGzDecoder<File>>;

/// Configuration of a [`BinanceFeed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinanceConfig {
    /// Feed id written into each event's header. Default 0.
    pub feed_id: u16,
    /// The symbol REST depth snapshots belong to. Default `None`: the symbol of the latest
    /// depth stream message.
    pub snapshot_symbol: Option<String>,
    /// Depth updates kept per instrument while waiting for a snapshot; older ones are
    /// dropped. Default 4096: at `@100ms`, seven minutes; at `@0ms` (about 20 a second in
    /// the USD-M recording), more than three minutes.
    pub max_buffered_updates: usize,
}

impl Default for BinanceConfig {
    fn default() -> Self {
        Self {
            feed_id: 0,
            snapshot_symbol: None,
            max_buffered_updates: 4096,
        }
    }
}

/// What a [`BinanceFeed`] has seen so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BinanceStats {
    /// Lines read.
    pub lines: u64,
    /// bookTicker messages (one [`Quote`] each).
    pub quotes: u64,
    /// trade messages (one [`Trade`] each).
    pub trades: u64,
    /// depthUpdate messages read.
    pub depth_updates: u64,
    /// depthUpdate messages applied to a synced book.
    pub depth_applied: u64,
    /// depthUpdate messages dropped as older than the snapshot.
    pub depth_stale: u64,
    /// depthUpdate messages dropped from a full buffer while waiting for a snapshot.
    pub depth_dropped: u64,
    /// REST depth snapshots applied.
    pub snapshots: u64,
    /// Update-id gaps: the book was cleared and awaits a snapshot.
    pub gaps: u64,
    /// Synced updates after which the book was crossed (best bid >= best ask).
    pub crossed: u64,
    /// Blank lines and messages of other types, skipped.
    pub skipped: u64,
}

/// A Binance recording (or any reader of its line format) as a [`Feed`].
#[derive(Debug)]
pub struct BinanceFeed<R> {
    name: String,
    reader: R,
    config: BinanceConfig,
    /// The current line, reused.
    line: Vec<u8>,
    line_no: u64,
    done: bool,
    /// Levels of the message being decoded, reused.
    levels: Vec<LevelUpdate>,
    registry: InstrumentRegistry,
    /// The last symbol looked up and its id: most lines repeat the previous symbol.
    last_symbol: Vec<u8>,
    last_id: InstrumentId,
    /// Symbol of the latest depth message, for snapshots.
    last_depth_instrument: Option<InstrumentId>,
    books: DepthBooks,
    stats: BinanceStats,
}

impl BinanceFeed<GzipLines> {
    /// Opens a gzip recording; the feed's name is the path.
    pub fn open(path: impl AsRef<Path>, config: BinanceConfig) -> Result<Self, FeedError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let file = File::open(path)
            .map_err(|e| FeedError::new(&name, Position::Byte(0), FeedErrorKind::Io(e)))?;
        let reader = BufReader::with_capacity(READ_BUFFER, MultiGzDecoder::new(file));
        Ok(Self::from_reader(name, reader, config))
    }
}

impl<R: BufRead> BinanceFeed<R> {
    /// A feed over uncompressed lines from `reader`, named `name` in errors.
    pub fn from_reader(name: impl Into<String>, reader: R, config: BinanceConfig) -> Self {
        Self {
            name: name.into(),
            reader,
            config,
            line: Vec::with_capacity(64 * 1024),
            line_no: 0,
            done: false,
            levels: Vec::new(),
            registry: InstrumentRegistry::default(),
            last_symbol: Vec::new(),
            last_id: 0,
            last_depth_instrument: None,
            books: DepthBooks::default(),
            stats: BinanceStats::default(),
        }
    }

    /// Starts from `registry`: its symbols keep their ids, new ones are appended.
    pub fn with_registry(mut self, registry: InstrumentRegistry) -> Self {
        self.registry = registry;
        self.last_symbol.clear();
        self
    }

    /// The depth book of `instrument`, as of the last message read (it may be ahead of
    /// the deltas emitted so far); empty while unsynced.
    pub fn book(&self, instrument: InstrumentId) -> Option<&OrderBook> {
        self.books.states.get(instrument as usize).map(|s| &s.book)
    }

    /// Whether `instrument`'s depth book is synced to a snapshot and every update since.
    pub fn is_synced(&self, instrument: InstrumentId) -> bool {
        self.books
            .states
            .get(instrument as usize)
            .is_some_and(|s| matches!(s.sync, Sync::Synced { .. }))
    }

    /// Counters so far.
    pub fn stats(&self) -> &BinanceStats {
        &self.stats
    }

    /// Lines read so far (the number of the last line read, from 1).
    pub fn line(&self) -> u64 {
        self.line_no
    }

    fn error(&self, kind: FeedErrorKind) -> FeedError {
        FeedError::new(&self.name, Position::Line(self.line_no), kind)
    }

    /// The id of `symbol` (ASCII bytes from the message).
    fn instrument(&mut self, symbol: &[u8]) -> Result<InstrumentId, FeedError> {
        if !self.last_symbol.is_empty() && self.last_symbol == symbol {
            return Ok(self.last_id);
        }
        let text = std::str::from_utf8(symbol)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.error(malformed("symbol is empty or not UTF-8")))?;
        let id = self.registry.intern(text);
        self.last_symbol.clear();
        self.last_symbol.extend_from_slice(symbol);
        self.last_id = id;
        Ok(id)
    }

    /// Decodes the current line (in `line`, taken out of `self`).
    fn decode_line(&mut self, line: &[u8], sink: &mut Sink<'_>) -> Result<(), FeedError> {
        let line = trim_end(line);
        if line.is_empty() {
            self.stats.skipped += 1;
            return Ok(());
        }
        let space = line
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| self.error(malformed("no space after the receive time")))?;
        let receive_ts = parse_u64(&line[..space])
            .ok_or_else(|| self.error(malformed("receive time is not a u64 of digits")))?;
        let json_start = space + 1;
        let mut fields = Fields::default();
        self.levels.clear();
        let mut scanner = Scanner {
            bytes: &line[json_start..],
            pos: 0,
        };
        if let Err(e) = scanner.message(&mut fields, &mut self.levels) {
            return Err(self.error(FeedErrorKind::Malformed(e.describe(json_start))));
        }
        let exchange_ts = match fields.event_time {
            Some(ms) => Some(
                ms.checked_mul(NS_PER_MS)
                    .ok_or_else(|| self.error(malformed("event time E out of range")))?,
            ),
            None => None,
        };
        let (exchange_ts, ts_flag) = match exchange_ts {
            Some(ts) => (ts, 0),
            None => (0, flags::BAD_TS),
        };
        let feed = self.config.feed_id;

        if let Some(last_update_id) = fields.last_update_id {
            let instrument = match &self.config.snapshot_symbol {
                Some(symbol) => self.registry.intern(symbol),
                None => self.last_depth_instrument.ok_or_else(|| {
                    self.error(malformed(
                        "REST depth snapshot before any depth stream message: its symbol is \
                         unknown (set BinanceConfig::snapshot_symbol)",
                    ))
                })?,
            };
            self.stats.snapshots += 1;
            let header = Header {
                feed,
                instrument,
                exchange_ts,
                receive_ts,
                flags: ts_flag | flags::SNAPSHOT,
            };
            self.books.snapshot(
                &mut self.stats,
                &self.config,
                header,
                last_update_id,
                &self.levels,
            );
            return Ok(());
        }

        let symbol = fields
            .symbol
            .ok_or_else(|| self.error(malformed("message without symbol `s`")))?;
        match fields.event {
            Some(b"depthUpdate") => {
                let (Some(first_id), Some(final_id)) = (fields.first_id, fields.final_id) else {
                    return Err(self.error(malformed("depthUpdate without `U` or `u`")));
                };
                let instrument = self.instrument(symbol)?;
                self.last_depth_instrument = Some(instrument);
                self.stats.depth_updates += 1;
                let update = DepthUpdate {
                    header: Header {
                        feed,
                        instrument,
                        exchange_ts,
                        receive_ts,
                        flags: ts_flag,
                    },
                    first_id,
                    final_id,
                    prev_id: fields.prev_id,
                };
                self.books
                    .update(&mut self.stats, &self.config, update, &self.levels);
            }
            Some(b"trade") => {
                let (Some(trade_id), Some(price), Some(size), Some(maker)) = (
                    fields.trade_id,
                    fields.price,
                    fields.qty,
                    fields.buyer_maker,
                ) else {
                    return Err(self.error(malformed("trade without `t`, `p`, `q` or `m`")));
                };
                let price = parse_price(price).map_err(|e| self.error(decimal("p", e)))?;
                let size = parse_size(size).map_err(|e| self.error(decimal("q", e)))?;
                let instrument = self.instrument(symbol)?;
                // `m`: the buyer is the maker, so the seller crossed the spread.
                let aggressor = if maker { Side::Ask } else { Side::Bid };
                let mut event = Event::new(feed, instrument, exchange_ts, receive_ts);
                event.flags = flags::LAST | ts_flag;
                event.set_trade(Trade {
                    price,
                    size,
                    trade_id,
                    seq: 0,
                    aggressor: aggressor as u8,
                    ..Trade::default()
                });
                self.stats.trades += 1;
                sink.push(event);
            }
            None | Some(b"bookTicker") => {
                let (Some(seq), Some(bid), Some(bid_qty), Some(ask), Some(ask_qty)) = (
                    fields.final_id,
                    fields.bid_px,
                    fields.bid_qty,
                    fields.ask_px,
                    fields.ask_qty,
                ) else {
                    return Err(self.error(malformed(
                        "bookTicker without `u`, `b`, `B`, `a` or `A` (or an unknown message)",
                    )));
                };
                let quote = Quote {
                    bid_px: parse_price(bid).map_err(|e| self.error(decimal("b", e)))?,
                    ask_px: parse_price(ask).map_err(|e| self.error(decimal("a", e)))?,
                    bid_size: parse_size(bid_qty).map_err(|e| self.error(decimal("B", e)))?,
                    ask_size: parse_size(ask_qty).map_err(|e| self.error(decimal("A", e)))?,
                    seq,
                };
                let instrument = self.instrument(symbol)?;
                let mut event = Event::new(feed, instrument, exchange_ts, receive_ts);
                event.flags = flags::LAST | ts_flag;
                event.set_quote(quote);
                self.stats.quotes += 1;
                sink.push(event);
            }
            Some(_) => self.stats.skipped += 1,
        }
        Ok(())
    }
}

impl<R: BufRead + Send> Feed for BinanceFeed<R> {
    fn name(&self) -> &str {
        &self.name
    }

    /// 1: quotes and trades are one event; depth messages are staged and streamed.
    fn max_events_per_message(&self) -> usize {
        1
    }

    fn poll(&mut self, sink: &mut Sink<'_>) -> Result<FeedStatus, FeedError> {
        loop {
            if !self.books.drain(sink) {
                return Ok(FeedStatus::Active);
            }
            if self.done {
                return Ok(FeedStatus::End);
            }
            if sink.remaining() == 0 {
                return Ok(FeedStatus::Active);
            }
            let mut line = std::mem::take(&mut self.line);
            line.clear();
            let read = (&mut self.reader)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut line);
            let result = match read {
                Ok(0) => {
                    self.done = true;
                    Ok(())
                }
                Ok(n) if n == MAX_LINE && line.last() != Some(&b'\n') => {
                    self.done = true;
                    Err(FeedError::new(
                        &self.name,
                        Position::Line(self.line_no + 1),
                        FeedErrorKind::Malformed(format!(
                            "the line is longer than {} MiB, the longest a recording line may be",
                            MAX_LINE >> 20
                        )),
                    ))
                }
                Ok(_) => {
                    self.line_no += 1;
                    self.stats.lines += 1;
                    self.decode_line(&line, sink)
                }
                Err(e) => Err(FeedError::new(
                    &self.name,
                    Position::Line(self.line_no + 1),
                    FeedErrorKind::Io(e),
                )),
            };
            self.line = line;
            result?;
        }
    }

    fn instruments(&self) -> &InstrumentRegistry {
        &self.registry
    }
}

/// The header every event of one message shares.
#[derive(Debug, Clone, Copy)]
struct Header {
    feed: u16,
    instrument: InstrumentId,
    exchange_ts: u64,
    receive_ts: u64,
    flags: u8,
}

impl Header {
    fn delta(&self, flags: u8, delta: BookDelta) -> Event {
        let mut event = Event::new(
            self.feed,
            self.instrument,
            self.exchange_ts,
            self.receive_ts,
        );
        event.flags = self.flags | flags;
        event.set_book_delta(delta);
        event
    }
}

/// One `[price, quantity]` of a depth message or snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LevelUpdate {
    side: Side,
    /// 10⁻⁹ units.
    price: i64,
    /// 10⁻⁸ units; 0 removes the level.
    size: u64,
}

/// A depth message's ids.
#[derive(Debug, Clone, Copy)]
struct DepthUpdate {
    header: Header,
    /// `U`: first update id in the message.
    first_id: u64,
    /// `u`: final update id in the message.
    final_id: u64,
    /// `pu`: the previous message's final id (futures only).
    prev_id: Option<u64>,
}

/// Where an instrument's depth book is in the sync procedure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sync {
    /// No usable snapshot: updates are buffered.
    AwaitingSnapshot,
    /// Snapshot applied; the next update must straddle `last_update_id`.
    AwaitingFirst { last_update_id: u64 },
    /// In sync; the next update must follow `final_id`.
    Synced { final_id: u64 },
}

#[derive(Debug)]
struct DepthState {
    book: OrderBook,
    sync: Sync,
    buffered: VecDeque<(DepthUpdate, Vec<LevelUpdate>)>,
}

impl Default for DepthState {
    fn default() -> Self {
        Self {
            book: OrderBook::default(),
            sync: Sync::AwaitingSnapshot,
            buffered: VecDeque::new(),
        }
    }
}

/// Depth books per instrument and the deltas staged for the sink.
#[derive(Debug, Default)]
struct DepthBooks {
    states: Vec<DepthState>,
    /// Events waiting for room in a sink, written from `sent` on.
    staged: Vec<Event>,
    sent: usize,
}

/// The state of `instrument`, created if needed.
fn state_of(states: &mut Vec<DepthState>, instrument: InstrumentId) -> &mut DepthState {
    let i = instrument as usize;
    if i >= states.len() {
        states.resize_with(i + 1, DepthState::default);
    }
    &mut states[i]
}

impl DepthBooks {
    /// Moves staged events into `sink`; true when none is left.
    fn drain(&mut self, sink: &mut Sink<'_>) -> bool {
        while self.sent < self.staged.len() {
            if !sink.push(self.staged[self.sent]) {
                return false;
            }
            self.sent += 1;
        }
        self.staged.clear();
        self.sent = 0;
        true
    }

    /// Marks the last event staged since `from` as the end of its message.
    fn mark_last(&mut self, from: usize) {
        if self.staged.len() > from {
            if let Some(last) = self.staged.last_mut() {
                last.flags |= flags::LAST;
            }
        }
    }

    fn snapshot(
        &mut self,
        stats: &mut BinanceStats,
        config: &BinanceConfig,
        header: Header,
        last_update_id: u64,
        levels: &[LevelUpdate],
    ) {
        let from = self.staged.len();
        self.staged.push(header.delta(
            0,
            BookDelta {
                seq: last_update_id,
                action: BookAction::Clear as u8,
                ..BookDelta::default()
            },
        ));
        let state = state_of(&mut self.states, header.instrument);
        state.book.clear();
        for level in levels {
            state.book.side_mut(level.side).set(level.price, level.size);
        }
        state.sync = Sync::AwaitingFirst { last_update_id };
        let buffered = std::mem::take(&mut state.buffered);
        for side in [Side::Bid, Side::Ask] {
            let levels = match side {
                Side::Ask => &state.book.asks,
                _ => &state.book.bids,
            };
            for level in levels.iter() {
                self.staged.push(header.delta(
                    0,
                    BookDelta {
                        price: level.price,
                        size: level.size,
                        seq: last_update_id,
                        side: side as u8,
                        action: BookAction::Add as u8,
                        ..BookDelta::default()
                    },
                ));
            }
        }
        self.mark_last(from);
        for (update, levels) in buffered {
            self.update(stats, config, update, &levels);
        }
    }

    fn update(
        &mut self,
        stats: &mut BinanceStats,
        config: &BinanceConfig,
        update: DepthUpdate,
        levels: &[LevelUpdate],
    ) {
        let state = state_of(&mut self.states, update.header.instrument);
        let futures = update.prev_id.is_some();
        let (first, last) = (update.first_id, update.final_id);
        let expected = match state.sync {
            Sync::AwaitingSnapshot => {
                if state.buffered.len() >= config.max_buffered_updates {
                    state.buffered.pop_front();
                    stats.depth_dropped += 1;
                }
                if config.max_buffered_updates > 0 {
                    state.buffered.push_back((update, levels.to_vec()));
                } else {
                    stats.depth_dropped += 1;
                }
                return;
            }
            Sync::AwaitingFirst { last_update_id } => {
                let stale = if futures {
                    last < last_update_id
                } else {
                    last <= last_update_id
                };
                if stale {
                    stats.depth_stale += 1;
                    return;
                }
                // Spot wants lastUpdateId + 1 inside [U, u]; futures lastUpdateId itself.
                let target = if futures {
                    last_update_id
                } else {
                    last_update_id.saturating_add(1)
                };
                if first <= target && target <= last {
                    None
                } else {
                    Some(target)
                }
            }
            Sync::Synced { final_id } => match update.prev_id {
                Some(prev) if prev == final_id => None,
                Some(_) => Some(final_id),
                None if first == final_id.wrapping_add(1) => None,
                None => Some(final_id.wrapping_add(1)),
            },
        };
        if expected.is_some() {
            // A gap: clear, tell consumers, and wait for the next snapshot with this update
            // buffered (it may straddle that snapshot).
            stats.gaps += 1;
            state.book.clear();
            state.sync = Sync::AwaitingSnapshot;
            state.buffered.clear();
            state.buffered.push_back((update, levels.to_vec()));
            self.staged.push(update.header.delta(
                flags::GAP | flags::LAST,
                BookDelta {
                    seq: first,
                    action: BookAction::Clear as u8,
                    ..BookDelta::default()
                },
            ));
            return;
        }
        let from = self.staged.len();
        for level in levels {
            let old = state
                .book
                .side_mut(level.side)
                .replace(level.price, level.size);
            let (action, size) = match (old, level.size) {
                (None, 0) => continue,
                (Some(old), new) if old == new => continue,
                (None, new) => (BookAction::Add, new),
                (Some(old), 0) => (BookAction::Cancel, old),
                (Some(_), new) => (BookAction::Modify, new),
            };
            self.staged.push(update.header.delta(
                0,
                BookDelta {
                    price: level.price,
                    size,
                    seq: last,
                    side: level.side as u8,
                    action: action as u8,
                    ..BookDelta::default()
                },
            ));
        }
        state.sync = Sync::Synced { final_id: last };
        stats.depth_applied += 1;
        if state.book.is_crossed() {
            stats.crossed += 1;
        }
        self.mark_last(from);
    }
}

fn malformed(what: &str) -> FeedErrorKind {
    FeedErrorKind::Malformed(what.to_owned())
}

fn decimal(field: &str, e: DecimalError) -> FeedErrorKind {
    FeedErrorKind::Malformed(format!("field `{field}`: {e}"))
}

fn trim_end(mut line: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r' | b' ' | b'\t'] = line {
        line = rest;
    }
    line
}

/// A `u64` of ASCII digits only (at least one).
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// The fields of any of the message shapes, borrowed from the line.
#[derive(Debug, Default)]
struct Fields<'a> {
    event: Option<&'a [u8]>,
    event_time: Option<u64>,
    symbol: Option<&'a [u8]>,
    first_id: Option<u64>,
    final_id: Option<u64>,
    prev_id: Option<u64>,
    last_update_id: Option<u64>,
    bid_px: Option<&'a [u8]>,
    bid_qty: Option<&'a [u8]>,
    ask_px: Option<&'a [u8]>,
    ask_qty: Option<&'a [u8]>,
    trade_id: Option<u64>,
    price: Option<&'a [u8]>,
    qty: Option<&'a [u8]>,
    buyer_maker: Option<bool>,
}

/// A JSON syntax or value problem at a byte offset of the JSON text.
#[derive(Debug, Clone, Copy)]
struct ScanError {
    at: usize,
    what: &'static str,
    decimal: Option<DecimalError>,
}

impl ScanError {
    /// A message naming the 1-based column in the whole line.
    fn describe(&self, json_start: usize) -> String {
        let column = json_start + self.at + 1;
        match self.decimal {
            Some(e) => format!("{} at column {column}: {e}", self.what),
            None => format!("{} at column {column}", self.what),
        }
    }
}

/// Nesting allowed in skipped values, far above anything Binance sends.
const MAX_SKIP_DEPTH: usize = 64;

/// A minimal JSON reader for Binance's message shapes. Strings are borrowed raw: the fields
/// read (symbols, decimals, event types) never contain escapes, and one that does is not a
/// valid value for them anyway.
struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn fail<T>(&self, what: &'static str) -> Result<T, ScanError> {
        Err(ScanError {
            at: self.pos,
            what,
            decimal: None,
        })
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), ScanError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            self.fail(what)
        }
    }

    /// The whole message: one object, then only whitespace.
    fn message(
        &mut self,
        fields: &mut Fields<'a>,
        levels: &mut Vec<LevelUpdate>,
    ) -> Result<(), ScanError> {
        self.ws();
        self.object(fields, levels, 0)?;
        self.ws();
        if self.pos != self.bytes.len() {
            return self.fail("trailing bytes after the JSON object");
        }
        Ok(())
    }

    /// An object's known keys into `fields`; `data` recurses once (the envelope).
    fn object(
        &mut self,
        fields: &mut Fields<'a>,
        levels: &mut Vec<LevelUpdate>,
        depth: usize,
    ) -> Result<(), ScanError> {
        self.expect(b'{', "expected `{`")?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.ws();
            self.expect(b':', "expected `:`")?;
            self.ws();
            match key {
                b"data" if depth == 0 && self.peek() == Some(b'{') => {
                    self.object(fields, levels, depth + 1)?;
                }
                b"e" => fields.event = Some(self.string()?),
                b"E" => fields.event_time = Some(self.number()?),
                b"s" => fields.symbol = Some(self.string()?),
                b"U" => fields.first_id = Some(self.number()?),
                b"u" => fields.final_id = Some(self.number()?),
                b"pu" => fields.prev_id = Some(self.number()?),
                b"lastUpdateId" => fields.last_update_id = Some(self.number()?),
                b"t" => fields.trade_id = Some(self.number()?),
                b"p" => fields.price = Some(self.string()?),
                b"q" => fields.qty = Some(self.string()?),
                b"m" => fields.buyer_maker = Some(self.boolean()?),
                b"B" => fields.bid_qty = Some(self.string()?),
                b"A" => fields.ask_qty = Some(self.string()?),
                b"b" | b"bids" | b"a" | b"asks" => {
                    let side = if key[0] == b'b' { Side::Bid } else { Side::Ask };
                    if self.peek() == Some(b'[') {
                        self.levels(side, levels)?;
                    } else if side == Side::Bid {
                        fields.bid_px = Some(self.string()?);
                    } else {
                        fields.ask_px = Some(self.string()?);
                    }
                }
                _ => self.skip_value()?,
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return self.fail("expected `,` or `}`"),
            }
        }
    }

    /// `[["price","qty"], ...]` into `levels`.
    fn levels(&mut self, side: Side, levels: &mut Vec<LevelUpdate>) -> Result<(), ScanError> {
        self.expect(b'[', "expected `[`")?;
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.ws();
            self.expect(b'[', "expected `[` opening a level")?;
            self.ws();
            let at = self.pos;
            let price = parse_price(self.string()?).map_err(|e| ScanError {
                at,
                what: "bad level price",
                decimal: Some(e),
            })?;
            self.ws();
            self.expect(b',', "expected `,` in a level")?;
            self.ws();
            let at = self.pos;
            let size = parse_size(self.string()?).map_err(|e| ScanError {
                at,
                what: "bad level quantity",
                decimal: Some(e),
            })?;
            self.ws();
            // Tolerate extra elements (old API versions sent a third, ignored one).
            while self.peek() == Some(b',') {
                self.pos += 1;
                self.ws();
                self.skip_value()?;
                self.ws();
            }
            self.expect(b']', "expected `]` closing a level")?;
            levels.push(LevelUpdate { side, price, size });
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return self.fail("expected `,` or `]` in levels"),
            }
        }
    }

    /// A string without escapes, borrowed.
    #[inline]
    fn string(&mut self) -> Result<&'a [u8], ScanError> {
        self.expect(b'"', "expected a string")?;
        let start = self.pos;
        let rest = &self.bytes[start..];
        match rest.iter().position(|&b| b == b'"' || b == b'\\') {
            Some(n) if rest[n] == b'"' => {
                self.pos = start + n + 1;
                Ok(&rest[..n])
            }
            Some(n) => {
                self.pos = start + n;
                self.fail("escape in a string field")
            }
            None => {
                self.pos = self.bytes.len();
                self.fail("unterminated string")
            }
        }
    }

    /// An unsigned integer.
    #[inline]
    fn number(&mut self) -> Result<u64, ScanError> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        match parse_u64(&self.bytes[start..self.pos]) {
            Some(n) => Ok(n),
            None => {
                self.pos = start;
                self.fail("expected an unsigned integer that fits u64")
            }
        }
    }

    fn boolean(&mut self) -> Result<bool, ScanError> {
        let rest = &self.bytes[self.pos..];
        if rest.starts_with(b"true") {
            self.pos += 4;
            Ok(true)
        } else if rest.starts_with(b"false") {
            self.pos += 5;
            Ok(false)
        } else {
            self.fail("expected true or false")
        }
    }

    /// Skips any value (strings with escapes, nested containers, scalars), leniently.
    fn skip_value(&mut self) -> Result<(), ScanError> {
        match self.peek() {
            Some(b'"') => self.skip_string(),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                loop {
                    match self.peek() {
                        Some(b'"') => {
                            self.skip_string()?;
                            continue;
                        }
                        Some(b'{' | b'[') => {
                            depth += 1;
                            if depth > MAX_SKIP_DEPTH {
                                return self.fail("nesting too deep");
                            }
                        }
                        Some(b'}' | b']') => {
                            depth -= 1;
                            if depth == 0 {
                                self.pos += 1;
                                return Ok(());
                            }
                        }
                        Some(_) => {}
                        None => return self.fail("unterminated object or array"),
                    }
                    self.pos += 1;
                }
            }
            _ => {
                let start = self.pos;
                while self.peek().is_some_and(|b| {
                    !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')
                }) {
                    self.pos += 1;
                }
                if self.pos == start {
                    return self.fail("expected a value");
                }
                Ok(())
            }
        }
    }

    fn skip_string(&mut self) -> Result<(), ScanError> {
        self.expect(b'"', "expected a string")?;
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => return Ok(()),
                b'\\' => self.pos += 1,
                _ => {}
            }
        }
        self.pos = self.bytes.len();
        self.fail("unterminated string")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Read;
    use std::path::PathBuf;

    use proptest::prelude::*;
    use tickwire_engine::event::{EventKind, PRICE_SCALE, SIZE_SCALE};

    use super::*;

    fn feed(text: &str) -> BinanceFeed<&[u8]> {
        BinanceFeed::from_reader("test", text.as_bytes(), BinanceConfig::default())
    }

    /// Polls to the end with sinks of `slots` events; panics on an error.
    fn drain<R: BufRead + Send>(feed: &mut BinanceFeed<R>, slots: usize) -> Vec<Event> {
        let mut all = Vec::new();
        let mut buf = vec![Event::default(); slots];
        loop {
            let mut sink = Sink::from_slice(&mut buf);
            let status = feed.poll(&mut sink).expect("valid input");
            all.extend_from_slice(sink.events());
            if status == FeedStatus::End {
                return all;
            }
        }
    }

    fn depth(u_first: u64, u_last: u64, bids: &str, asks: &str) -> String {
        format!(
            r#"1000 {{"stream":"x@depth","data":{{"e":"depthUpdate","E":2,"s":"XUSDT","U":{u_first},"u":{u_last},"b":[{bids}],"a":[{asks}]}}}}"#
        )
    }

    fn futures_depth(u_first: u64, u_last: u64, pu: u64, bids: &str) -> String {
        format!(
            r#"1000 {{"stream":"x@depth@0ms","data":{{"e":"depthUpdate","E":2,"T":2,"s":"XUSDT","U":{u_first},"u":{u_last},"pu":{pu},"b":[{bids}],"a":[]}}}}"#
        )
    }

    fn snapshot(last_update_id: u64, bids: &str, asks: &str) -> String {
        format!(r#"1001 {{"lastUpdateId":{last_update_id},"bids":[{bids}],"asks":[{asks}]}}"#)
    }

    fn deltas(events: &[Event]) -> Vec<(u8, u8, i64, u64, u8)> {
        events
            .iter()
            .filter_map(|e| {
                e.book_delta()
                    .map(|d| (d.action, d.side, d.price / PRICE_SCALE, d.size, e.flags))
            })
            .collect()
    }

    const ADD: u8 = BookAction::Add as u8;
    const MODIFY: u8 = BookAction::Modify as u8;
    const CANCEL: u8 = BookAction::Cancel as u8;
    const CLEAR: u8 = BookAction::Clear as u8;
    const BID: u8 = Side::Bid as u8;
    const ASK: u8 = Side::Ask as u8;

    #[test]
    fn a_line_longer_than_the_limit_is_an_error_after_the_lines_before_it() {
        let good = concat!(
            r#"10 {"stream":"btcusdt@bookTicker","data":{"u":7,"s":"BTCUSDT","b":"1.5","B":"2","a":"1.6","A":"1"}}"#,
            "\n",
        );
        // A line of 16 MiB without a newline: read whole, it would be held in memory whole.
        let reader = std::io::BufReader::new(
            good.as_bytes()
                .chain(std::io::repeat(b'1').take(4 * MAX_LINE as u64)),
        );
        let mut f = BinanceFeed::from_reader("long", reader, BinanceConfig::default());
        let (events, end) = crate::test_util::drain(&mut f, 4);
        let err = end.expect_err("the long line was accepted");
        assert_eq!(
            events.len(),
            1,
            "the quote before the long line is delivered"
        );
        assert_eq!(err.position, Position::Line(2), "{err}");
        assert!(err.to_string().contains("longer than 4 MiB"), "{err}");
        assert!(
            f.line.capacity() <= 2 * MAX_LINE,
            "the line buffer stayed bounded"
        );
    }

    #[test]
    fn quotes_and_trades_carry_exact_values_and_timestamps() {
        let text = concat!(
            r#"10 {"stream":"btcusdt@bookTicker","data":{"u":7,"s":"BTCUSDT","b":"1.5","B":"2","a":"1.6","A":"0.00000001"}}"#,
            "\n",
            r#"11 {"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":8,"s":"BTCUSDT","b":"1.5","B":"2","a":"1.6","A":"3","T":5,"E":6}}"#,
            "\r\n\n",
            r#"12 {"stream":"ethusdt@trade","data":{"e":"trade","E":3,"s":"ETHUSDT","t":42,"p":"2683.81","q":"0.5","X":"MARKET","m":false,"M":true}}"#,
        );
        let mut f = feed(text);
        let events = drain(&mut f, 4);
        assert_eq!(events.len(), 3);
        let q = events[0].quote().expect("quote");
        assert_eq!(
            *q,
            Quote {
                bid_px: 1_500_000_000,
                ask_px: 1_600_000_000,
                bid_size: 2 * SIZE_SCALE,
                ask_size: 1,
                seq: 7
            }
        );
        assert_eq!(
            events[0].flags,
            flags::LAST | flags::BAD_TS,
            "spot bookTicker has no E"
        );
        assert_eq!((events[0].exchange_ts, events[0].receive_ts), (0, 10));
        assert_eq!(events[1].flags, flags::LAST);
        assert_eq!(events[1].exchange_ts, 6 * NS_PER_MS);
        let t = events[2].trade().expect("trade");
        assert_eq!(
            (t.price, t.size, t.trade_id),
            (2_683_810_000_000, SIZE_SCALE / 2, 42)
        );
        assert_eq!(
            t.aggressor,
            Side::Bid as u8,
            "buyer is taker: buyer aggressed"
        );
        assert_eq!(
            f.instruments().symbol(events[2].instrument),
            Some("ETHUSDT")
        );
        assert_eq!(
            f.instruments().symbol(events[0].instrument),
            Some("BTCUSDT")
        );
        assert_eq!((f.stats().lines, f.stats().skipped), (4, 1));
    }

    #[test]
    fn depth_buffers_until_the_snapshot_then_follows_update_ids() {
        let lines = [
            depth(1, 5, r#"["9","1"]"#, ""), // older than the snapshot: dropped
            depth(6, 12, r#"["10","2"],["8","0"]"#, r#"["12","0"]"#), // straddles 11
            snapshot(10, r#"["10","1"],["8","4"]"#, r#"["11","5"],["12","6"]"#),
            depth(13, 14, r#"["10","2"],["7","0"]"#, r#"["11.5","1"]"#),
        ];
        let text = lines.join("\n");
        let mut f = feed(&text);
        let events = drain(&mut f, 3);
        let snap = flags::SNAPSHOT | flags::BAD_TS;
        assert_eq!(
            deltas(&events),
            [
                (CLEAR, 0, 0, 0, snap),
                (ADD, BID, 10, SIZE_SCALE, snap),
                (ADD, BID, 8, 4 * SIZE_SCALE, snap),
                (ADD, ASK, 11, 5 * SIZE_SCALE, snap),
                (ADD, ASK, 12, 6 * SIZE_SCALE, snap | flags::LAST),
                // Replayed 6..=12: 10 modified, 8 removed (had 4), ask 12 removed (had 6).
                (MODIFY, BID, 10, 2 * SIZE_SCALE, 0),
                (CANCEL, BID, 8, 4 * SIZE_SCALE, 0),
                (CANCEL, ASK, 12, 6 * SIZE_SCALE, flags::LAST),
                // 13..=14: bid 10 unchanged and bid 7 absent: no delta; ask 11.5 added.
                (ADD, ASK, 11, SIZE_SCALE, flags::LAST),
            ]
        );
        assert_eq!(
            events[8].book_delta().map(|d| d.price),
            Some(11_500_000_000)
        );
        assert_eq!(events[8].book_delta().map(|d| d.seq), Some(14));
        let stats = f.stats();
        assert_eq!(
            (stats.depth_updates, stats.depth_applied, stats.depth_stale),
            (3, 2, 1)
        );
        assert_eq!((stats.gaps, stats.crossed), (0, 0));
        assert!(f.is_synced(0));
        let top = f.book(0).map(OrderBook::top).expect("book");
        assert_eq!(
            (top.bid_px, top.ask_px),
            (10 * PRICE_SCALE, 11 * PRICE_SCALE)
        );
        assert_eq!(f.book(0).map(|b| b.bids.len()), Some(1));
    }

    #[test]
    fn a_gap_clears_flags_and_waits_for_the_next_snapshot() {
        let lines = [
            snapshot(0, "", ""), // before any depth line: its symbol comes from the config
            depth(1, 2, r#"["10","1"]"#, r#"["11","1"]"#),
            depth(4, 5, r#"["9","1"]"#, ""), // 3 is missing
            depth(6, 7, r#"["8","1"]"#, ""),
            snapshot(6, r#"["9.5","1"]"#, r#"["12","1"]"#),
            depth(8, 9, r#"["9","2"]"#, ""),
        ];
        let config = BinanceConfig {
            snapshot_symbol: Some("XUSDT".into()),
            ..BinanceConfig::default()
        };
        let text = lines.join("\n");
        let mut f = BinanceFeed::from_reader("gap", text.as_bytes(), config);
        let events = drain(&mut f, 1);
        let gap: Vec<_> = events
            .iter()
            .filter(|e| e.flags & flags::GAP != 0)
            .collect();
        assert_eq!(gap.len(), 1);
        assert_eq!(
            gap[0].book_delta().map(|d| (d.action, d.seq)),
            Some((CLEAR, 4))
        );
        assert_eq!(f.stats().gaps, 1);
        // 4..=5 was buffered and is stale for the second snapshot; 6..=7 straddles 7.
        assert_eq!(f.stats().depth_stale, 1);
        assert_eq!(f.stats().depth_applied, 3);
        assert!(f.is_synced(0));
        let top = f.book(0).map(OrderBook::top).expect("book");
        assert_eq!((top.bid_px, top.bid_size), (9_500_000_000, SIZE_SCALE));
        assert_eq!(f.book(0).map(|b| b.bids.len()), Some(3));
    }

    #[test]
    fn a_gap_leaves_the_book_empty_and_unsynced() {
        let lines = [
            depth(1, 1, "", ""),
            snapshot(1, r#"["10","1"]"#, r#"["11","1"]"#),
            depth(2, 2, r#"["10","2"]"#, ""),
            depth(9, 9, r#"["10","3"]"#, ""),
            depth(10, 10, r#"["10","4"]"#, ""),
        ];
        let text = lines.join("\n");
        let mut f = feed(&text);
        let events = drain(&mut f, 16);
        assert_eq!(f.stats().gaps, 1);
        assert!(!f.is_synced(0));
        assert!(
            f.book(0)
                .is_some_and(|b| b.bids.is_empty() && b.asks.is_empty())
        );
        let last = events.last().expect("events");
        assert_eq!(last.flags, flags::GAP | flags::LAST);
    }

    #[test]
    fn futures_follow_pu_and_the_straddle_rule() {
        let lines = [
            futures_depth(90, 95, 89, r#"["1","1"]"#), // u < 100: stale
            futures_depth(96, 100, 95, r#"["2","1"]"#), // straddles 100
            snapshot(100, r#"["1","5"]"#, r#"["3","1"]"#),
            futures_depth(101, 110, 100, r#"["1","0"]"#),
            futures_depth(115, 120, 111, ""), // pu != 110: gap
        ];
        let text = lines.join("\n");
        let mut f = feed(&text);
        let events = drain(&mut f, 2);
        assert_eq!(f.stats().depth_stale, 1);
        assert_eq!(f.stats().depth_applied, 2);
        assert_eq!(f.stats().gaps, 1);
        assert!(events.last().is_some_and(|e| e.flags & flags::GAP != 0));
        assert!(deltas(&events).contains(&(CANCEL, BID, 1, 5 * SIZE_SCALE, flags::LAST)));
    }

    #[test]
    fn errors_name_the_file_and_line_and_the_next_poll_goes_on() {
        let text = concat!(
            r#"1 {"stream":"s","data":{"u":1,"s":"X","b":"1","B":"1","a":"2","A":"1"}}"#,
            "\n",
            r#"2 {"stream":"s","data":{"u":1,"s":"X","b":"1.0000000001","B":"1","a":"2","A":"1"}}"#,
            "\n",
            r#"3 {"stream":"s","data":{"u":1,"s":"X","b":"1","B":"1","a":"2","A":"1"}}"#,
        );
        let mut f = feed(text);
        let mut buf = [Event::default(); 8];
        let mut sink = Sink::from_slice(&mut buf);
        let err = f.poll(&mut sink).expect_err("line 2 is bad");
        assert_eq!(sink.written(), 1, "line 1 is kept");
        assert_eq!(err.position, Position::Line(2));
        let text = err.to_string();
        assert!(
            text.starts_with("test: line 2: malformed: field `b`"),
            "{text}"
        );
        assert!(text.contains("more than 9 significant decimals"), "{text}");
        assert_eq!(f.poll(&mut sink).expect("line 3 is fine"), FeedStatus::End);
        assert_eq!(sink.written(), 2);

        let mut f = feed(r#"5 {"lastUpdateId":1,"bids":[],"asks":[]}"#);
        let err = f.poll(&mut sink).expect_err("snapshot of unknown symbol");
        assert!(err.to_string().contains("snapshot_symbol"), "{err}");
    }

    #[test]
    fn staged_deltas_stream_through_one_slot_sinks() {
        let bids: Vec<String> = (1..=300).map(|p| format!(r#"["{p}","1"]"#)).collect();
        let lines = [
            depth(1, 1, "", ""),
            snapshot(1, &bids.join(","), r#"["400","1"]"#),
        ];
        let text = lines.join("\n");
        let mut f = feed(&text);
        let events = drain(&mut f, 1);
        assert_eq!(events.len(), 302);
        assert_eq!(
            events.iter().filter(|e| e.flags & flags::LAST != 0).count(),
            1
        );
        assert!(events[301].flags & flags::LAST != 0);
    }

    fn line_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(depth(1, 2, r#"["10.5","1"],["9","0"]"#, r#"["11","2"]"#)),
            Just(snapshot(1, r#"["10","1"]"#, r#"["11","1"]"#)),
            Just(futures_depth(3, 4, 2, r#"["10","1"]"#)),
            Just(
                r#"7 {"stream":"s@trade","data":{"e":"trade","E":1,"s":"X","t":1,"p":"1.5","q":"2","T":1,"m":true}}"#
                    .to_owned()
            ),
            Just(r#"8 {"stream":"s","data":{"u":1,"s":"X","b":"1","B":"1","a":"2","A":"1"}}"#.to_owned()),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_errors_name_a_line(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
            let mut f = BinanceFeed::from_reader("fuzz", &bytes[..], BinanceConfig::default());
            let mut buf = [Event::default(); 4];
            for _ in 0..1000 {
                let mut sink = Sink::from_slice(&mut buf);
                match f.poll(&mut sink) {
                    Ok(FeedStatus::End) => break,
                    Ok(_) => {}
                    Err(e) => {
                        prop_assert_eq!(&e.feed, "fuzz");
                        prop_assert!(matches!(e.position, Position::Line(n) if n >= 1 && n <= lines));
                    }
                }
            }
        }

        #[test]
        fn truncated_and_corrupted_lines_fail_on_their_line(
            good in proptest::collection::vec(line_strategy(), 1..4),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            // Valid lines, then one truncated (and maybe corrupted) line.
            let victim = &good[0];
            let mut bad = victim.as_bytes()[..cut.index(victim.len())].to_vec();
            if !bad.is_empty() {
                let i = flip.index(bad.len());
                bad[i] = if byte == b'\n' { b'x' } else { byte };
            }
            let mut text = good.join("\n").into_bytes();
            text.push(b'\n');
            text.extend_from_slice(&bad);
            let bad_line = good.len() as u64 + 1;
            let mut f = BinanceFeed::from_reader("cut", &text[..], BinanceConfig {
                snapshot_symbol: Some("X".into()),
                ..BinanceConfig::default()
            });
            let mut buf = [Event::default(); 2];
            for _ in 0..1000 {
                let mut sink = Sink::from_slice(&mut buf);
                match f.poll(&mut sink) {
                    Ok(FeedStatus::End) => break,
                    Ok(_) => {}
                    Err(e) => prop_assert_eq!(e.position, Position::Line(bad_line), "{}", e),
                }
            }
        }
    }

    // ---- Real data: the recordings in ../shared/data/binance ----

    fn data_dir() -> Option<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/binance");
        dir.is_dir().then_some(dir)
    }

    /// A decimal string in units of 10^-`decimals`, by string surgery (independent of
    /// `crate::decimal`).
    fn fixed(text: &str, decimals: usize) -> i128 {
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        let frac = frac.trim_end_matches('0');
        assert!(frac.len() <= decimals, "{text}");
        format!("{int}{frac:0<decimals$}").parse().expect("digits")
    }

    type Side2 = BTreeMap<i64, u64>;

    /// What the test expects from a recording, computed with serde_json and BTreeMaps.
    #[derive(Default)]
    struct Expected {
        quotes: u64,
        trades: u64,
        depth: u64,
        bids: Side2,
        asks: Side2,
        /// `Some(last_update_id, synced_final_id)` once a snapshot arrived.
        sync: Option<(u64, Option<u64>)>,
        buffered: Vec<serde_json::Value>,
        gaps: u64,
    }

    impl Expected {
        fn set(&mut self, side: &str, levels: &serde_json::Value) {
            let book = if side == "b" {
                &mut self.bids
            } else {
                &mut self.asks
            };
            for level in levels.as_array().expect("levels") {
                let price = fixed(level[0].as_str().expect("price"), 9) as i64;
                let size = fixed(level[1].as_str().expect("qty"), 8) as u64;
                if size == 0 {
                    book.remove(&price);
                } else {
                    book.insert(price, size);
                }
            }
        }

        fn depth_update(&mut self, data: serde_json::Value) {
            let Some((last_update_id, synced)) = self.sync else {
                self.buffered.push(data);
                return;
            };
            let first = data["U"].as_u64().expect("U");
            let last = data["u"].as_u64().expect("u");
            let pu = data.get("pu").and_then(serde_json::Value::as_u64);
            let apply = match (synced, pu) {
                (None, None) if last <= last_update_id => return,
                (None, Some(_)) if last < last_update_id => return,
                (None, None) => first <= last_update_id + 1 && last_update_id < last,
                (None, Some(_)) => first <= last_update_id && last_update_id <= last,
                (Some(prev), None) => first == prev + 1,
                (Some(prev), Some(pu)) => pu == prev,
            };
            if !apply {
                self.gaps += 1;
                return;
            }
            self.set("b", &data["b"]);
            self.set("a", &data["a"]);
            self.sync = Some((last_update_id, Some(last)));
        }

        fn line(&mut self, line: &str) {
            let (_, json) = line.split_once(' ').expect("two fields");
            let v: serde_json::Value = serde_json::from_str(json).expect("JSON");
            if let Some(id) = v.get("lastUpdateId") {
                self.bids.clear();
                self.asks.clear();
                self.set("b", &v["bids"]);
                self.set("a", &v["asks"]);
                self.sync = Some((id.as_u64().expect("id"), None));
                for data in std::mem::take(&mut self.buffered) {
                    self.depth_update(data);
                }
                return;
            }
            let stream = v["stream"].as_str().expect("stream").to_owned();
            if stream.ends_with("@bookTicker") {
                self.quotes += 1;
            } else if stream.ends_with("@trade") {
                self.trades += 1;
            } else if stream.contains("@depth") {
                self.depth += 1;
                self.depth_update(v["data"].clone());
            }
        }
    }

    /// Replays `file` through the adapter and the independent model and compares them.
    fn check_recording(file: &str, quotes: u64, trades: u64, depth: u64) {
        let Some(dir) = data_dir() else {
            println!("SKIPPED: ../shared/data/binance is absent; {file} not checked");
            return;
        };
        let path = dir.join(file);

        let mut expected = Expected::default();
        let mut text = String::new();
        MultiGzDecoder::new(File::open(&path).expect("recording"))
            .read_to_string(&mut text)
            .expect("gzip text");
        for line in text.lines() {
            expected.line(line);
        }
        assert_eq!(
            (expected.quotes, expected.trades, expected.depth),
            (quotes, trades, depth)
        );
        assert_eq!(expected.gaps, 0, "the recording has no update-id gap");

        let mut f = BinanceFeed::open(&path, BinanceConfig::default()).expect("opens");
        // One-slot sinks: after each poll at most one line was decoded, so the book is
        // checked after every message.
        let mut buf = [Event::default(); 1];
        let (mut quotes_seen, mut trades_seen) = (0, 0);
        let (mut bids, mut asks) = (Side2::new(), Side2::new());
        let mut last_receive = 0;
        loop {
            let mut sink = Sink::from_slice(&mut buf);
            let status = f.poll(&mut sink).expect("the recording decodes");
            for event in sink.events() {
                match event.kind() {
                    Some(EventKind::Quote) => quotes_seen += 1,
                    Some(EventKind::Trade) => trades_seen += 1,
                    Some(EventKind::BookDelta) => {
                        let d = event.book_delta().expect("delta");
                        let side = if d.side == BID { &mut bids } else { &mut asks };
                        match BookAction::from_code(d.action) {
                            Some(BookAction::Clear) => {
                                bids.clear();
                                asks.clear();
                            }
                            Some(BookAction::Add) => {
                                assert_eq!(side.insert(d.price, d.size), None);
                            }
                            Some(BookAction::Modify) => {
                                assert!(side.insert(d.price, d.size).is_some());
                            }
                            Some(BookAction::Cancel) => {
                                assert_eq!(side.remove(&d.price), Some(d.size));
                            }
                            other => panic!("unexpected action {other:?}"),
                        }
                        if event.flags & flags::LAST != 0 {
                            let crossed = matches!(
                                (bids.last_key_value(), asks.first_key_value()),
                                (Some((b, _)), Some((a, _))) if b >= a
                            );
                            assert!(!crossed, "book from deltas crossed, line {}", f.line());
                        }
                    }
                    other => panic!("unexpected kind {other:?}"),
                }
                assert_eq!(event.flags & flags::GAP, 0, "no gap expected");
                last_receive = event.receive_ts;
            }
            let synced = f.is_synced(0);
            let book = f.book(0);
            if synced {
                assert!(
                    book.is_some_and(|b| !b.is_crossed()),
                    "crossed at line {}",
                    f.line()
                );
            }
            if status == FeedStatus::End {
                break;
            }
        }
        assert!(last_receive > 0);
        let stats = f.stats().clone();
        assert_eq!((quotes_seen, trades_seen), (quotes, trades));
        assert_eq!(
            (stats.quotes, stats.trades, stats.depth_updates),
            (quotes, trades, depth)
        );
        assert_eq!(stats.depth_applied + stats.depth_stale, depth, "{stats:?}");
        assert_eq!((stats.gaps, stats.crossed, stats.depth_dropped), (0, 0, 0));
        assert_eq!(stats.snapshots, 1);
        assert!(f.is_synced(0));

        // The adapter's book, the book rebuilt from its deltas and the model all agree.
        let book = f.book(0).expect("book");
        let adapter_bids: Side2 = book.bids.iter().map(|l| (l.price, l.size)).collect();
        let adapter_asks: Side2 = book.asks.iter().map(|l| (l.price, l.size)).collect();
        assert_eq!(adapter_bids, expected.bids);
        assert_eq!(adapter_asks, expected.asks);
        assert_eq!((bids, asks), (expected.bids.clone(), expected.asks.clone()));
        let top = book.top();
        let best_bid = expected.bids.last_key_value().expect("bids");
        let best_ask = expected.asks.first_key_value().expect("asks");
        assert_eq!(
            (top.bid_px, top.bid_size, top.ask_px, top.ask_size),
            (*best_bid.0, *best_bid.1, *best_ask.0, *best_ask.1)
        );
        println!(
            "{file}: {quotes} quotes, {trades} trades, {depth} depth updates ({} applied, {} \
             older than the snapshot); final top {} x {} / {} x {}",
            stats.depth_applied,
            stats.depth_stale,
            top.bid_px,
            top.bid_size,
            top.ask_px,
            top.ask_size
        );
    }

    #[test]
    fn binance_spot_btcusdt_recording() {
        check_recording("spot_btcusdt_20240808.gz", 28_040, 9_757, 3_451);
    }

    #[test]
    fn binance_spot_ethusdt_recording() {
        check_recording("spot_ethusdt_20240808.gz", 24_077, 6_106, 3_434);
    }

    #[test]
    fn binance_usdm_btcusdt_recording() {
        check_recording("usdm_btcusdt_20240808.gz", 66_089, 21_313, 6_551);
    }
}
