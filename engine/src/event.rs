//! The event every ring carries: 64 bytes, one cache line, `Copy`, no pointers.
//!
//! An [`Event`] is a 24-byte header (kind, flags, feed, instrument, two timestamps) and a
//! 40-byte body whose meaning the kind gives: [`Quote`], [`Trade`], [`BookDelta`],
//! [`Status`] for market data; [`Order`], [`ExecutionReport`], [`Notification`] for the
//! rings downstream of the strategies. Bodies are read and written in place through typed
//! views ([`Event::quote`], [`Event::set_trade`], ...), which are plain casts (bytemuck):
//! no copy, no branch beyond the kind check.
//!
//! **Units** (after Databento's DBN, whose fixed-point convention this follows):
//! * prices are `i64` in units of 10⁻⁹ ([`PRICE_SCALE`]): `1.25` is `1_250_000_000`;
//! * sizes are `u64` in units of 10⁻⁸ ([`SIZE_SCALE`]): 100 shares are `10_000_000_000`,
//!   0.00012 BTC is `12_000`. Binance quotes quantities to 8 decimals, so every recorded
//!   quantity is exact;
//! * timestamps are `u64` nanoseconds since the Unix epoch, UTC.
//!
//! The layout is `#[repr(C)]`, little-endian on the wire and in the journal, and asserted at
//! compile time, so the journal and the wire protocol can write events as bytes.
//!
//! ```
//! use tickwire_engine::event::{Event, EventKind, Quote, PRICE_SCALE, SIZE_SCALE};
//!
//! let mut event = Event::default();
//! event.instrument = 7;
//! event.set_quote(Quote {
//!     bid_px: 100 * PRICE_SCALE,
//!     ask_px: 100 * PRICE_SCALE + PRICE_SCALE / 100, // 100.01
//!     bid_size: 5 * SIZE_SCALE,
//!     ask_size: 3 * SIZE_SCALE,
//!     seq: 1,
//! });
//! assert_eq!(event.kind(), Some(EventKind::Quote));
//! assert_eq!(event.quote().map(|q| q.mid_px()), Some(100_005_000_000));
//! assert!(event.trade().is_none());
//! ```

use bytemuck::{Pod, Zeroable};

/// Price units per 1.0: prices are integers in 10⁻⁹ (as in Databento DBN).
pub const PRICE_SCALE: i64 = 1_000_000_000;
/// Size units per 1.0: sizes are integers in 10⁻⁸ (Binance's finest quantity step).
pub const SIZE_SCALE: u64 = 100_000_000;

/// What an [`Event`]'s body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EventKind {
    /// Top of book: [`Quote`].
    Quote = 1,
    /// A trade print: [`Trade`].
    Trade = 2,
    /// An order-book change: [`BookDelta`].
    BookDelta = 3,
    /// Trading status: [`Status`].
    Status = 4,
    /// An order from a strategy: [`Order`].
    Order = 5,
    /// The venue's answer to an order: [`ExecutionReport`].
    ExecutionReport = 6,
    /// An alert for a user: [`Notification`].
    Notification = 7,
}

impl EventKind {
    /// Every kind, in code order.
    pub const ALL: [Self; 7] = [
        Self::Quote,
        Self::Trade,
        Self::BookDelta,
        Self::Status,
        Self::Order,
        Self::ExecutionReport,
        Self::Notification,
    ];

    /// The kind for a code byte, if it names one.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u8 == code)
    }

    /// A short lowercase name (`quote`, `trade`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Quote => "quote",
            Self::Trade => "trade",
            Self::BookDelta => "book_delta",
            Self::Status => "status",
            Self::Order => "order",
            Self::ExecutionReport => "execution_report",
            Self::Notification => "notification",
        }
    }
}

