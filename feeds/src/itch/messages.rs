//! Every ITCH 5.0 message: zero-copy views for decoding, plain values for encoding.
//!
//! [`decode`] checks one message's type byte and length and hands back a [`Message`]: a
//! typed view over the caller's bytes (`&[u8; LEN]`), whose accessors read their field
//! big-endian from a fixed offset when called. Nothing is copied or validated beyond the
//! length, so decoding costs one table lookup and one compare; fields a consumer never
//! reads are never touched.
//!
//! Each view has an owned twin with the same fields ([`AddOrderData`] for [`AddOrder`],
//! ..., gathered in [`MessageData`]), which [`MessageData::encode`] writes back
//! byte-exactly; `decode(encode(m)).to_data() == m` for every message.
//!
//! Layouts are from *Nasdaq TotalView-ITCH 5.0* (section numbers of the 2020 and later
//! revisions, which add the operational halt `h` and DLCR `O` messages). Every message
//! starts with the same 11-byte header (§4: type 1, stock locate 2, tracking number 2,
//! timestamp 6). Integers are unsigned big-endian (§3); `Price(4)` fields carry four
//! implied decimals and `Price(8)` eight (§3), converted to tickwire's 10⁻⁹ units by
//! [`price4`] and [`price8`]; timestamps are nanoseconds since midnight (§3).
//! Alphanumeric fields are ASCII, left-justified and space-padded (§3), returned raw.
//! Single-character code fields (sides, states, flags) are returned as their raw byte;
//! their values are listed on each accessor.
//!
//! ```
//! use tickwire_feeds::itch::messages::{decode, AddOrderData, Header, Message, MessageData, price4};
//!
//! let add = MessageData::AddOrder(AddOrderData {
//!     header: Header { stock_locate: 7, tracking_number: 0, timestamp: 34_200_000_000_000 },
//!     order_ref: 42,
//!     side: b'B',
//!     shares: 100,
//!     stock: *b"AAPL    ",
//!     price: 1_892_500, // 189.2500
//! });
//! let mut bytes = Vec::new();
//! add.encode(&mut bytes)?;
//! assert_eq!(bytes.len(), 36);
//! match decode(&bytes)? {
//!     Message::AddOrder(view) => {
//!         assert_eq!(view.order_ref(), 42);
//!         assert_eq!(price4(view.price()), 189_250_000_000);
//!     }
//!     other => panic!("decoded {other:?}"),
//! }
//! assert_eq!(decode(&bytes)?.to_data(), add);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use tickwire_engine::event::{PRICE_SCALE, SIZE_SCALE, Side};

/// Length of the header every message starts with: type (1), stock locate (2), tracking
/// number (2), timestamp (6) (ITCH 5.0 §4, the first four rows of every message table).
pub const HEADER_LEN: usize = 11;

/// Largest timestamp a 6-byte field holds (ITCH 5.0 §3: timestamps are 6 bytes).
pub const MAX_TIMESTAMP: u64 = (1 << 48) - 1;

/// 10⁻⁹ price units per `Price(4)` unit: four implied decimals (ITCH 5.0 §3).
pub const PRICE4_UNIT: i64 = PRICE_SCALE / 10_000;

/// 10⁻⁹ price units per `Price(8)` unit: eight implied decimals (ITCH 5.0 §3).
pub const PRICE8_UNIT: i64 = PRICE_SCALE / 100_000_000;

const _: () =
    assert!(PRICE4_UNIT * 10_000 == PRICE_SCALE && PRICE8_UNIT * 100_000_000 == PRICE_SCALE);

/// A `Price(4)` field in tickwire's 10⁻⁹ units; exact, and it cannot overflow
/// (`u32::MAX * 10⁵ < i64::MAX`).
#[inline(always)]
pub fn price4(raw: u32) -> i64 {
    i64::from(raw) * PRICE4_UNIT
}

/// A `Price(8)` field in tickwire's 10⁻⁹ units; exact, `None` if it exceeds `i64` (prices
/// above 922 337 203.68537).
#[inline]
pub fn price8(raw: u64) -> Option<i64> {
    i64::try_from(raw).ok()?.checked_mul(PRICE8_UNIT)
}

/// A 4-byte share count in tickwire's 10⁻⁸ size units; exact, cannot overflow
/// (`u32::MAX * 10⁸ < u64::MAX`).
#[inline(always)]
pub fn shares(raw: u32) -> u64 {
    u64::from(raw) * SIZE_SCALE
}

/// An 8-byte share count (cross trades, NOII) in 10⁻⁸ size units; `None` above
/// 184 467 440 737 shares.
#[inline]
pub fn shares64(raw: u64) -> Option<u64> {
    raw.checked_mul(SIZE_SCALE)
}

/// The side of a `Buy/Sell Indicator` byte: `b'B'` bid, `b'S'` ask (ITCH 5.0 §4.3.1).
#[inline(always)]
pub fn side(code: u8) -> Option<Side> {
    match code {
        b'B' => Some(Side::Bid),
        b'S' => Some(Side::Ask),
        _ => None,
    }
}

/// An alphanumeric field without its right padding (ITCH 5.0 §3: "left justified and
/// padded on the right with spaces").
#[inline]
pub fn trim_alpha(field: &[u8]) -> &[u8] {
    let end = field.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    &field[..end]
}

