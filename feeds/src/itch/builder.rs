//! From ITCH messages to tickwire events: per-stock order books, book deltas, quotes,
//! trades and trading status.
//!
//! [`ItchBookBuilder`] is the sans-IO core both ITCH feeds share: it takes one decoded
//! [`Message`] at a time and writes its events into a [`Sink`]. What each message becomes:
//!
//! | ITCH | events |
//! |------|--------|
//! | `R` stock directory | none; registers the symbol (trimmed) and maps its locate code |
//! | `A`/`F` add order | `BookDelta` Add, then a `Quote` if the top changed |
//! | `E` executed | `BookDelta` Fill at the order's price, `Trade` at the order's price, `Quote`? |
//! | `C` executed with price | `BookDelta` Fill at the order's price, `Trade` at the execution price if printable, `Quote`? |
//! | `X` cancel | `BookDelta` Cancel of the cancelled shares, `Quote`? |
//! | `D` delete | `BookDelta` Cancel of the remaining shares, `Quote`? |
//! | `U` replace | `BookDelta` Cancel of the old order, `BookDelta` Add of the new, `Quote`? |
//! | `P` trade (non-cross) | `Trade` (aggressor unknown: `Side::None`) |
//! | `Q` cross trade | `Trade` (aggressor `Side::None`) |
//! | `H` trading action | `Status` with the trading state and reason |
//! | anything else | none (`B` broken trades are counted in [`BuildStats`]) |
//!
//! So one message makes at most [`MAX_EVENTS_PER_MESSAGE`] = 3 events (`E`, `C`, `U`),
//! and the last event of each message carries [`flags::LAST`]. A replace is a cancel and
//! an add rather than one `Modify` because ITCH gives the new order a new reference number:
//! an order-by-order consumer needs both ids. A trade's aggressor is the opposite of the
//! resting order's side (a resting bid executed means a seller hit it).
//!
//! **Mismatches** — an execute, cancel, delete or replace of an order the book does not
//! hold, an add reusing a live reference number, or more shares removed than the order
//! has — happen when a live feed is joined late or lost packets. By default
//! ([`MismatchPolicy::Skip`]) the message is skipped, produces no event and is counted in
//! [`BuildStats`]; with [`MismatchPolicy::Fail`] it is an error. Either way the books are
//! left as they were before the message.
//!
//! ```
//! use tickwire_engine::event::{flags, Event, EventKind};
//! use tickwire_feeds::Sink;
//! use tickwire_feeds::itch::{decode, ItchBookBuilder, ItchConfig};
//! use tickwire_feeds::itch::messages::{AddOrderData, Header, MessageData};
//!
//! let mut builder = ItchBookBuilder::new(ItchConfig::default());
//! let add = MessageData::AddOrder(AddOrderData {
//!     header: Header { stock_locate: 1, tracking_number: 0, timestamp: 1_000 },
//!     order_ref: 5, side: b'B', shares: 100, stock: *b"AAPL    ", price: 1_500_000,
//! });
//! let mut bytes = Vec::new();
//! add.encode(&mut bytes)?;
//! let mut slots = [Event::default(); 3];
//! let mut sink = Sink::from_slice(&mut slots);
//! builder.apply(&decode(&bytes)?, 1, 0, &mut sink)?;
//! let events = sink.events();
//! assert_eq!(events.len(), 2); // the add, and the new top of book
//! assert_eq!(events[1].kind(), Some(EventKind::Quote));
//! assert_eq!(events[1].quote().map(|q| q.bid_px), Some(150_000_000_000));
//! assert_eq!(events[1].flags & flags::LAST, flags::LAST);
//! assert_eq!(builder.instruments().symbol(events[0].instrument), Some("AAPL"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use tickwire_engine::event::{
    BookAction, BookDelta, Event, Quote, Side, Status, Trade as TradeBody, flags,
};
use tickwire_engine::instrument::{InstrumentId, InstrumentRegistry};

use super::messages::{
    AddOrder, AddOrderMpid, DecodeError, Message, OrderCancel, OrderDelete, OrderExecuted,
    OrderExecutedWithPrice, OrderReplace, Trade, decode, price4, shares, shares64, side,
    trim_alpha,
};
use crate::Sink;
use crate::book::{BookError, OrderBooks, RestingOrder};

/// The most events one ITCH message produces: an execution's fill, trade and new top, or a
/// replace's cancel, add and new top.
pub const MAX_EVENTS_PER_MESSAGE: usize = 3;

/// Locate codes are 2 bytes (ITCH 5.0 §4), so a table of every one is 65 536 entries.
const LOCATE_CODES: usize = 1 << 16;

/// Marks a locate code no stock directory or order has named yet.
const NO_INSTRUMENT: InstrumentId = InstrumentId::MAX;

/// What to do with a message that does not fit the book (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MismatchPolicy {
    /// Skip the message and count it in [`BuildStats`] (the default).
    #[default]
    Skip,
    /// Return an error.
    Fail,
}

/// Configuration of the ITCH feeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItchConfig {
    /// Feed id written into each event's header. Default 0.
    pub feed_id: u16,
    /// Midnight of the session day, ns since the Unix epoch: ITCH timestamps count from
    /// here ([`session_midnight_ns`] computes it). Default 2024-01-02 00:00 New York time
    /// (EST, UTC-5).
    pub midnight_ns: u64,
    /// What to do with messages that do not fit the book. Default [`MismatchPolicy::Skip`].
    pub mismatch: MismatchPolicy,
}

impl Default for ItchConfig {
    fn default() -> Self {
        Self {
            feed_id: 0,
            // 2024-01-02T05:00:00Z.
            midnight_ns: 1_704_171_600_000_000_000,
            mismatch: MismatchPolicy::Skip,
        }
    }
}

/// Midnight of `year-month-day` in a zone `utc_offset_secs` from UTC, as ns since the
/// Unix epoch: the base of ITCH timestamps, which count ns since midnight New York time
/// (ITCH 5.0 §3), so the offset is `-5 * 3600` (EST) or `-4 * 3600` (EDT, mid-March to
/// early November). `None` for an invalid date or one before 1970.
///
/// ```
/// use tickwire_feeds::itch::session_midnight_ns;
/// // 2019-08-30 was in daylight-saving time: midnight EDT is 04:00 UTC.
/// assert_eq!(session_midnight_ns(2019, 8, 30, -4 * 3600), Some(1_567_137_600_000_000_000));
/// assert_eq!(session_midnight_ns(2019, 2, 29, 0), None);
/// ```
pub fn session_midnight_ns(year: i32, month: u32, day: u32, utc_offset_secs: i32) -> Option<u64> {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > days_in_month {
        return None;
    }
    // Days from 1970-01-01 to the civil date (H. Hinnant, "chrono-Compatible Low-Level
    // Date Algorithms", days_from_civil).
    let (y, m, d) = (
        i64::from(year) - i64::from(month <= 2),
        i64::from(month),
        i64::from(day),
    );
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 - i64::from(utc_offset_secs);
    u64::try_from(secs).ok()?.checked_mul(1_000_000_000)
}