/// Header flag bits ([`Event::flags`]).
pub mod flags {
    /// Last event produced from one source message or packet (as DBN's `F_LAST`): a
    /// consumer may act on a consistent book here.
    pub const LAST: u8 = 1 << 0;
    /// Part of a snapshot rather than an incremental update.
    pub const SNAPSHOT: u8 = 1 << 1;
    /// The source skipped sequence numbers before this event (and resynchronised).
    pub const GAP: u8 = 1 << 2;
    /// The exchange timestamp is missing or not trusted.
    pub const BAD_TS: u8 = 1 << 3;
}

/// Side of a book entry or order; for a trade, the aggressor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Side {
    /// Unknown or not applicable.
    None = 0,
    /// Bid / buy.
    Bid = 1,
    /// Ask / sell.
    Ask = 2,
}

impl Side {
    /// The side for a code byte (unknown codes are `None`).
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Bid,
            2 => Self::Ask,
            _ => Self::None,
        }
    }

    /// The other side.
    pub fn opposite(self) -> Self {
        match self {
            Self::Bid => Self::Ask,
            Self::Ask => Self::Bid,
            Self::None => Self::None,
        }
    }
}

/// What a [`BookDelta`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BookAction {
    /// A new order (L3) or a level's new total size (L2).
    Add = 1,
    /// An order's or level's size or price changed; `size` is the new size.
    Modify = 2,
    /// Size removed by a cancel; `size` is what was removed.
    Cancel = 3,
    /// Size removed by an execution; `size` is what was executed.
    Fill = 4,
    /// The whole book for this instrument is cleared.
    Clear = 5,
}

impl BookAction {
    /// The action for a code byte, if it names one.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Add),
            2 => Some(Self::Modify),
            3 => Some(Self::Cancel),
            4 => Some(Self::Fill),
            5 => Some(Self::Clear),
            _ => None,
        }
    }

    /// Its name: `add`, `modify`, `cancel`, `fill`, `clear`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Modify => "modify",
            Self::Cancel => "cancel",
            Self::Fill => "fill",
            Self::Clear => "clear",
        }
    }
}

/// One event: 24 bytes of header and a 40-byte body interpreted by `kind`.
#[derive(
    Clone, Copy, PartialEq, Eq, Pod, Zeroable, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
#[repr(C, align(64))]
pub struct Event {
    /// [`EventKind`] code; 0 for an empty slot.
    pub kind: u8,
    /// [`flags`] bits.
    pub flags: u8,
    /// Which feed produced it (index in the service's feed list; 0 for the first).
    pub feed: u16,
    /// Instrument id from the [`InstrumentRegistry`](crate::instrument::InstrumentRegistry).
    pub instrument: u32,
    /// Exchange timestamp, ns since the Unix epoch (UTC); 0 when the source has none.
    pub exchange_ts: u64,
    /// Local receive timestamp, ns since the Unix epoch (UTC): when the bytes reached us (or,
    /// in a replay, when they were recorded). Latency is measured from here.
    pub receive_ts: u64,
    /// The body, 40 bytes, read through the typed views.
    body: [u64; 5],
}

const _: () = assert!(core::mem::size_of::<Event>() == 64);
const _: () = assert!(core::mem::align_of::<Event>() == 64);

impl Default for Event {
    fn default() -> Self {
        Self::zeroed()
    }
}

impl core::fmt::Debug for Event {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut s = f.debug_struct("Event");
        s.field("kind", &self.kind())
            .field("flags", &self.flags)
            .field("feed", &self.feed)
            .field("instrument", &self.instrument)
            .field("exchange_ts", &self.exchange_ts)
            .field("receive_ts", &self.receive_ts);
        match self.body() {
            Some(Body::Quote(b)) => s.field("body", b),
            Some(Body::Trade(b)) => s.field("body", b),
            Some(Body::BookDelta(b)) => s.field("body", b),
            Some(Body::Status(b)) => s.field("body", b),
            Some(Body::Order(b)) => s.field("body", b),
            Some(Body::ExecutionReport(b)) => s.field("body", b),
            Some(Body::Notification(b)) => s.field("body", b),
            None => s.field("body", &self.body),
        };
        s.finish()
    }
}