/// Why bytes are not an ITCH message (or frame, or packet): what, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {kind}")]
pub struct DecodeError {
    /// Byte offset of the problem, from the start of the input given to the decoder.
    pub offset: usize,
    /// What is wrong.
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    /// The same error with `offset` counted from `base` bytes earlier.
    #[inline]
    pub fn shifted(self, base: usize) -> Self {
        Self {
            offset: self.offset + base,
            ..self
        }
    }
}

/// What is wrong with the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ends before the message, frame or packet does.
    #[error("truncated: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes there were.
        available: usize,
    },
    /// The type byte names no ITCH 5.0 message.
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    /// The message's length is not its type's length.
    #[error("message type {:?} is {expected} bytes, got {actual}", char::from(*.tag))]
    WrongLength {
        /// The type byte.
        tag: u8,
        /// The length the spec gives the type.
        expected: usize,
        /// The length received.
        actual: usize,
    },
    /// A frame or message block of length zero, which can hold no message.
    #[error("empty message")]
    Empty,
    /// Bytes left over after the last message a packet announced.
    #[error("{0} bytes after the last message")]
    TrailingBytes(usize),
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The timestamp does not fit the 6-byte field.
    #[error("timestamp {0} ns exceeds the 48-bit field (max {MAX_TIMESTAMP})")]
    TimestampOverflow(u64),
    /// A message too long for a 2-byte length prefix.
    #[error("message of {0} bytes exceeds the 65535-byte length prefix")]
    TooLong(usize),
    /// A MoldUDP64 packet already holds the most messages its count field allows.
    #[error("packet is full ({0} messages)")]
    PacketFull(u16),
}

/// The header every message starts with (ITCH 5.0 §4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Header {
    /// Locate code of the security, assigned daily by the stock directory (0 for
    /// messages about no particular security).
    pub stock_locate: u16,
    /// Nasdaq-internal tracking number.
    pub tracking_number: u16,
    /// Nanoseconds since midnight (Eastern time) of the session day, 48 bits.
    pub timestamp: u64,
}

impl Header {
    /// Reads the header from the first [`HEADER_LEN`] bytes of a message (callers pass
    /// whole messages, which are all longer).
    #[inline(always)]
    fn read(b: &[u8]) -> Self {
        Self {
            stock_locate: u16::from_be_bytes([b[1], b[2]]),
            tracking_number: u16::from_be_bytes([b[3], b[4]]),
            timestamp: read_u48(&b[5..]),
        }
    }

    fn write(&self, tag: u8, b: &mut [u8]) {
        b[0] = tag;
        b[1..3].copy_from_slice(&self.stock_locate.to_be_bytes());
        b[3..5].copy_from_slice(&self.tracking_number.to_be_bytes());
        b[5..11].copy_from_slice(&self.timestamp.to_be_bytes()[2..]);
    }
}

#[inline(always)]
fn read_u48(b: &[u8]) -> u64 {
    u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

/// A fixed-width big-endian wire field. Offsets are checked against message lengths at
/// compile time (see `check_layout`), so the slicing in `read`/`write` never fails.
trait Wire: Sized {
    const SIZE: usize;
    fn read(b: &[u8]) -> Self;
    fn write(&self, b: &mut [u8]);
}

macro_rules! wire_int {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            const SIZE: usize = core::mem::size_of::<$t>();
            #[inline(always)]
            fn read(b: &[u8]) -> Self {
                let mut a = [0u8; core::mem::size_of::<$t>()];
                a.copy_from_slice(&b[..Self::SIZE]);
                <$t>::from_be_bytes(a)
            }
            #[inline(always)]
            fn write(&self, b: &mut [u8]) {
                b[..Self::SIZE].copy_from_slice(&self.to_be_bytes());
            }
        }
    )*};
}
wire_int!(u8, u16, u32, u64);

impl<const N: usize> Wire for [u8; N] {
    const SIZE: usize = N;
    #[inline(always)]
    fn read(b: &[u8]) -> Self {
        let mut a = [0u8; N];
        a.copy_from_slice(&b[..N]);
        a
    }
    #[inline(always)]
    fn write(&self, b: &mut [u8]) {
        b[..N].copy_from_slice(self);
    }
}

/// Whether `(offset, size)` fields tile `len - HEADER_LEN` bytes after the header exactly,
/// in order, with no gap or overlap: the compile-time check of each layout below.
const fn check_layout(fields: &[(usize, usize)], len: usize) -> bool {
    let mut at = HEADER_LEN;
    let mut i = 0;
    while i < fields.len() {
        if fields[i].0 != at {
            return false;
        }
        at += fields[i].1;
        i += 1;
    }
    at == len
}