/// Counters of what the builder did besides emitting events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildStats {
    /// Messages applied.
    pub messages: u64,
    /// Executes, cancels, deletes and replaces of orders not in the book.
    pub unknown_orders: u64,
    /// Adds (or replaces) that reused a live order reference number.
    pub duplicate_orders: u64,
    /// Executes or cancels of more shares than the order had.
    pub overfills: u64,
    /// Broken-trade messages, which tickwire has no event for.
    pub broken_trades: u64,
}

/// Why a message could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The message does not fit the book (only with [`MismatchPolicy::Fail`]).
    #[error("message {:?}: {source}", char::from(*.tag))]
    Book {
        /// The message type.
        tag: u8,
        /// What the book said.
        source: BookError,
    },
    /// A buy/sell indicator other than `B` or `S`.
    #[error("message {:?}: buy/sell indicator {byte:#04x} is neither 'B' nor 'S'", char::from(*.tag))]
    BadSide {
        /// The message type.
        tag: u8,
        /// The indicator byte.
        byte: u8,
    },
    /// A stock symbol that is blank or not printable ASCII.
    #[error("stock symbol {0:?} is blank or not printable ASCII")]
    BadSymbol([u8; 8]),
    /// A quantity too large for tickwire's 10⁻⁸ size units.
    #[error("message {:?}: {shares} shares overflow tickwire's size units", char::from(*.tag))]
    SizeOverflow {
        /// The message type.
        tag: u8,
        /// The share count.
        shares: u64,
    },
    /// The sink had fewer free slots than one message may need (a caller bug).
    #[error("sink has {0} free slots; a message needs up to {MAX_EVENTS_PER_MESSAGE}")]
    SinkFull(usize),
}

/// Why [`ItchBookBuilder::apply_frame`] failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The bytes are not a message ([`decode`] failed).
    Decode(DecodeError),
    /// The message could not be applied ([`ItchBookBuilder::apply`] failed).
    Build(BuildError),
}

/// Per-message context: where the events' header fields come from.
#[derive(Clone, Copy)]
struct Ctx {
    tag: u8,
    seq: u64,
    exchange_ts: u64,
    receive_ts: u64,
}

/// Hands out the slots of one message's events with the right header and flags: pending
/// flags (a gap) on the first, [`flags::LAST`] on the last.
///
/// The header is written field by field into each slot rather than copied from a template
/// event: a template built with narrow stores and copied with 16-byte loads defeats store
/// forwarding, which `perf annotate` showed as the builder's hottest instructions.
struct Emitter {
    feed: u16,
    instrument: InstrumentId,
    exchange_ts: u64,
    receive_ts: u64,
    first_flags: u8,
    total: usize,
    done: usize,
}

impl Emitter {
    #[inline(always)]
    fn slot<'s>(&mut self, sink: &'s mut Sink<'_>) -> Result<&'s mut Event, BuildError> {
        let remaining = sink.remaining();
        let slot = sink.next_slot().ok_or(BuildError::SinkFull(remaining))?;
        let mut bits = 0;
        if self.done == 0 {
            bits |= self.first_flags;
        }
        self.done += 1;
        if self.done == self.total {
            bits |= flags::LAST;
        }
        slot.flags = bits;
        slot.feed = self.feed;
        slot.instrument = self.instrument;
        slot.exchange_ts = self.exchange_ts;
        slot.receive_ts = self.receive_ts;
        Ok(slot)
    }
}

/// Builds order books from ITCH messages and writes tickwire events (see the module docs).
#[derive(Debug)]
pub struct ItchBookBuilder {
    config: ItchConfig,
    books: OrderBooks,
    registry: InstrumentRegistry,
    /// Stock locate code -> instrument id (`NO_INSTRUMENT` when unknown).
    locates: Box<[InstrumentId]>,
    /// The last top of book emitted per instrument (with `seq` 0).
    tops: Vec<Quote>,
    /// Flags for the next event written (a gap reported by the transport).
    pending_flags: u8,
    stats: BuildStats,
}