/// A typed reference to an event's body.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    /// See [`Quote`].
    Quote(&'a Quote),
    /// See [`Trade`].
    Trade(&'a Trade),
    /// See [`BookDelta`].
    BookDelta(&'a BookDelta),
    /// See [`Status`].
    Status(&'a Status),
    /// See [`Order`].
    Order(&'a Order),
    /// See [`ExecutionReport`].
    ExecutionReport(&'a ExecutionReport),
    /// See [`Notification`].
    Notification(&'a Notification),
}

macro_rules! body_views {
    ($($get:ident, $set:ident, $ty:ident;)*) => {
        impl Event {
            $(
                #[doc = concat!("The body as a [`", stringify!($ty), "`], if that is the kind.")]
                #[inline(always)]
                pub fn $get(&self) -> Option<&$ty> {
                    (self.kind == EventKind::$ty as u8).then(|| bytemuck::cast_ref(&self.body))
                }

                #[doc = concat!("Makes this a [`", stringify!($ty), "`] event with `body`; the header's other fields are kept.")]
                #[inline(always)]
                pub fn $set(&mut self, body: $ty) {
                    self.kind = EventKind::$ty as u8;
                    self.body = bytemuck::cast(body);
                }
            )*

            /// The body, typed by the kind; `None` for an unknown kind.
            pub fn body(&self) -> Option<Body<'_>> {
                Some(match self.kind()? {
                    $(EventKind::$ty => Body::$ty(bytemuck::cast_ref(&self.body)),)*
                })
            }
        }
        $(const _: () = assert!(core::mem::size_of::<$ty>() == 40);)*
    };
}

body_views! {
    quote, set_quote, Quote;
    trade, set_trade, Trade;
    book_delta, set_book_delta, BookDelta;
    status, set_status, Status;
    order, set_order, Order;
    execution_report, set_execution_report, ExecutionReport;
    notification, set_notification, Notification;
}

impl Event {
    /// An event with this header and an empty body (`kind() == None` until a `set_*`).
    #[inline(always)]
    pub fn new(feed: u16, instrument: u32, exchange_ts: u64, receive_ts: u64) -> Self {
        Self {
            feed,
            instrument,
            exchange_ts,
            receive_ts,
            ..Self::zeroed()
        }
    }

    /// The kind, if the code names one.
    #[inline(always)]
    pub fn kind(&self) -> Option<EventKind> {
        EventKind::from_code(self.kind)
    }

    /// The raw body words, for checksums.
    #[inline(always)]
    pub fn body_words(&self) -> &[u64; 5] {
        &self.body
    }

    /// The event's 64 bytes, as stored in the journal and carried on the wire.
    #[inline(always)]
    pub fn as_bytes(&self) -> &[u8; 64] {
        bytemuck::cast_ref(self)
    }

    /// An event from its 64 bytes. Every bit pattern is a valid `Event` (an unknown kind
    /// reads as `kind() == None`), so this cannot fail.
    #[inline(always)]
    pub fn from_bytes(bytes: &[u8; 64]) -> Self {
        bytemuck::pod_read_unaligned(bytes)
    }

    /// A 64-bit digest of every field, for end-to-end checks (FNV-1a over the words).
    pub fn checksum(&self) -> u64 {
        let words: &[u64; 8] = bytemuck::cast_ref(self);
        words.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, w| {
            (h ^ w).wrapping_mul(0x0100_0000_01b3)
        })
    }
}

/// Top of book for one instrument.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct Quote {
    /// Best bid price, 10⁻⁹ units; 0 with `bid_size == 0` when the side is empty.
    pub bid_px: i64,
    /// Best ask price, 10⁻⁹ units; 0 with `ask_size == 0` when the side is empty.
    pub ask_px: i64,
    /// Size at the best bid, 10⁻⁸ units.
    pub bid_size: u64,
    /// Size at the best ask, 10⁻⁸ units.
    pub ask_size: u64,
    /// The source's sequence or update id for this quote (0 if none).
    pub seq: u64,
}

impl Quote {
    /// Mid price, 10⁻⁹ units (rounded toward zero). Meaningful only when both
    /// sides are present.
    #[inline]
    pub fn mid_px(&self) -> i64 {
        // What `i64::midpoint` computes (stable only since 1.87, above our MSRV of 1.85):
        // the sum in i128, divided with truncation, so it cannot overflow.
        ((i128::from(self.bid_px) + i128::from(self.ask_px)) / 2) as i64
    }

    /// Ask minus bid, 10⁻⁹ units.
    #[inline]
    pub fn spread(&self) -> i64 {
        self.ask_px - self.bid_px
    }

    /// Whether both sides have size.
    #[inline]
    pub fn is_two_sided(&self) -> bool {
        self.bid_size > 0 && self.ask_size > 0
    }
}

/// A trade print.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct Trade {
    /// Trade price, 10⁻⁹ units.
    pub price: i64,
    /// Trade size, 10⁻⁸ units.
    pub size: u64,
    /// The venue's trade id or match number (0 if none).
    pub trade_id: u64,
    /// The source's sequence for this message (0 if none).
    pub seq: u64,
    /// Aggressor [`Side`] code: `Bid` = buyer lifted the ask, `Ask` = seller hit the bid.
    pub aggressor: u8,
    /// Zero.
    pub _reserved: [u8; 7],
}

/// A change to an order book: per order (L3) when `order_id != 0`, per price level (L2)
/// otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct BookDelta {
    /// The venue's order id (L3), 0 for a level update (L2).
    pub order_id: u64,
    /// Price of the order or level, 10⁻⁹ units.
    pub price: i64,
    /// Size, 10⁻⁸ units; its meaning depends on `action` (see [`BookAction`]).
    pub size: u64,
    /// The source's sequence for this message (0 if none).
    pub seq: u64,
    /// [`Side`] code.
    pub side: u8,
    /// [`BookAction`] code.
    pub action: u8,
    /// Zero.
    pub _reserved: [u8; 6],
}

/// Trading status of an instrument.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct Status {
    /// The source's sequence for this message (0 if none).
    pub seq: u64,
    /// Status code: `b'T'` trading, `b'H'` halted, `b'P'` paused, `b'Q'` quotation only
    /// (ITCH 5.0 section 1.2.2 codes; other feeds map onto them).
    pub status: u8,
    /// The source's reason code, ASCII, space-padded (ITCH: 4 characters).
    pub reason: [u8; 4],
    /// Zero.
    pub _reserved: [u8; 27],
}