macro_rules! itch_messages {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident($view:ident, $data:ident) = $tag:literal, $len:literal, $spec:literal {
            $( $(#[doc = $fdoc:literal])* $field:ident : $ty:ty = $off:literal, )*
        }
    )*) => {
        $(
            $(#[doc = $doc])*
            ///
            #[doc = concat!("Type `", stringify!($tag), "`, ", stringify!($len),
                " bytes (ITCH 5.0 §", $spec, "). A zero-copy view over the message bytes; ",
                "each accessor reads its field when called. The owned twin is [`", stringify!($data), "`].")]
            #[derive(Clone, Copy, PartialEq, Eq)]
            pub struct $view<'a>(pub(crate) &'a [u8; $len]);

            impl<'a> $view<'a> {
                #[doc = concat!("The type byte (ITCH 5.0 §", $spec, ").")]
                pub const TAG: u8 = $tag;
                #[doc = concat!("Length in bytes, type byte included (ITCH 5.0 §", $spec, ").")]
                pub const LEN: usize = $len;

                /// The message bytes.
                #[inline(always)]
                pub fn bytes(&self) -> &'a [u8; $len] {
                    self.0
                }

                /// The common header.
                #[inline(always)]
                pub fn header(&self) -> Header {
                    Header::read(self.0)
                }

                /// Stock locate code (0 when the message is about no security).
                #[inline(always)]
                pub fn stock_locate(&self) -> u16 {
                    u16::from_be_bytes([self.0[1], self.0[2]])
                }

                /// Nanoseconds since midnight of the session day.
                #[inline(always)]
                pub fn timestamp(&self) -> u64 {
                    read_u48(&self.0[5..])
                }

                $(
                    $(#[doc = $fdoc])*
                    #[inline(always)]
                    pub fn $field(&self) -> $ty {
                        <$ty as Wire>::read(&self.0[$off..])
                    }
                )*

                /// Every field, copied out.
                pub fn to_data(&self) -> $data {
                    $data {
                        header: self.header(),
                        $($field: self.$field(),)*
                    }
                }
            }

            impl fmt::Debug for $view<'_> {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    fmt::Debug::fmt(&self.to_data(), f)
                }
            }

            $(#[doc = $doc])*
            ///
            #[doc = concat!("The owned form of [`", stringify!($view), "`], for encoding.")]
            #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
            pub struct $data {
                /// The common header.
                pub header: Header,
                $( $(#[doc = $fdoc])* pub $field: $ty, )*
            }

            impl $data {
                #[doc = concat!("The type byte (ITCH 5.0 §", $spec, ").")]
                pub const TAG: u8 = $tag;
                #[doc = concat!("Length in bytes, type byte included (ITCH 5.0 §", $spec, ").")]
                pub const LEN: usize = $len;

                /// Writes the message into `out`, byte-exact. The timestamp must fit 48 bits.
                pub fn encode_into(&self, out: &mut [u8; $len]) -> Result<(), EncodeError> {
                    if self.header.timestamp > MAX_TIMESTAMP {
                        return Err(EncodeError::TimestampOverflow(self.header.timestamp));
                    }
                    self.header.write($tag, out);
                    $( Wire::write(&self.$field, &mut out[$off..]); )*
                    Ok(())
                }
            }

            const _: () = assert!(
                check_layout(&[$(($off, <$ty as Wire>::SIZE)),*], $len),
                concat!("layout of ", stringify!($view), " does not tile its length"),
            );
        )*

        /// One decoded ITCH 5.0 message: a typed zero-copy view over its bytes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Message<'a> {
            $( $(#[doc = $doc])* $variant($view<'a>), )*
        }

        /// One ITCH 5.0 message, owned: what [`MessageData::encode`] writes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum MessageData {
            $( $(#[doc = $doc])* $variant($data), )*
        }

        /// Every ITCH 5.0 message type byte, in the order of the spec's sections.
        pub const MESSAGE_TYPES: [u8; [$($tag),*].len()] = [$($tag),*];

        /// The length (type byte included) of messages of type `tag`, if it is one.
        #[inline]
        pub const fn message_len(tag: u8) -> Option<usize> {
            match tag {
                $( $tag => Some($len), )*
                _ => None,
            }
        }

        /// Decodes one whole message: `bytes` must be exactly one message (as delimited by
        /// the file framing or a MoldUDP64 message block). Checks the type and the length;
        /// fields are read lazily through the view.
        #[inline]
        pub fn decode(bytes: &[u8]) -> Result<Message<'_>, DecodeError> {
            let Some(&tag) = bytes.first() else {
                return Err(DecodeError {
                    offset: 0,
                    kind: DecodeErrorKind::Truncated { needed: 1, available: 0 },
                });
            };
            match tag {
                $( $tag => match <&[u8; $len]>::try_from(bytes) {
                    Ok(b) => Ok(Message::$variant($view(b))),
                    Err(_) => Err(wrong_length(tag, $len, bytes.len())),
                }, )*
                other => Err(DecodeError { offset: 0, kind: DecodeErrorKind::UnknownType(other) }),
            }
        }

        impl<'a> Message<'a> {
            /// The type byte.
            #[inline]
            pub fn tag(&self) -> u8 {
                match self { $( Self::$variant(_) => $tag, )* }
            }

            /// The message bytes.
            #[inline]
            pub fn bytes(&self) -> &'a [u8] {
                match self { $( Self::$variant(m) => m.bytes(), )* }
            }

            /// The common header.
            #[inline]
            pub fn header(&self) -> Header {
                match self { $( Self::$variant(m) => m.header(), )* }
            }

            /// Every field, copied out.
            pub fn to_data(&self) -> MessageData {
                match self { $( Self::$variant(m) => MessageData::$variant(m.to_data()), )* }
            }
        }

        impl MessageData {
            /// The type byte.
            pub fn tag(&self) -> u8 {
                match self { $( Self::$variant(_) => $tag, )* }
            }

            /// The encoded length in bytes.
            pub fn len(&self) -> usize {
                match self { $( Self::$variant(_) => $len, )* }
            }

            /// Always false: no message is empty (for clippy's `len_without_is_empty`).
            pub fn is_empty(&self) -> bool {
                false
            }

            /// The common header.
            pub fn header(&self) -> Header {
                match self { $( Self::$variant(m) => m.header, )* }
            }

            /// The header, to edit.
            pub fn header_mut(&mut self) -> &mut Header {
                match self { $( Self::$variant(m) => &mut m.header, )* }
            }

            /// Appends the message's bytes to `out` (no length prefix).
            pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
                match self {
                    $( Self::$variant(m) => {
                        let mut buf = [0u8; $len];
                        m.encode_into(&mut buf)?;
                        out.extend_from_slice(&buf);
                    } )*
                }
                Ok(())
            }
        }
    };
}

