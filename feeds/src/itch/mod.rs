//! Nasdaq TotalView-ITCH 5.0: messages, files, MoldUDP64, and order books built from them.
//!
//! Layers, bottom up, each usable alone:
//!
//! * [`messages`] — every ITCH 5.0 message type as a zero-copy view ([`decode`]) and an
//!   owned value that encodes byte-exactly ([`MessageData::encode`]);
//! * [`file`] — the 2-byte length-prefixed framing of Nasdaq's sample files, and
//!   [`ItchFileFeed`], which replays any `Read`;
//! * [`moldudp`] — MoldUDP64 packets, and [`MoldUdpFeed`], which receives them on a UDP
//!   socket with sequence-gap detection;
//! * [`builder`] — [`ItchBookBuilder`], which turns messages into per-stock order books
//!   and tickwire events (book deltas, quotes, trades, trading status); both feeds use it;
//! * [`generator`] — a seeded generator of realistic ITCH days for tests and benchmarks.
//!
//! Data flows bytes → frame or packet → [`Message`] view → [`ItchBookBuilder::apply`] →
//! events in the ring's claimed slots; nothing is allocated per message.
//!
//! **Units.** ITCH prices have four implied decimals (eight in MWCB levels) and become
//! tickwire's 10⁻⁹ price units exactly (× 10⁵, × 10); share counts become 10⁻⁸ size units
//! (× [`SIZE_SCALE`](tickwire_engine::event::SIZE_SCALE)); timestamps, ns since midnight,
//! become ns since the Unix epoch by adding [`ItchConfig::midnight_ns`].
//!
//! ```
//! use tickwire_engine::event::{Event, EventKind};
//! use tickwire_feeds::{Feed, FeedStatus, Sink};
//! use tickwire_feeds::itch::{generate_file, GeneratorConfig, ItchConfig, ItchFileFeed};
//!
//! // A generated day for 4 stocks, replayed through the order books.
//! let day = generate_file(&GeneratorConfig { stocks: 4, messages: 2_000, ..Default::default() })?;
//! let mut feed = ItchFileFeed::new("day.itch", day.as_slice(), ItchConfig::default());
//! let (mut quotes, mut trades) = (0, 0);
//! let mut slots = vec![Event::default(); 256];
//! loop {
//!     let mut sink = Sink::from_slice(&mut slots);
//!     let status = feed.poll(&mut sink)?;
//!     for event in sink.events() {
//!         match event.kind() {
//!             Some(EventKind::Quote) => quotes += 1,
//!             Some(EventKind::Trade) => trades += 1,
//!             _ => {}
//!         }
//!     }
//!     if status == FeedStatus::End { break }
//! }
//! assert!(quotes > 0 && trades > 0);
//! assert_eq!(feed.builder().stats().unknown_orders, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod builder;
pub mod file;
pub mod generator;
pub mod messages;
pub mod moldudp;

pub use builder::{
    BuildError, BuildStats, ItchBookBuilder, ItchConfig, MAX_EVENTS_PER_MESSAGE, MismatchPolicy,
    session_midnight_ns,
};
pub use file::{Frames, ItchFileFeed, next_frame, write_frame};
pub use generator::{GeneratorConfig, ItchGenerator, generate_file};
pub use messages::{DecodeError, DecodeErrorKind, EncodeError, Message, MessageData, decode};
pub use moldudp::{MoldPacket, MoldPacketWriter, MoldUdpFeed, MoldUdpStats, PacketKind};