/// What an [`Order`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OrderType {
    /// Rests in the book until filled or cancelled.
    Limit = 1,
    /// Immediate or cancel: fills what it can now, cancels the rest.
    Ioc = 2,
    /// Cancels the order `order_id`.
    Cancel = 3,
}

impl OrderType {
    /// The type for a code byte, if it names one.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Limit),
            2 => Some(Self::Ioc),
            3 => Some(Self::Cancel),
            _ => None,
        }
    }
}

/// An order from a strategy to the execution agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct Order {
    /// Client order id, unique per strategy; for a cancel, the order to cancel.
    pub order_id: u64,
    /// Limit price, 10⁻⁹ units.
    pub price: i64,
    /// Quantity, 10⁻⁸ units.
    pub size: u64,
    /// Receive timestamp (ns) of the market event that triggered the decision, so
    /// tick-to-order latency is measurable downstream.
    pub trigger_ts: u64,
    /// Strategy id.
    pub strategy: u32,
    /// [`Side`] code.
    pub side: u8,
    /// [`OrderType`] code.
    pub order_type: u8,
    /// Zero.
    pub _reserved: [u8; 2],
}

/// Status of an order after an [`ExecutionReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ExecStatus {
    /// Accepted and resting.
    New = 1,
    /// Partly filled, the rest still live.
    PartiallyFilled = 2,
    /// Completely filled.
    Filled = 3,
    /// Cancelled (by request, or the unfilled rest of an IOC).
    Cancelled = 4,
    /// Refused; `reason` says why.
    Rejected = 5,
}