#[cold]
fn wrong_length(tag: u8, expected: usize, actual: usize) -> DecodeError {
    DecodeError {
        // Point at the first missing byte, or at the first byte too many.
        offset: actual.min(expected),
        kind: DecodeErrorKind::WrongLength {
            tag,
            expected,
            actual,
        },
    }
}

itch_messages! {
    /// System event: start/end of messages, system hours and market hours.
    SystemEvent(SystemEvent, SystemEventData) = b'S', 12, "4.1" {
        /// `O` start of messages, `S` start of system hours, `Q` start of market hours,
        /// `M` end of market hours, `E` end of system hours, `C` end of messages.
        event_code: u8 = 11,
    }
    /// Stock directory: one per security at the start of the day; assigns the locate code.
    StockDirectory(StockDirectory, StockDirectoryData) = b'R', 39, "4.2.1" {
        /// Symbol, space-padded.
        stock: [u8; 8] = 11,
        /// Listing market: `Q` Global Select, `G` Global Market, `S` Capital Market,
        /// `N` NYSE, `A` NYSE American, `P` NYSE Arca, `Z` BATS, `V` IEX, space n/a.
        market_category: u8 = 19,
        /// Financial status indicator (`N` normal, `D`, `E`, `Q`, `S`, `G`, `H`, `J`, `K`,
        /// `C`, space n/a; see the spec).
        financial_status: u8 = 20,
        /// Shares per round lot.
        round_lot_size: u32 = 21,
        /// `Y` only round lots accepted, `N` odd and mixed lots too.
        round_lots_only: u8 = 25,
        /// Issue classification code (`A`, `B`, `C`, `F`, `I`, `L`, `N`, `O`, `P`, `Q`, `R`,
        /// `S`, `T`, `U`, `V`, `W`).
        issue_classification: u8 = 26,
        /// Issue sub-type code, two characters (see the spec's appendix).
        issue_subtype: [u8; 2] = 27,
        /// `P` live/production, `T` test.
        authenticity: u8 = 29,
        /// Short sale threshold indicator: `Y`, `N`, space n/a.
        short_sale_threshold: u8 = 30,
        /// IPO flag: `Y` new IPO, `N`, space n/a.
        ipo_flag: u8 = 31,
        /// LULD reference price tier: `1`, `2`, space n/a.
        luld_tier: u8 = 32,
        /// ETP flag: `Y`, `N`, space n/a.
        etp_flag: u8 = 33,
        /// ETP leverage factor (integer multiple; 0 when not an ETP).
        etp_leverage_factor: u32 = 34,
        /// Inverse indicator: `Y` inverse ETP, `N`.
        inverse_indicator: u8 = 38,
    }
    /// Stock trading action: halted, paused, quotation only, trading.
    StockTradingAction(StockTradingAction, StockTradingActionData) = b'H', 25, "4.2.2" {
        /// Symbol, space-padded.
        stock: [u8; 8] = 11,
        /// `H` halted, `P` paused, `Q` quotation only, `T` trading.
        trading_state: u8 = 19,
        /// Reserved.
        reserved: u8 = 20,
        /// Reason code, four characters, space-padded (see the spec's table).
        reason: [u8; 4] = 21,
    }
    /// Reg SHO short sale price test restricted indicator.
    RegSho(RegSho, RegShoData) = b'Y', 20, "4.2.3" {
        /// Symbol, space-padded.
        stock: [u8; 8] = 11,
        /// `0` no price test, `1` restriction in effect (intraday drop), `2` remains in effect.
        reg_sho_action: u8 = 19,
    }
    /// Market participant position: a market maker's status in a security.
    MarketParticipantPosition(MarketParticipantPosition, MarketParticipantPositionData) = b'L', 26, "4.2.4" {
        /// Market participant id (MPID), four characters.
        mpid: [u8; 4] = 11,
        /// Symbol, space-padded.
        stock: [u8; 8] = 15,
        /// `Y` primary market maker, `N`.
        primary_market_maker: u8 = 23,
        /// `N` normal, `P` passive, `S` syndicate, `R` pre-syndicate, `L` penalty.
        market_maker_mode: u8 = 24,
        /// `A` active, `E` excused, `W` withdrawn, `S` suspended, `D` deleted.
        participant_state: u8 = 25,
    }
    /// Market-wide circuit breaker decline levels for the day.
    MwcbDeclineLevel(MwcbDeclineLevel, MwcbDeclineLevelData) = b'V', 35, "4.2.5.1" {
        /// Level 1 price, `Price(8)`: 8 implied decimals (see [`price8`]).
        level1: u64 = 11,
        /// Level 2 price, `Price(8)`.
        level2: u64 = 19,
        /// Level 3 price, `Price(8)`.
        level3: u64 = 27,
    }
    /// Market-wide circuit breaker status: a level was breached.
    MwcbStatus(MwcbStatus, MwcbStatusData) = b'W', 12, "4.2.5.2" {
        /// `1`, `2` or `3`.
        breached_level: u8 = 11,
    }
    /// IPO quoting period update: when an IPO security is expected to release for quoting.
    IpoQuotingPeriod(IpoQuotingPeriod, IpoQuotingPeriodData) = b'K', 28, "4.2.6" {
        /// Symbol, space-padded.
        stock: [u8; 8] = 11,
        /// Anticipated release time, seconds since midnight.
        release_time: u32 = 19,
        /// `A` anticipated, `C` cancelled or postponed.
        release_qualifier: u8 = 23,
        /// IPO price, `Price(4)`: 4 implied decimals (see [`price4`]).
        ipo_price: u32 = 24,
    }
    /// Limit-up/limit-down auction collar for a paused security.
    LuldAuctionCollar(LuldAuctionCollar, LuldAuctionCollarData) = b'J', 35, "4.2.7" {
        /// Symbol, space-padded.
        stock: [u8; 8] = 11,
        /// Reference price, `Price(4)`.
        reference_price: u32 = 19,
        /// Upper collar price, `Price(4)`.
        upper_price: u32 = 23,
        /// Lower collar price, `Price(4)`.
        lower_price: u32 = 27,
        /// Number of extensions of the reopening auction.
        extension: u32 = 31,
    }
    /// Operational halt of a security on one Nasdaq market center.
    OperationalHalt(OperationalHalt, OperationalHaltData) = b'h', 21, "4.2.8" {
        /// Symbol, space-padded.
        stock: [u8; 8] = 11,
        /// `Q` Nasdaq, `B` BX, `X` PSX.
        market_code: u8 = 19,
        /// `H` halted, `T` resumed.
        action: u8 = 20,
    }
    /// Add order, no MPID attribution: a displayed order joins the book.
    AddOrder(AddOrder, AddOrderData) = b'A', 36, "4.3.1" {
        /// Order reference number, unique for the day.
        order_ref: u64 = 11,
        /// `B` buy, `S` sell (see [`side`]).
        side: u8 = 19,
        /// Shares (see [`shares`]).
        shares: u32 = 20,
        /// Symbol, space-padded.
        stock: [u8; 8] = 24,
        /// Limit price, `Price(4)`.
        price: u32 = 32,
    }
    /// Add order with MPID attribution.
    AddOrderMpid(AddOrderMpid, AddOrderMpidData) = b'F', 40, "4.3.2" {
        /// Order reference number, unique for the day.
        order_ref: u64 = 11,
        /// `B` buy, `S` sell.
        side: u8 = 19,
        /// Shares.
        shares: u32 = 20,
        /// Symbol, space-padded.
        stock: [u8; 8] = 24,
        /// Limit price, `Price(4)`.
        price: u32 = 32,
        /// Market participant id, four characters.
        attribution: [u8; 4] = 36,
    }
    /// Order executed, at the order's own price.
    OrderExecuted(OrderExecuted, OrderExecutedData) = b'E', 31, "4.4.1" {
        /// The resting order's reference number.
        order_ref: u64 = 11,
        /// Shares executed.
        executed_shares: u32 = 19,
        /// Match number, unique per day (a [`BrokenTrade`] refers to it).
        match_number: u64 = 23,
    }
    /// Order executed at a price other than the order's (e.g. in a cross).
    OrderExecutedWithPrice(OrderExecutedWithPrice, OrderExecutedWithPriceData) = b'C', 36, "4.4.2" {
        /// The resting order's reference number.
        order_ref: u64 = 11,
        /// Shares executed.
        executed_shares: u32 = 19,
        /// Match number.
        match_number: u64 = 23,
        /// `Y` printable (counts toward volume), `N` not (reported again in a cross trade).
        printable: u8 = 31,
        /// Execution price, `Price(4)`.
        execution_price: u32 = 32,
    }
    /// Order cancel: part of an order's shares removed.
    OrderCancel(OrderCancel, OrderCancelData) = b'X', 23, "4.4.3" {
        /// The order's reference number.
        order_ref: u64 = 11,
        /// Shares removed.
        cancelled_shares: u32 = 19,
    }
    /// Order delete: the whole remaining order removed.
    OrderDelete(OrderDelete, OrderDeleteData) = b'D', 19, "4.4.4" {
        /// The order's reference number.
        order_ref: u64 = 11,
    }
    /// Order replace: an order is cancelled and a new one (new reference, same side and
    /// security) takes its place.
    OrderReplace(OrderReplace, OrderReplaceData) = b'U', 35, "4.4.5" {
        /// The replaced order's reference number.
        original_order_ref: u64 = 11,
        /// The new order's reference number.
        new_order_ref: u64 = 19,
        /// The new order's shares.
        shares: u32 = 27,
        /// The new order's price, `Price(4)`.
        price: u32 = 31,
    }
    /// Trade (non-cross): a match against a non-displayed order.
    Trade(Trade, TradeData) = b'P', 44, "4.5.1" {
        /// The non-displayed order's reference number (0 since Nasdaq stopped reporting it).
        order_ref: u64 = 11,
        /// `B`; since 2014 always `B` whatever the resting side.
        side: u8 = 19,
        /// Shares.
        shares: u32 = 20,
        /// Symbol, space-padded.
        stock: [u8; 8] = 24,
        /// Price, `Price(4)`.
        price: u32 = 32,
        /// Match number.
        match_number: u64 = 36,
    }
    /// Cross trade: the bulk print of an opening, closing, IPO/halt or extended cross.
    CrossTrade(CrossTrade, CrossTradeData) = b'Q', 40, "4.5.2" {
        /// Shares matched in the cross (8 bytes; see [`shares64`]).
        shares: u64 = 11,
        /// Symbol, space-padded.
        stock: [u8; 8] = 19,
        /// Cross price, `Price(4)`.
        cross_price: u32 = 27,
        /// Match number.
        match_number: u64 = 31,
        /// `O` opening, `C` closing, `H` IPO or halted, `I` intraday, `A` extended close.
        cross_type: u8 = 39,
    }
    /// Broken trade: an execution was busted.
    BrokenTrade(BrokenTrade, BrokenTradeData) = b'B', 19, "4.5.3" {
        /// The busted execution's match number.
        match_number: u64 = 11,
    }
    /// Net order imbalance indicator (NOII) ahead of a cross.
    Noii(Noii, NoiiData) = b'I', 50, "4.6" {
        /// Shares paired at the current reference price.
        paired_shares: u64 = 11,
        /// Shares not paired.
        imbalance_shares: u64 = 19,
        /// `B` buy, `S` sell, `N` none, `O` insufficient orders.
        imbalance_direction: u8 = 27,
        /// Symbol, space-padded.
        stock: [u8; 8] = 28,
        /// Far indicative clearing price, `Price(4)`.
        far_price: u32 = 36,
        /// Near indicative clearing price, `Price(4)`.
        near_price: u32 = 40,
        /// Current reference price, `Price(4)`.
        current_reference_price: u32 = 44,
        /// `O` opening, `C` closing, `H` IPO or halted, `A` extended close.
        cross_type: u8 = 48,
        /// Price variation indicator: `L` under 1%, `1`-`9`, `A`, `B`, `C`, space n/a.
        price_variation: u8 = 49,
    }
    /// Retail price improvement indicator (RPII).
    Rpii(Rpii, RpiiData) = b'N', 20, "4.7" {
        /// Symbol, space-padded.
        stock: [u8; 8] = 11,
        /// `B` buy side, `S` sell side, `A` both, `N` none.
        interest_flag: u8 = 19,
    }
    /// Direct listing with capital raise (DLCR) price discovery.
    DlcrPriceDiscovery(DlcrPriceDiscovery, DlcrPriceDiscoveryData) = b'O', 48, "4.8" {
        /// Symbol, space-padded.
        stock: [u8; 8] = 11,
        /// `N` not eligible, `Y` eligible.
        open_eligibility: u8 = 19,
        /// Minimum allowable price, `Price(4)`.
        minimum_allowable_price: u32 = 20,
        /// Maximum allowable price, `Price(4)`.
        maximum_allowable_price: u32 = 24,
        /// Near execution price, `Price(4)`.
        near_execution_price: u32 = 28,
        /// Near execution time, ns since midnight.
        near_execution_time: u64 = 32,
        /// Lower price range collar, `Price(4)`.
        lower_price_range_collar: u32 = 40,
        /// Upper price range collar, `Price(4)`.
        upper_price_range_collar: u32 = 44,
    }
}