impl ItchBookBuilder {
    /// An empty builder.
    pub fn new(config: ItchConfig) -> Self {
        Self {
            config,
            books: OrderBooks::default(),
            registry: InstrumentRegistry::default(),
            locates: vec![NO_INSTRUMENT; LOCATE_CODES].into_boxed_slice(),
            tops: Vec::new(),
            pending_flags: 0,
            stats: BuildStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ItchConfig {
        &self.config
    }

    /// The order books, by instrument id.
    pub fn books(&self) -> &OrderBooks {
        &self.books
    }

    /// The instruments seen so far.
    pub fn instruments(&self) -> &InstrumentRegistry {
        &self.registry
    }

    /// The instrument a stock locate code maps to, if known.
    pub fn instrument_of_locate(&self, locate: u16) -> Option<InstrumentId> {
        self.locates
            .get(usize::from(locate))
            .copied()
            .filter(|&id| id != NO_INSTRUMENT)
    }

    /// Counters.
    pub fn stats(&self) -> &BuildStats {
        &self.stats
    }

    /// Sets `bits` (e.g. [`flags::GAP`]) on the next event written, whichever message
    /// produces it.
    pub fn flag_next(&mut self, bits: u8) {
        self.pending_flags |= bits;
    }

    /// Asks the CPU to start loading the order and book that the message in `frame` (one
    /// whole message, as [`decode`](super::decode) takes) will touch. A feed calls it for
    /// the next message before applying the current one, which hides most of the cache
    /// misses of the order table on a large book. Only a hint: it reads `frame`'s type,
    /// locate and order reference if they are there, and changes nothing.
    #[inline(always)]
    pub fn prefetch(&self, frame: &[u8]) {
        // ITCH 5.0 §4.3-4.4: every add, execute, cancel, delete and replace has the stock
        // locate at offset 1 and the (original) order reference number at offset 11.
        let (Some(&tag), Some(locate), Some(order_ref)) =
            (frame.first(), frame.get(1..3), frame.get(11..19))
        else {
            return;
        };
        if !matches!(tag, b'A' | b'F' | b'E' | b'C' | b'X' | b'D' | b'U') {
            return;
        }
        let locate = u16::from_be_bytes([locate[0], locate[1]]);
        if let Some(&instrument) = self.locates.get(usize::from(locate)) {
            self.books.prefetch_book(instrument);
        }
        // An add's reference number too: the order table reads the slot it will fill.
        let mut id = [0; 8];
        id.copy_from_slice(order_ref);
        self.books.prefetch_order(u64::from_be_bytes(id));
    }

    /// Applies one message: updates the books and writes its events (at most
    /// [`MAX_EVENTS_PER_MESSAGE`]) into `sink`, returning how many. `seq` goes into the
    /// events' `seq` fields (the MoldUDP64 sequence number, or the message's index in a
    /// file); `receive_ts` is when its bytes arrived, ns since the epoch. On error nothing
    /// is written and the books are unchanged.
    #[inline]
    pub fn apply(
        &mut self,
        message: &Message<'_>,
        seq: u64,
        receive_ts: u64,
        sink: &mut Sink<'_>,
    ) -> Result<usize, BuildError> {
        let ctx = self.begin(
            message.tag(),
            message.header().timestamp,
            seq,
            receive_ts,
            sink,
        )?;
        match *message {
            Message::AddOrder(m) => self.on_add_order(ctx, m, sink),
            Message::AddOrderMpid(m) => self.on_add_order_mpid(ctx, m, sink),
            Message::OrderExecuted(m) => self.on_executed(ctx, m, sink),
            Message::OrderExecutedWithPrice(m) => self.on_executed_with_price(ctx, m, sink),
            Message::OrderCancel(m) => self.on_cancel(ctx, m, sink),
            Message::OrderDelete(m) => self.on_delete(ctx, m, sink),
            Message::OrderReplace(m) => self.on_replace(ctx, m, sink),
            Message::Trade(m) => self.on_trade(ctx, m, sink),
            Message::CrossTrade(m) => {
                let instrument = self.instrument(m.stock_locate(), &m.stock())?;
                let size = shares64(m.shares()).ok_or(BuildError::SizeOverflow {
                    tag: ctx.tag,
                    shares: m.shares(),
                })?;
                self.print(
                    ctx,
                    instrument,
                    price4(m.cross_price()),
                    size,
                    m.match_number(),
                    sink,
                )
            }
            Message::StockTradingAction(m) => {
                let instrument = self.instrument(m.stock_locate(), &m.stock())?;
                let mut out = self.emitter(ctx, instrument, 1);
                out.slot(sink)?.set_status(Status {
                    seq: ctx.seq,
                    status: m.trading_state(),
                    reason: m.reason(),
                    ..Status::default()
                });
                self.pending_flags = 0;
                Ok(1)
            }
            Message::StockDirectory(m) => {
                self.register(m.stock_locate(), &m.stock())?;
                Ok(0)
            }
            Message::BrokenTrade(_) => {
                self.stats.broken_trades += 1;
                Ok(0)
            }
            Message::SystemEvent(_)
            | Message::RegSho(_)
            | Message::MarketParticipantPosition(_)
            | Message::MwcbDeclineLevel(_)
            | Message::MwcbStatus(_)
            | Message::IpoQuotingPeriod(_)
            | Message::LuldAuctionCollar(_)
            | Message::OperationalHalt(_)
            | Message::Noii(_)
            | Message::Rpii(_)
            | Message::DlcrPriceDiscovery(_) => Ok(0),
        }
    }

    /// Decodes one whole message (as [`decode`] takes it) and applies it: the same as
    /// `decode` then [`apply`](Self::apply), errors included, with one dispatch on the
    /// type byte for the order-flow messages instead of decode's, then apply's on the
    /// decoded message (about 40 instructions a message less, callgrind).
    #[inline]
    pub(crate) fn apply_frame(
        &mut self,
        bytes: &[u8],
        seq: u64,
        receive_ts: u64,
        sink: &mut Sink<'_>,
    ) -> Result<usize, FrameError> {
        macro_rules! fast {
            ($view:ident, $handler:ident) => {
                match <&[u8; $view::LEN]>::try_from(bytes) {
                    Ok(b) => {
                        let m = $view(b);
                        let ctx = self
                            .begin($view::TAG, m.timestamp(), seq, receive_ts, sink)
                            .map_err(FrameError::Build)?;
                        self.$handler(ctx, m, sink).map_err(FrameError::Build)
                    }
                    // A wrong length: `decode` reports it.
                    Err(_) => self.apply_decoded(bytes, seq, receive_ts, sink),
                }
            };
        }
        match bytes.first() {
            Some(&AddOrder::TAG) => fast!(AddOrder, on_add_order),
            Some(&AddOrderMpid::TAG) => fast!(AddOrderMpid, on_add_order_mpid),
            Some(&OrderExecuted::TAG) => fast!(OrderExecuted, on_executed),
            Some(&OrderExecutedWithPrice::TAG) => {
                fast!(OrderExecutedWithPrice, on_executed_with_price)
            }
            Some(&OrderCancel::TAG) => fast!(OrderCancel, on_cancel),
            Some(&OrderDelete::TAG) => fast!(OrderDelete, on_delete),
            Some(&OrderReplace::TAG) => fast!(OrderReplace, on_replace),
            Some(&Trade::TAG) => fast!(Trade, on_trade),
            _ => self.apply_decoded(bytes, seq, receive_ts, sink),
        }
    }

    /// [`decode`] then [`apply`](Self::apply): the other messages of
    /// [`apply_frame`](Self::apply_frame), and malformed ones.
    #[inline(never)]
    fn apply_decoded(
        &mut self,
        bytes: &[u8],
        seq: u64,
        receive_ts: u64,
        sink: &mut Sink<'_>,
    ) -> Result<usize, FrameError> {
        let message = decode(bytes).map_err(FrameError::Decode)?;
        self.apply(&message, seq, receive_ts, sink)
            .map_err(FrameError::Build)
    }

    /// The checks and counting every message starts with, and its context.
    #[inline(always)]
    fn begin(
        &mut self,
        tag: u8,
        timestamp: u64,
        seq: u64,
        receive_ts: u64,
        sink: &Sink<'_>,
    ) -> Result<Ctx, BuildError> {
        if sink.remaining() < MAX_EVENTS_PER_MESSAGE {
            return Err(BuildError::SinkFull(sink.remaining()));
        }
        self.stats.messages += 1;
        Ok(Ctx {
            tag,
            seq,
            exchange_ts: self.config.midnight_ns.saturating_add(timestamp),
            receive_ts,
        })
    }

    #[inline(always)]
    fn on_add_order(
        &mut self,
        ctx: Ctx,
        m: AddOrder<'_>,
        sink: &mut Sink<'_>,
    ) -> Result<usize, BuildError> {
        self.add(
            ctx,
            m.stock_locate(),
            &m.stock(),
            m.order_ref(),
            m.side(),
            (m.shares(), m.price()),
            sink,
        )
    }

    #[inline(always)]
    fn on_add_order_mpid(
        &mut self,
        ctx: Ctx,
        m: AddOrderMpid<'_>,
        sink: &mut Sink<'_>,
    ) -> Result<usize, BuildError> {
        self.on_add_order(ctx, m.add_order(), sink)
    }

    #[inline(always)]
    fn on_executed(
        &mut self,
        ctx: Ctx,
        m: OrderExecuted<'_>,
        sink: &mut Sink<'_>,
    ) -> Result<usize, BuildError> {
        self.execute(
            ctx,
            m.order_ref(),
            m.executed_shares(),
            m.match_number(),
            None,
            sink,
        )
    }

    #[inline(always)]
    fn on_executed_with_price(
        &mut self,
        ctx: Ctx,
        m: OrderExecutedWithPrice<'_>,
        sink: &mut Sink<'_>,
    ) -> Result<usize, BuildError> {
        self.execute(
            ctx,
            m.order_ref(),
            m.executed_shares(),
            m.match_number(),
            Some((m.execution_price(), m.printable() == b'Y')),
            sink,
        )
    }

    #[inline(always)]
    fn on_cancel(
        &mut self,
        ctx: Ctx,
        m: OrderCancel<'_>,
        sink: &mut Sink<'_>,
    ) -> Result<usize, BuildError> {
        let order_ref = m.order_ref();
        let size = shares(m.cancelled_shares());
        match self.books.reduce(order_ref, size) {
            Ok(before) => self.removed(ctx, order_ref, before, BookAction::Cancel, size, sink),
            Err(e) => self.mismatch(ctx.tag, e),
        }
    }

    #[inline(always)]
    fn on_delete(
        &mut self,
        ctx: Ctx,
        m: OrderDelete<'_>,
        sink: &mut Sink<'_>,
    ) -> Result<usize, BuildError> {
        let order_ref = m.order_ref();
        match self.books.delete(order_ref) {
            Ok(before) => self.removed(
                ctx,
                order_ref,
                before,
                BookAction::Cancel,
                before.size,
                sink,
            ),
            Err(e) => self.mismatch(ctx.tag, e),
        }
    }

    #[inline(always)]
    fn on_replace(
        &mut self,
        ctx: Ctx,
        m: OrderReplace<'_>,
        sink: &mut Sink<'_>,
    ) -> Result<usize, BuildError> {
        self.replace(
            ctx,
            m.original_order_ref(),
            m.new_order_ref(),
            (m.shares(), m.price()),
            sink,
        )
    }

    #[inline(always)]
    fn on_trade(
        &mut self,
        ctx: Ctx,
        m: Trade<'_>,
        sink: &mut Sink<'_>,
    ) -> Result<usize, BuildError> {
        let instrument = self.instrument(m.stock_locate(), &m.stock())?;
        self.print(
            ctx,
            instrument,
            price4(m.price()),
            shares(m.shares()),
            m.match_number(),
            sink,
        )
    }

    #[inline(always)]
    fn emitter(&self, ctx: Ctx, instrument: InstrumentId, total: usize) -> Emitter {
        Emitter {
            feed: self.config.feed_id,
            instrument,
            exchange_ts: ctx.exchange_ts,
            receive_ts: ctx.receive_ts,
            first_flags: self.pending_flags,
            total,
            done: 0,
        }
    }

    /// The instrument of a locate code, registering `stock` under it when new.
    #[inline(always)]
    fn instrument(&mut self, locate: u16, stock: &[u8; 8]) -> Result<InstrumentId, BuildError> {
        match self.locates.get(usize::from(locate)) {
            Some(&id) if id != NO_INSTRUMENT => Ok(id),
            _ => self.register(locate, stock),
        }
    }

    #[cold]
    fn register(&mut self, locate: u16, stock: &[u8; 8]) -> Result<InstrumentId, BuildError> {
        let symbol = trim_alpha(stock);
        let symbol = std::str::from_utf8(symbol)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or(BuildError::BadSymbol(*stock))?;
        let id = self.registry.intern(symbol);
        if let Some(slot) = self.locates.get_mut(usize::from(locate)) {
            *slot = id;
        }
        if self.tops.len() <= id as usize {
            self.tops.resize(id as usize + 1, Quote::default());
        }
        Ok(id)
    }

    /// The new top of `instrument` if it differs from the last one emitted (and records it),
    /// after a message changed `side` at `price` and `other_price` (the same price, or a
    /// replace's new price).
    ///
    /// When both prices are behind the side's (new) best level, the top is the one last
    /// emitted: the best level was not touched, and no better level was removed (it would
    /// have been at one of the prices). Then neither the other side nor the last quote is
    /// read.
    #[inline(always)]
    fn new_top(
        &mut self,
        instrument: InstrumentId,
        side: Side,
        price: i64,
        other_price: i64,
    ) -> Option<Quote> {
        if let Some(book) = self.books.book(instrument) {
            let levels = book.side(side);
            if levels.is_behind_best(price) && levels.is_behind_best(other_price) {
                return None;
            }
        }
        let top = self
            .books
            .book(instrument)
            .map_or_else(Quote::default, |b| b.top());
        let last = self.tops.get_mut(instrument as usize)?;
        if *last == top {
            return None;
        }
        *last = top;
        Some(top)
    }

    #[cold]
    fn mismatch(&mut self, tag: u8, error: BookError) -> Result<usize, BuildError> {
        match error {
            BookError::UnknownOrder(_) => self.stats.unknown_orders += 1,
            BookError::DuplicateOrder(_) => self.stats.duplicate_orders += 1,
            BookError::Overfill { .. } => self.stats.overfills += 1,
            _ => {}
        }
        match self.config.mismatch {
            MismatchPolicy::Skip => Ok(0),
            MismatchPolicy::Fail => Err(BuildError::Book { tag, source: error }),
        }
    }

    #[inline(always)]
    fn write_quote(
        &mut self,
        out: &mut Emitter,
        ctx: Ctx,
        top: Option<Quote>,
        sink: &mut Sink<'_>,
    ) -> Result<(), BuildError> {
        if let Some(top) = top {
            out.slot(sink)?.set_quote(Quote {
                seq: ctx.seq,
                ..top
            });
        }
        self.pending_flags = 0;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)] // the fields of an add, passed unpacked from either view
    #[inline(always)]
    fn add(
        &mut self,
        ctx: Ctx,
        locate: u16,
        stock: &[u8; 8],
        order_ref: u64,
        side_code: u8,
        (raw_shares, raw_price): (u32, u32),
        sink: &mut Sink<'_>,
    ) -> Result<usize, BuildError> {
        let instrument = self.instrument(locate, stock)?;
        let side = side(side_code).ok_or(BuildError::BadSide {
            tag: ctx.tag,
            byte: side_code,
        })?;
        let (price, size) = (price4(raw_price), shares(raw_shares));
        if let Err(e) = self.books.add(instrument, order_ref, side, price, size) {
            return self.mismatch(ctx.tag, e);
        }
        let top = self.new_top(instrument, side, price, price);
        let mut out = self.emitter(ctx, instrument, 1 + usize::from(top.is_some()));
        out.slot(sink)?.set_book_delta(BookDelta {
            order_id: order_ref,
            price,
            size,
            seq: ctx.seq,
            side: side as u8,
            action: BookAction::Add as u8,
            ..BookDelta::default()
        });
        self.write_quote(&mut out, ctx, top, sink)?;
        Ok(out.total)
    }

    /// An `E` (`with_price` `None`) or `C` (`Some((price, printable))`).
    #[inline(always)]
    fn execute(
        &mut self,
        ctx: Ctx,
        order_ref: u64,
        raw_shares: u32,
        match_number: u64,
        with_price: Option<(u32, bool)>,
        sink: &mut Sink<'_>,
    ) -> Result<usize, BuildError> {
        let size = shares(raw_shares);
        let before = match self.books.execute(order_ref, size) {
            Ok(before) => before,
            Err(e) => return self.mismatch(ctx.tag, e),
        };
        let (trade_price, printable) = match with_price {
            None => (before.price, true),
            Some((price, printable)) => (price4(price), printable),
        };
        let top = self.new_top(before.instrument, before.side, before.price, before.price);
        let total = 1 + usize::from(printable) + usize::from(top.is_some());
        let mut out = self.emitter(ctx, before.instrument, total);
        out.slot(sink)?.set_book_delta(BookDelta {
            order_id: order_ref,
            price: before.price,
            size,
            seq: ctx.seq,
            side: before.side as u8,
            action: BookAction::Fill as u8,
            ..BookDelta::default()
        });
        if printable {
            out.slot(sink)?.set_trade(TradeBody {
                price: trade_price,
                size,
                trade_id: match_number,
                seq: ctx.seq,
                aggressor: before.side.opposite() as u8,
                ..TradeBody::default()
            });
        }
        self.write_quote(&mut out, ctx, top, sink)?;
        Ok(total)
    }

    /// The delta (and maybe quote) of shares leaving a resting order.
    #[inline(always)]
    fn removed(
        &mut self,
        ctx: Ctx,
        order_ref: u64,
        before: RestingOrder,
        action: BookAction,
        size: u64,
        sink: &mut Sink<'_>,
    ) -> Result<usize, BuildError> {
        let top = self.new_top(before.instrument, before.side, before.price, before.price);
        let mut out = self.emitter(ctx, before.instrument, 1 + usize::from(top.is_some()));
        out.slot(sink)?.set_book_delta(BookDelta {
            order_id: order_ref,
            price: before.price,
            size,
            seq: ctx.seq,
            side: before.side as u8,
            action: action as u8,
            ..BookDelta::default()
        });
        self.write_quote(&mut out, ctx, top, sink)?;
        Ok(out.total)
    }

    #[inline(always)]
    fn replace(
        &mut self,
        ctx: Ctx,
        old_ref: u64,
        new_ref: u64,
        (raw_shares, raw_price): (u32, u32),
        sink: &mut Sink<'_>,
    ) -> Result<usize, BuildError> {
        let (price, size) = (price4(raw_price), shares(raw_shares));
        let old = match self.books.replace(old_ref, new_ref, price, size) {
            Ok(old) => old,
            Err(e) => return self.mismatch(ctx.tag, e),
        };
        let top = self.new_top(old.instrument, old.side, old.price, price);
        let mut out = self.emitter(ctx, old.instrument, 2 + usize::from(top.is_some()));
        out.slot(sink)?.set_book_delta(BookDelta {
            order_id: old_ref,
            price: old.price,
            size: old.size,
            seq: ctx.seq,
            side: old.side as u8,
            action: BookAction::Cancel as u8,
            ..BookDelta::default()
        });
        out.slot(sink)?.set_book_delta(BookDelta {
            order_id: new_ref,
            price,
            size,
            seq: ctx.seq,
            side: old.side as u8,
            action: BookAction::Add as u8,
            ..BookDelta::default()
        });
        self.write_quote(&mut out, ctx, top, sink)?;
        Ok(out.total)
    }

    /// A trade print that does not touch the displayed book (`P`, `Q`).
    #[inline(always)]
    fn print(
        &mut self,
        ctx: Ctx,
        instrument: InstrumentId,
        price: i64,
        size: u64,
        match_number: u64,
        sink: &mut Sink<'_>,
    ) -> Result<usize, BuildError> {
        let mut out = self.emitter(ctx, instrument, 1);
        out.slot(sink)?.set_trade(TradeBody {
            price,
            size,
            trade_id: match_number,
            seq: ctx.seq,
            aggressor: Side::None as u8,
            ..TradeBody::default()
        });
        self.pending_flags = 0;
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::OrderBook;
    use crate::itch::messages::*;
    use tickwire_engine::event::{EventKind, PRICE_SCALE, SIZE_SCALE};

    const LOCATE: u16 = 9;
    const STOCK: [u8; 8] = *b"ZVZZT   ";

    fn h(ts: u64) -> Header {
        Header {
            stock_locate: LOCATE,
            tracking_number: 0,
            timestamp: ts,
        }
    }

    fn add(order_ref: u64, side: u8, shares: u32, price: u32) -> MessageData {
        MessageData::AddOrder(AddOrderData {
            header: h(order_ref),
            order_ref,
            side,
            shares,
            stock: STOCK,
            price,
        })
    }

    /// Applies `message` and returns its events (or the error).
    fn apply(b: &mut ItchBookBuilder, message: &MessageData) -> Result<Vec<Event>, BuildError> {
        let mut bytes = Vec::new();
        message.encode(&mut bytes).expect("encodable");
        let view = decode(&bytes).expect("decodable");
        let mut slots = [Event::default(); MAX_EVENTS_PER_MESSAGE];
        let mut sink = Sink::from_slice(&mut slots);
        let n = b.apply(&view, 1, 5, &mut sink)?;
        assert_eq!(n, sink.written());
        let events = sink.events().to_vec();
        for (i, e) in events.iter().enumerate() {
            let last = i + 1 == events.len();
            assert_eq!(
                e.flags & flags::LAST != 0,
                last,
                "LAST only on the last event"
            );
        }
        Ok(events)
    }

    fn kinds(events: &[Event]) -> Vec<EventKind> {
        events.iter().filter_map(Event::kind).collect()
    }

    fn builder() -> ItchBookBuilder {
        let mut b = ItchBookBuilder::new(ItchConfig::default());
        let dir = MessageData::StockDirectory(StockDirectoryData {
            header: h(0),
            stock: STOCK,
            ..Default::default()
        });
        assert_eq!(apply(&mut b, &dir).expect("directory"), []);
        b
    }

    #[test]
    fn directory_registers_the_trimmed_symbol_under_its_locate() {
        let b = builder();
        assert_eq!(b.instruments().symbol(0), Some("ZVZZT"));
        assert_eq!(b.instrument_of_locate(LOCATE), Some(0));
        assert_eq!(b.instrument_of_locate(LOCATE + 1), None);
        let mut b = ItchBookBuilder::new(ItchConfig::default());
        let blank = MessageData::StockDirectory(StockDirectoryData {
            stock: *b"        ",
            ..Default::default()
        });
        assert!(matches!(
            apply(&mut b, &blank),
            Err(BuildError::BadSymbol(_))
        ));
    }

    #[test]
    fn add_emits_delta_and_quote_only_when_the_top_changes() {
        let mut b = builder();
        let events = apply(&mut b, &add(1, b'B', 100, 1_000_000)).expect("add");
        assert_eq!(kinds(&events), [EventKind::BookDelta, EventKind::Quote]);
        let delta = events[0].book_delta().copied().expect("delta");
        assert_eq!(
            delta,
            BookDelta {
                order_id: 1,
                price: 100 * PRICE_SCALE,
                size: 100 * SIZE_SCALE,
                seq: 1,
                side: Side::Bid as u8,
                action: BookAction::Add as u8,
                ..Default::default()
            }
        );
        assert_eq!(events[0].exchange_ts, ItchConfig::default().midnight_ns + 1);
        assert_eq!(events[0].receive_ts, 5);
        assert_eq!(events[0].instrument, 0);
        // Below the best bid: the top does not change, so no quote.
        let events = apply(&mut b, &add(2, b'B', 50, 990_000)).expect("add");
        assert_eq!(kinds(&events), [EventKind::BookDelta]);
        let events = apply(&mut b, &add(3, b'S', 70, 1_010_000)).expect("add");
        let quote = events[1].quote().copied().expect("quote");
        assert_eq!(
            (quote.bid_px, quote.bid_size, quote.ask_px, quote.ask_size),
            (
                100 * PRICE_SCALE,
                100 * SIZE_SCALE,
                101 * PRICE_SCALE,
                70 * SIZE_SCALE
            )
        );
        let bad = add(4, b'Q', 1, 1);
        assert_eq!(
            apply(&mut b, &bad),
            Err(BuildError::BadSide {
                tag: b'A',
                byte: b'Q'
            })
        );
    }

    #[test]
    fn executions_fill_trade_at_the_right_price_and_side() {
        let mut b = builder();
        apply(&mut b, &add(1, b'S', 100, 1_000_000)).expect("add");
        let e = MessageData::OrderExecuted(OrderExecutedData {
            header: h(10),
            order_ref: 1,
            executed_shares: 30,
            match_number: 555,
        });
        let events = apply(&mut b, &e).expect("execute");
        assert_eq!(
            kinds(&events),
            [EventKind::BookDelta, EventKind::Trade, EventKind::Quote]
        );
        let fill = events[0].book_delta().copied().expect("delta");
        assert_eq!(fill.action, BookAction::Fill as u8);
        assert_eq!(fill.size, 30 * SIZE_SCALE);
        let trade = events[1].trade().copied().expect("trade");
        assert_eq!(
            (trade.price, trade.size, trade.trade_id, trade.aggressor),
            (100 * PRICE_SCALE, 30 * SIZE_SCALE, 555, Side::Bid as u8),
            "a resting ask executed: the buyer was the aggressor"
        );
        assert_eq!(events[2].quote().map(|q| q.ask_size), Some(70 * SIZE_SCALE));
        // Executed at another price (a cross): the trade has the execution price, the
        // book delta the order's.
        let c = MessageData::OrderExecutedWithPrice(OrderExecutedWithPriceData {
            header: h(11),
            order_ref: 1,
            executed_shares: 10,
            match_number: 556,
            printable: b'Y',
            execution_price: 999_900,
        });
        let events = apply(&mut b, &c).expect("execute with price");
        assert_eq!(
            events[0].book_delta().map(|d| d.price),
            Some(100 * PRICE_SCALE)
        );
        assert_eq!(events[1].trade().map(|t| t.price), Some(99_990_000_000));
        // Non-printable: the book changes, but no trade print.
        let c = MessageData::OrderExecutedWithPrice(OrderExecutedWithPriceData {
            printable: b'N',
            match_number: 557,
            ..match c {
                MessageData::OrderExecutedWithPrice(c) => c,
                _ => unreachable!(),
            }
        });
        let events = apply(&mut b, &c).expect("non-printable");
        assert_eq!(kinds(&events), [EventKind::BookDelta, EventKind::Quote]);
    }

    #[test]
    fn partial_cancel_replace_and_book_emptied_to_zero() {
        let mut b = builder();
        apply(&mut b, &add(1, b'B', 100, 1_000_000)).expect("add");
        let x = MessageData::OrderCancel(OrderCancelData {
            header: h(2),
            order_ref: 1,
            cancelled_shares: 40,
        });
        let events = apply(&mut b, &x).expect("partial cancel");
        assert_eq!(kinds(&events), [EventKind::BookDelta, EventKind::Quote]);
        let delta = events[0].book_delta().copied().expect("delta");
        assert_eq!(
            (delta.action, delta.size),
            (BookAction::Cancel as u8, 40 * SIZE_SCALE)
        );
        assert_eq!(events[1].quote().map(|q| q.bid_size), Some(60 * SIZE_SCALE));

        let u = MessageData::OrderReplace(OrderReplaceData {
            header: h(3),
            original_order_ref: 1,
            new_order_ref: 2,
            shares: 80,
            price: 1_001_000,
        });
        let events = apply(&mut b, &u).expect("replace");
        assert_eq!(
            kinds(&events),
            [EventKind::BookDelta, EventKind::BookDelta, EventKind::Quote]
        );
        let (old, new) = (
            events[0].book_delta().copied().expect("cancel"),
            events[1].book_delta().copied().expect("add"),
        );
        assert_eq!(
            (old.order_id, old.action, old.size, old.price),
            (
                1,
                BookAction::Cancel as u8,
                60 * SIZE_SCALE,
                100 * PRICE_SCALE
            )
        );
        assert_eq!(
            (new.order_id, new.action, new.size, new.price, new.side),
            (
                2,
                BookAction::Add as u8,
                80 * SIZE_SCALE,
                100_100_000_000,
                Side::Bid as u8
            )
        );
        assert!(b.books().order(1).is_none() && b.books().order(2).is_some());

        let d = MessageData::OrderDelete(OrderDeleteData {
            header: h(4),
            order_ref: 2,
        });
        let events = apply(&mut b, &d).expect("delete");
        assert_eq!(
            events[0].book_delta().map(|d| d.size),
            Some(80 * SIZE_SCALE)
        );
        assert_eq!(
            events[1].quote().copied(),
            Some(Quote {
                seq: 1,
                ..Quote::default()
            }),
            "an empty book quotes zero on both sides"
        );
        assert!(b.books().book(0).is_some_and(|book| book.bids.is_empty()));
        assert_eq!(b.books().order_count(), 0);
    }

    #[test]
    fn mismatches_are_counted_and_skipped_or_fail() {
        let mut b = builder();
        let e = MessageData::OrderExecuted(OrderExecutedData {
            header: h(1),
            order_ref: 404,
            executed_shares: 1,
            match_number: 1,
        });
        assert_eq!(apply(&mut b, &e).expect("skipped"), []);
        let d = MessageData::OrderDelete(OrderDeleteData {
            header: h(1),
            order_ref: 404,
        });
        assert_eq!(apply(&mut b, &d).expect("skipped"), []);
        apply(&mut b, &add(1, b'B', 10, 100)).expect("add");
        assert_eq!(apply(&mut b, &add(1, b'B', 10, 100)).expect("skipped"), []);
        let x = MessageData::OrderCancel(OrderCancelData {
            header: h(1),
            order_ref: 1,
            cancelled_shares: 11,
        });
        assert_eq!(apply(&mut b, &x).expect("skipped"), []);
        let stats = *b.stats();
        assert_eq!(
            (
                stats.unknown_orders,
                stats.duplicate_orders,
                stats.overfills
            ),
            (2, 1, 1)
        );
        assert_eq!(
            b.books().order(1).map(|o| o.size),
            Some(10 * SIZE_SCALE),
            "untouched"
        );

        let mut strict = ItchBookBuilder::new(ItchConfig {
            mismatch: MismatchPolicy::Fail,
            ..ItchConfig::default()
        });
        assert_eq!(
            apply(&mut strict, &e),
            Err(BuildError::Book {
                tag: b'E',
                source: BookError::UnknownOrder(404)
            })
        );
        assert_eq!(strict.stats().unknown_orders, 1);
    }

    #[test]
    fn trades_status_and_the_gap_flag() {
        let mut b = builder();
        b.flag_next(flags::GAP);
        // A directory-only message makes no event; the flag waits for the next one.
        let s = MessageData::SystemEvent(SystemEventData {
            header: h(0),
            event_code: b'Q',
        });
        assert_eq!(apply(&mut b, &s).expect("system event"), []);
        let p = MessageData::Trade(TradeData {
            header: h(5),
            order_ref: 0,
            side: b'B',
            shares: 300,
            stock: STOCK,
            price: 1_234_500,
            match_number: 9,
        });
        let events = apply(&mut b, &p).expect("trade");
        assert_eq!(events[0].flags, flags::GAP | flags::LAST);
        let trade = events[0].trade().copied().expect("trade");
        assert_eq!(
            (trade.price, trade.size, trade.trade_id, trade.aggressor),
            (123_450_000_000, 300 * SIZE_SCALE, 9, Side::None as u8)
        );
        let q = MessageData::CrossTrade(CrossTradeData {
            header: h(6),
            shares: 5_000_000,
            stock: STOCK,
            cross_price: 1_000_000,
            match_number: 10,
            cross_type: b'C',
        });
        let events = apply(&mut b, &q).expect("cross");
        assert_eq!(
            events[0].flags,
            flags::LAST,
            "the gap flag went on one event only"
        );
        assert_eq!(
            events[0].trade().map(|t| t.size),
            Some(5_000_000 * SIZE_SCALE)
        );
        let huge = MessageData::CrossTrade(CrossTradeData {
            shares: u64::MAX,
            ..match q {
                MessageData::CrossTrade(q) => q,
                _ => unreachable!(),
            }
        });
        assert!(matches!(
            apply(&mut b, &huge),
            Err(BuildError::SizeOverflow { tag: b'Q', .. })
        ));
        let halt = MessageData::StockTradingAction(StockTradingActionData {
            header: h(7),
            stock: STOCK,
            trading_state: b'H',
            reserved: b' ',
            reason: *b"LUDP",
        });
        let events = apply(&mut b, &halt).expect("halt");
        let status = events[0].status().copied().expect("status");
        assert_eq!((status.status, status.reason), (b'H', *b"LUDP"));
        let bust = MessageData::BrokenTrade(BrokenTradeData {
            header: h(8),
            match_number: 9,
        });
        assert_eq!(apply(&mut b, &bust).expect("bust"), []);
        assert_eq!(b.stats().broken_trades, 1);
    }

    #[test]
    fn messages_for_unseen_locates_register_their_stock() {
        let mut b = ItchBookBuilder::new(ItchConfig::default());
        let events = apply(&mut b, &add(1, b'B', 1, 1)).expect("add");
        assert_eq!(b.instruments().symbol(events[0].instrument), Some("ZVZZT"));
    }

    #[test]
    fn a_small_sink_is_an_error_not_a_panic() {
        let mut b = builder();
        let mut bytes = Vec::new();
        add(1, b'B', 1, 1).encode(&mut bytes).expect("encodable");
        let view = decode(&bytes).expect("decodable");
        let mut slots = [Event::default(); 2];
        let mut sink = Sink::from_slice(&mut slots);
        assert_eq!(
            b.apply(&view, 1, 0, &mut sink),
            Err(BuildError::SinkFull(2))
        );
        assert_eq!(b.books().order_count(), 0);
    }

    #[test]
    fn every_message_of_a_generated_day_fits_the_maximum() {
        use crate::itch::generator::{GeneratorConfig, ItchGenerator};
        let config = GeneratorConfig {
            stocks: 5,
            messages: 20_000,
            ..GeneratorConfig::default()
        };
        let mut b = ItchBookBuilder::new(ItchConfig {
            mismatch: MismatchPolicy::Fail,
            ..ItchConfig::default()
        });
        let mut most = 0;
        let mut by_tag = std::collections::BTreeMap::<u8, usize>::new();
        for message in ItchGenerator::new(&config) {
            let events = apply(&mut b, &message).expect("a generated day fits the book");
            most = most.max(events.len());
            *by_tag.entry(message.tag()).or_default() += 1;
        }
        assert_eq!(
            most, MAX_EVENTS_PER_MESSAGE,
            "the maximum is reached, never passed"
        );
        for book in (0..5).filter_map(|i| b.books().book(i)) {
            assert!(!book.is_crossed());
        }
        for tag in MESSAGE_TYPES {
            assert!(
                by_tag.contains_key(&tag),
                "generator emits {:?}",
                char::from(tag)
            );
        }
    }

    #[test]
    fn quotes_track_the_top_of_book_through_a_generated_day() {
        use crate::itch::generator::{GeneratorConfig, ItchGenerator};
        // Few stocks and many messages: deep books, replaces and executions at every depth,
        // so both the skipped and the recomputed top-of-book paths run often.
        let config = GeneratorConfig {
            stocks: 3,
            messages: 50_000,
            seed: 11,
            ..GeneratorConfig::default()
        };
        let mut b = ItchBookBuilder::new(ItchConfig::default());
        let mut quoted = std::collections::HashMap::<InstrumentId, Quote>::new();
        let mut quotes = 0;
        for message in ItchGenerator::new(&config) {
            let events = apply(&mut b, &message).expect("a generated day fits the book");
            for e in &events {
                if let Some(q) = e.quote() {
                    quoted.insert(e.instrument, Quote { seq: 0, ..*q });
                    quotes += 1;
                }
            }
            if let Some(e) = events.first() {
                let top = b
                    .books()
                    .book(e.instrument)
                    .map_or_else(Quote::default, OrderBook::top);
                let last = quoted.get(&e.instrument).copied().unwrap_or_default();
                assert_eq!(last, top, "after {:?}", char::from(message.tag()));
            }
        }
        assert!(quotes > 1_000, "{quotes} quotes");
    }

    /// `apply_frame` (one dispatch on the type byte) does what `decode` then `apply` do:
    /// same events, errors, statistics and books, on a generated day with every message
    /// type, mismatches, malformed frames of the fast-path types, and sinks too small.
    #[test]
    fn apply_frame_is_decode_then_apply() {
        use crate::itch::file::Frames;
        use crate::itch::generator::{GeneratorConfig, generate_file};
        let config = GeneratorConfig {
            stocks: 4,
            messages: 30_000,
            seed: 5,
            ..GeneratorConfig::default()
        };
        let day = generate_file(&config).expect("a valid day");
        let mut frames: Vec<Vec<u8>> = Frames::new(&day)
            .map(|f| f.expect("valid frames").1.to_vec())
            .collect();
        // Replayed twice: in the second pass, adds of orders still resting are duplicates
        // and the rest refer to orders gone (mismatches, with either policy).
        frames.extend(frames.clone());
        for tag in [b'A', b'F', b'E', b'C', b'X', b'D', b'U', b'P'] {
            let len = message_len(tag).expect("an ITCH type");
            for n in [1, len - 1, len + 1] {
                let mut m = vec![0u8; n];
                m[0] = tag;
                frames.push(m);
            }
            // The right length but a bad side or an unknown locate's blank symbol.
            let mut m = vec![b'?'; len];
            m[0] = tag;
            frames.push(m);
        }
        frames.push(vec![b'z'; 12]);
        frames.push(Vec::new());
        for policy in [MismatchPolicy::Skip, MismatchPolicy::Fail] {
            let config = ItchConfig {
                mismatch: policy,
                ..ItchConfig::default()
            };
            let (mut fast, mut slow) = (
                ItchBookBuilder::new(config.clone()),
                ItchBookBuilder::new(config),
            );
            let (mut a, mut b) = ([Event::default(); 3], [Event::default(); 3]);
            for (i, frame) in frames.iter().enumerate() {
                let seq = i as u64 + 1;
                if i % 97 == 0 {
                    fast.flag_next(flags::GAP);
                    slow.flag_next(flags::GAP);
                }
                for room in [2, 3] {
                    let mut sink_a = Sink::from_slice(&mut a[..room]);
                    let got = fast.apply_frame(frame, seq, 7, &mut sink_a);
                    let mut sink_b = Sink::from_slice(&mut b[..room]);
                    let want = decode(frame).map_err(FrameError::Decode).and_then(|m| {
                        slow.apply(&m, seq, 7, &mut sink_b)
                            .map_err(FrameError::Build)
                    });
                    assert_eq!(got, want, "frame {i}, {room} slots");
                    assert_eq!(sink_a.events(), sink_b.events(), "frame {i}");
                }
            }
            assert_eq!(fast.stats(), slow.stats());
            assert!(slow.stats().unknown_orders > 0 && slow.stats().duplicate_orders > 0);
            for instrument in 0..8 {
                assert_eq!(fast.books().book(instrument), slow.books().book(instrument));
            }
            assert_eq!(fast.books().order_count(), slow.books().order_count());
        }
    }

    #[test]
    fn midnight_from_a_date() {
        assert_eq!(session_midnight_ns(1970, 1, 1, 0), Some(0));
        assert_eq!(
            session_midnight_ns(2024, 1, 2, -5 * 3_600),
            Some(ItchConfig::default().midnight_ns)
        );
        assert_eq!(
            session_midnight_ns(2024, 2, 29, 0),
            Some(1_709_164_800_000_000_000)
        );
        assert_eq!(session_midnight_ns(2023, 2, 29, 0), None);
        assert_eq!(session_midnight_ns(2024, 13, 1, 0), None);
        assert_eq!(session_midnight_ns(1969, 12, 31, 0), None);
    }
}