impl ExecStatus {
    /// The status for a code byte, if it names one.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::New),
            2 => Some(Self::PartiallyFilled),
            3 => Some(Self::Filled),
            4 => Some(Self::Cancelled),
            5 => Some(Self::Rejected),
            _ => None,
        }
    }

    /// Its name: `new`, `partially_filled`, `filled`, `cancelled`, `rejected`.
    pub fn name(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::PartiallyFilled => "partially_filled",
            Self::Filled => "filled",
            Self::Cancelled => "cancelled",
            Self::Rejected => "rejected",
        }
    }
}

/// The venue's answer to an order: accepted, a fill, a cancel or a reject.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct ExecutionReport {
    /// The client order id.
    pub order_id: u64,
    /// Price of this fill (10⁻⁹ units); the order's limit price otherwise.
    pub price: i64,
    /// Quantity filled by this report, 10⁻⁸ units (0 unless a fill).
    pub filled: u64,
    /// Quantity still open after this report, 10⁻⁸ units.
    pub leaves: u64,
    /// Strategy id.
    pub strategy: u32,
    /// [`Side`] code.
    pub side: u8,
    /// [`ExecStatus`] code.
    pub status: u8,
    /// Reject reason code (0 unless rejected); the risk module names them.
    pub reason: u8,
    /// Zero.
    pub _reserved: u8,
}

/// An alert for a user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct Notification {
    /// User id.
    pub user: u32,
    /// Rule id within the user's rules.
    pub rule: u32,
    /// The observed value that fired the rule (a price in 10⁻⁹, or a ratio in 10⁻⁹).
    pub value: i64,
    /// The rule's threshold, in the same unit as `value`.
    pub threshold: i64,
    /// The order id, for fill and reject alerts (0 otherwise).
    pub order_id: u64,
    /// Alert kind code (the notification module names them).
    pub alert: u8,
    /// Zero.
    pub _reserved: [u8; 7],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_only_answer_for_their_kind() {
        let mut e = Event::default();
        assert_eq!(e.kind(), None);
        e.set_trade(Trade {
            price: 5,
            size: 6,
            trade_id: 7,
            seq: 8,
            aggressor: 1,
            ..Default::default()
        });
        assert_eq!(e.kind(), Some(EventKind::Trade));
        assert_eq!(e.trade().map(|t| t.trade_id), Some(7));
        assert!(e.quote().is_none() && e.order().is_none());
        assert!(matches!(e.body(), Some(Body::Trade(t)) if t.price == 5));
    }

    #[test]
    fn bytes_round_trip_and_checksum_sees_every_field() {
        let mut e = Event {
            instrument: 3,
            exchange_ts: 11,
            receive_ts: 12,
            ..Default::default()
        };
        e.set_quote(Quote {
            bid_px: 1,
            ask_px: 2,
            bid_size: 3,
            ask_size: 4,
            seq: 5,
        });
        let back = Event::from_bytes(e.as_bytes());
        assert_eq!(back, e);
        let mut other = e;
        other.receive_ts += 1;
        assert_ne!(other.checksum(), e.checksum());
    }

    #[test]
    fn rkyv_round_trip() {
        let mut e = Event {
            instrument: 9,
            feed: 2,
            flags: flags::LAST,
            ..Default::default()
        };
        e.set_order(Order {
            order_id: 1,
            price: -3,
            size: 4,
            trigger_ts: 5,
            strategy: 6,
            side: 2,
            order_type: 1,
            ..Default::default()
        });
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&e).expect("serialize");
        let back = rkyv::from_bytes::<Event, rkyv::rancor::Error>(&bytes).expect("valid archive");
        assert_eq!(back, e);
    }
}