impl<'a> AddOrderMpid<'a> {
    /// The message without its attribution: an `F` is an `A` (§4.3.1) with the MPID after
    /// byte 36, so its first 36 bytes read as one (type byte aside).
    #[inline(always)]
    pub fn add_order(&self) -> AddOrder<'a> {
        let (head, _attribution) = self
            .0
            .split_first_chunk::<{ AddOrder::LEN }>()
            .expect("40 bytes hold the 36 of an add order");
        AddOrder(head)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One message of every type, with distinct non-zero field values.
    pub(crate) fn one_of_each() -> Vec<MessageData> {
        let h = |n: u16| Header {
            stock_locate: n,
            tracking_number: n + 1,
            timestamp: 34_200_000_000_000 + u64::from(n),
        };
        let stock = *b"ZVZZT   ";
        vec![
            MessageData::SystemEvent(SystemEventData {
                header: h(0),
                event_code: b'O',
            }),
            MessageData::StockDirectory(StockDirectoryData {
                header: h(1),
                stock,
                market_category: b'Q',
                financial_status: b'N',
                round_lot_size: 100,
                round_lots_only: b'N',
                issue_classification: b'C',
                issue_subtype: *b"Z ",
                authenticity: b'P',
                short_sale_threshold: b'N',
                ipo_flag: b' ',
                luld_tier: b'1',
                etp_flag: b'N',
                etp_leverage_factor: 0,
                inverse_indicator: b'N',
            }),
            MessageData::StockTradingAction(StockTradingActionData {
                header: h(2),
                stock,
                trading_state: b'T',
                reserved: b' ',
                reason: *b"    ",
            }),
            MessageData::RegSho(RegShoData {
                header: h(3),
                stock,
                reg_sho_action: b'1',
            }),
            MessageData::MarketParticipantPosition(MarketParticipantPositionData {
                header: h(4),
                mpid: *b"GSCO",
                stock,
                primary_market_maker: b'Y',
                market_maker_mode: b'N',
                participant_state: b'A',
            }),
            MessageData::MwcbDeclineLevel(MwcbDeclineLevelData {
                header: h(5),
                level1: 3_500_000_000_000,
                level2: 3_300_000_000_000,
                level3: 3_000_000_000_000,
            }),
            MessageData::MwcbStatus(MwcbStatusData {
                header: h(6),
                breached_level: b'1',
            }),
            MessageData::IpoQuotingPeriod(IpoQuotingPeriodData {
                header: h(7),
                stock,
                release_time: 37_800,
                release_qualifier: b'A',
                ipo_price: 200_000,
            }),
            MessageData::LuldAuctionCollar(LuldAuctionCollarData {
                header: h(8),
                stock,
                reference_price: 100_000,
                upper_price: 110_000,
                lower_price: 90_000,
                extension: 1,
            }),
            MessageData::OperationalHalt(OperationalHaltData {
                header: h(9),
                stock,
                market_code: b'Q',
                action: b'H',
            }),
            MessageData::AddOrder(AddOrderData {
                header: h(10),
                order_ref: 1,
                side: b'B',
                shares: 100,
                stock,
                price: 100_500,
            }),
            MessageData::AddOrderMpid(AddOrderMpidData {
                header: h(11),
                order_ref: 2,
                side: b'S',
                shares: 200,
                stock,
                price: 100_700,
                attribution: *b"GSCO",
            }),
            MessageData::OrderExecuted(OrderExecutedData {
                header: h(12),
                order_ref: 1,
                executed_shares: 10,
                match_number: 77,
            }),
            MessageData::OrderExecutedWithPrice(OrderExecutedWithPriceData {
                header: h(13),
                order_ref: 1,
                executed_shares: 10,
                match_number: 78,
                printable: b'Y',
                execution_price: 100_400,
            }),
            MessageData::OrderCancel(OrderCancelData {
                header: h(14),
                order_ref: 1,
                cancelled_shares: 5,
            }),
            MessageData::OrderDelete(OrderDeleteData {
                header: h(15),
                order_ref: 1,
            }),
            MessageData::OrderReplace(OrderReplaceData {
                header: h(16),
                original_order_ref: 2,
                new_order_ref: 3,
                shares: 150,
                price: 100_600,
            }),
            MessageData::Trade(TradeData {
                header: h(17),
                order_ref: 0,
                side: b'B',
                shares: 300,
                stock,
                price: 100_550,
                match_number: 79,
            }),
            MessageData::CrossTrade(CrossTradeData {
                header: h(18),
                shares: 1_000_000,
                stock,
                cross_price: 100_500,
                match_number: 80,
                cross_type: b'O',
            }),
            MessageData::BrokenTrade(BrokenTradeData {
                header: h(19),
                match_number: 79,
            }),
            MessageData::Noii(NoiiData {
                header: h(20),
                paired_shares: 50_000,
                imbalance_shares: 1_200,
                imbalance_direction: b'B',
                stock,
                far_price: 100_100,
                near_price: 100_200,
                current_reference_price: 100_300,
                cross_type: b'C',
                price_variation: b'L',
            }),
            MessageData::Rpii(RpiiData {
                header: h(21),
                stock,
                interest_flag: b'A',
            }),
            MessageData::DlcrPriceDiscovery(DlcrPriceDiscoveryData {
                header: h(22),
                stock,
                open_eligibility: b'Y',
                minimum_allowable_price: 90_000,
                maximum_allowable_price: 110_000,
                near_execution_price: 100_000,
                near_execution_time: 36_000_000_000_000,
                lower_price_range_collar: 95_000,
                upper_price_range_collar: 105_000,
            }),
        ]
    }

    #[test]
    fn every_type_round_trips_and_lengths_match_the_spec() {
        let all = one_of_each();
        let tags: Vec<u8> = all.iter().map(MessageData::tag).collect();
        assert_eq!(
            tags, MESSAGE_TYPES,
            "one_of_each covers every type, in order"
        );
        // (type, length) from the spec's tables, written out independently of the macro.
        let spec: [(u8, usize); 23] = [
            (b'S', 12),
            (b'R', 39),
            (b'H', 25),
            (b'Y', 20),
            (b'L', 26),
            (b'V', 35),
            (b'W', 12),
            (b'K', 28),
            (b'J', 35),
            (b'h', 21),
            (b'A', 36),
            (b'F', 40),
            (b'E', 31),
            (b'C', 36),
            (b'X', 23),
            (b'D', 19),
            (b'U', 35),
            (b'P', 44),
            (b'Q', 40),
            (b'B', 19),
            (b'I', 50),
            (b'N', 20),
            (b'O', 48),
        ];
        for (msg, (tag, len)) in all.iter().zip(spec) {
            assert_eq!((msg.tag(), msg.len()), (tag, len));
            assert_eq!(message_len(tag), Some(len));
            let mut bytes = Vec::new();
            msg.encode(&mut bytes).expect("encodable");
            assert_eq!(bytes.len(), len);
            let decoded = decode(&bytes).expect("decodes");
            assert_eq!(decoded.tag(), tag);
            assert_eq!(decoded.bytes(), &bytes[..]);
            assert_eq!(
                decoded.to_data(),
                *msg,
                "round trip of {:?}",
                char::from(tag)
            );
        }
    }

    #[test]
    fn an_attributed_add_reads_as_an_add() {
        let data = AddOrderMpidData {
            header: Header {
                stock_locate: 7,
                tracking_number: 1,
                timestamp: 0x1f1a_2b3c_4d5e,
            },
            order_ref: 42,
            side: b'B',
            shares: 250,
            stock: *b"MSFT    ",
            price: 4_123_400,
            attribution: *b"GSCO",
        };
        let mut bytes = Vec::new();
        MessageData::AddOrderMpid(data)
            .encode(&mut bytes)
            .expect("encodable");
        let Ok(Message::AddOrderMpid(m)) = decode(&bytes) else {
            panic!("an F message");
        };
        let add = m.add_order().to_data();
        assert_eq!(
            (
                add.header,
                add.order_ref,
                add.side,
                add.shares,
                add.stock,
                add.price
            ),
            (data.header, 42, b'B', 250, *b"MSFT    ", 4_123_400)
        );
    }

    #[test]
    fn add_order_bytes_match_the_spec_layout() {
        // Hand-assembled per ITCH 5.0 §4.3.1.
        let mut expected = vec![b'A', 0x00, 0x07, 0x00, 0x01];
        expected.extend_from_slice(&[0x1f, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e]); // timestamp
        expected.extend_from_slice(&42u64.to_be_bytes());
        expected.push(b'S');
        expected.extend_from_slice(&250u32.to_be_bytes());
        expected.extend_from_slice(b"MSFT    ");
        expected.extend_from_slice(&4_123_400u32.to_be_bytes()); // 412.3400
        let msg = MessageData::AddOrder(AddOrderData {
            header: Header {
                stock_locate: 7,
                tracking_number: 1,
                timestamp: 0x1f1a_2b3c_4d5e,
            },
            order_ref: 42,
            side: b'S',
            shares: 250,
            stock: *b"MSFT    ",
            price: 4_123_400,
        });
        let mut bytes = Vec::new();
        msg.encode(&mut bytes).expect("encodable");
        assert_eq!(bytes, expected);
        let Ok(Message::AddOrder(view)) = decode(&bytes) else {
            panic!("not an add order")
        };
        assert_eq!(view.timestamp(), 0x1f1a_2b3c_4d5e);
        assert_eq!(price4(view.price()), 412_340_000_000);
        assert_eq!(shares(view.shares()), 250 * SIZE_SCALE);
        assert_eq!(side(view.side()), Some(Side::Ask));
        assert_eq!(trim_alpha(&view.stock()), b"MSFT");
    }

    #[test]
    fn conversions_are_exact_and_checked() {
        assert_eq!(price4(1), 100_000);
        assert_eq!(price4(u32::MAX), 4_294_967_295 * 100_000);
        assert_eq!(price8(1), Some(10));
        assert_eq!(price8(123_400_010_002), Some(1_234_000_100_020));
        assert_eq!(price8(u64::MAX), None);
        assert_eq!(shares64(u64::MAX), None);
        assert_eq!(trim_alpha(b"        "), b"");
        assert_eq!(trim_alpha(b"A B     "), b"A B");
    }

    #[test]
    fn errors_name_the_byte() {
        assert_eq!(
            decode(&[]),
            Err(DecodeError {
                offset: 0,
                kind: DecodeErrorKind::Truncated {
                    needed: 1,
                    available: 0
                }
            })
        );
        assert_eq!(
            decode(b"Z123"),
            Err(DecodeError {
                offset: 0,
                kind: DecodeErrorKind::UnknownType(b'Z')
            })
        );
        let mut d = Vec::new();
        MessageData::OrderDelete(OrderDeleteData::default())
            .encode(&mut d)
            .expect("encodable");
        assert_eq!(
            decode(&d[..10]).map_err(|e| e.offset),
            Err(10),
            "short: the first missing byte"
        );
        d.push(0);
        let err = decode(&d).expect_err("one byte too many");
        assert_eq!(err.offset, 19);
        assert!(matches!(
            err.kind,
            DecodeErrorKind::WrongLength {
                tag: b'D',
                expected: 19,
                actual: 20
            }
        ));
        let too_late = OrderDeleteData {
            header: Header {
                timestamp: MAX_TIMESTAMP + 1,
                ..Header::default()
            },
            order_ref: 1,
        };
        assert_eq!(
            MessageData::OrderDelete(too_late).encode(&mut Vec::new()),
            Err(EncodeError::TimestampOverflow(MAX_TIMESTAMP + 1))
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics_and_errors_stay_in_bounds(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            match decode(&bytes) {
                Ok(m) => {
                    prop_assert_eq!(Some(bytes.len()), message_len(m.tag()));
                    // Reading every field of any accepted message must not panic either.
                    let data = m.to_data();
                    let mut back = Vec::new();
                    data.encode(&mut back).expect("decoded timestamps fit 48 bits");
                    prop_assert_eq!(back, bytes);
                }
                Err(e) => prop_assert!(e.offset <= bytes.len()),
            }
        }

        #[test]
        fn truncations_of_valid_messages_are_errors(index in 0..23usize, cut in 0..50usize) {
            let msg = one_of_each()[index];
            let mut bytes = Vec::new();
            msg.encode(&mut bytes).expect("encodable");
            let cut = cut % bytes.len();
            let err = decode(&bytes[..cut]).expect_err("a strict prefix is never a message");
            prop_assert_eq!(err.offset, cut);
        }
    }
}
