//! ITCH files: the stream of 2-byte big-endian length-prefixed messages that Nasdaq's
//! sample files (`ftp://emi.nasdaq.com/ITCH/`, e.g. `01302019.NASDAQ_ITCH50`) use, and the
//! [`ItchFileFeed`] that replays one through the book builder.
//!
//! [`next_frame`] and [`Frames`] are the sans-IO framing over bytes in memory;
//! [`write_frame`] is its inverse. [`ItchFileFeed`] reads any [`Read`] through a buffer
//! (128 KiB by default: one `read` per ~4 000 messages), decodes each message in place
//! and hands it to an [`ItchBookBuilder`]. Errors carry the byte offset in the stream
//! ([`Position::Byte`]): of the first byte of a truncated frame, or of the bad byte in a
//! malformed message.
//!
//! ```
//! use tickwire_engine::event::Event;
//! use tickwire_feeds::{Feed, FeedStatus, Sink};
//! use tickwire_feeds::itch::{generate_file, GeneratorConfig, ItchConfig, ItchFileFeed};
//!
//! let bytes = generate_file(&GeneratorConfig { stocks: 3, messages: 500, ..Default::default() })?;
//! let mut feed = ItchFileFeed::new("sample", bytes.as_slice(), ItchConfig::default());
//! let mut slots = vec![Event::default(); 256];
//! let mut events = 0;
//! loop {
//!     let mut sink = Sink::from_slice(&mut slots);
//!     let status = feed.poll(&mut sink)?;
//!     events += sink.written();
//!     if status == FeedStatus::End { break }
//! }
//! assert!(events > 500);
//! assert_eq!(feed.instruments().len(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::Path;
use std::sync::Arc;

use tickwire_engine::clock::{Clock, WallClock};
use tickwire_engine::instrument::InstrumentRegistry;

use super::builder::{FrameError, ItchBookBuilder, ItchConfig, MAX_EVENTS_PER_MESSAGE};
use super::messages::{DecodeError, DecodeErrorKind, EncodeError, MessageData};
use crate::{Feed, FeedError, FeedErrorKind, FeedStatus, Position, Sink};

/// Bytes in a frame's length prefix (2, big-endian, as in Nasdaq's sample files).
pub const LENGTH_PREFIX: usize = 2;

/// Default read buffer: 128 KiB ([`MIN_BUFFER`]), about 4 000 messages of the ~34-byte
/// average of a TotalView day, so the `read` calls cost nothing per message. Not larger:
/// each refill writes the whole buffer, and a 1 MiB one (the size of this machine's L2)
/// pushed the order table and books out of L2 on every refill, twice the L2 misses per
/// message (cachegrind, 1 MiB L2, on the benchmark's generated day: 2.25 against 1.19).
pub const DEFAULT_BUFFER: usize = 1 << 17;

/// The smallest buffer the feed accepts: room for the largest possible frame (a 2-byte
/// prefix and 65 535 bytes) and then some.
pub const MIN_BUFFER: usize = 1 << 17;

/// Messages decoded per poll at most, so a run of messages that make no events (a stock
/// directory) cannot hold the ingest agent from noticing a stop.
const MESSAGES_PER_POLL: usize = 4096;

/// The frame at the start of `bytes`: `Ok(Some((message, frame_len)))`, or `Ok(None)`
/// when `bytes` holds only part of it. A zero length prefix is an error (offset 0).
#[inline(always)]
pub fn next_frame(bytes: &[u8]) -> Result<Option<(&[u8], usize)>, DecodeError> {
    let Some(&[hi, lo]) = bytes.first_chunk::<LENGTH_PREFIX>() else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len == 0 {
        return Err(DecodeError {
            offset: 0,
            kind: DecodeErrorKind::Empty,
        });
    }
    let end = LENGTH_PREFIX + len;
    Ok(bytes.get(LENGTH_PREFIX..end).map(|m| (m, end)))
}

/// The frame at the start of `bytes` if it is whole: [`next_frame`] without its error, for
/// a prefetch (which ignores an empty message).
#[inline(always)]
fn peek_frame(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let &[hi, lo] = bytes.first_chunk::<LENGTH_PREFIX>()?;
    let end = LENGTH_PREFIX + usize::from(u16::from_be_bytes([hi, lo]));
    bytes.get(LENGTH_PREFIX..end).map(|m| (m, end))
}

/// Appends `message` to `out` with its length prefix.
pub fn write_frame(message: &MessageData, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let len = u16::try_from(message.len()).map_err(|_| EncodeError::TooLong(message.len()))?;
    out.extend_from_slice(&len.to_be_bytes());
    message.encode(out)
}

/// The messages of a whole in-memory stream, with the offset of each frame:
/// `Ok((offset, message_bytes))`. A stream ending mid-frame yields one `Truncated` error
/// (with the frame's offset) and then ends.
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Frames<'a> {
    /// The frames of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    /// Offset of the next frame.
    pub fn offset(&self) -> usize {
        self.at
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<(usize, &'a [u8]), DecodeError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.bytes.get(self.at..).filter(|r| !r.is_empty())?;
        let at = self.at;
        match next_frame(rest) {
            Ok(Some((message, len))) => {
                self.at += len;
                Some(Ok((at, message)))
            }
            Ok(None) => {
                self.at = self.bytes.len();
                Some(Err(truncated(rest).shifted(at)))
            }
            Err(e) => {
                self.at = self.bytes.len();
                Some(Err(e.shifted(at)))
            }
        }
    }
}

/// The error for a stream that ends inside the frame `rest` starts with (offset 0 = the
/// frame's first byte).
fn truncated(rest: &[u8]) -> DecodeError {
    let needed = match rest.first_chunk::<LENGTH_PREFIX>() {
        Some(&[hi, lo]) => LENGTH_PREFIX + usize::from(u16::from_be_bytes([hi, lo])),
        None => LENGTH_PREFIX,
    };
    DecodeError {
        offset: 0,
        kind: DecodeErrorKind::Truncated {
            needed,
            available: rest.len(),
        },
    }
}

/// Replays an ITCH file (any [`Read`]) through an [`ItchBookBuilder`].
///
/// Events are stamped with the exchange time (session midnight plus the message's
/// timestamp) and a receive time read from the clock once per poll (the wall clock unless
/// [`with_clock`](Self::with_clock) says otherwise). `seq` fields hold the message's index
/// in the file, from 1. After an error in one message, polling again continues with the
/// next message; after a truncated end, the feed reports [`FeedStatus::End`].
pub struct ItchFileFeed<R> {
    name: String,
    reader: R,
    buf: Box<[u8]>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    eof: bool,
    done: bool,
    messages: u64,
    builder: ItchBookBuilder,
    clock: Arc<dyn Clock>,
}

impl<R> std::fmt::Debug for ItchFileFeed<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItchFileFeed")
            .field("name", &self.name)
            .field("offset", &(self.base + self.start as u64))
            .field("messages", &self.messages)
            .field("stats", self.builder.stats())
            .finish()
    }
}

impl ItchFileFeed<File> {
    /// Opens the file at `path`.
    pub fn open(path: impl AsRef<Path>, config: ItchConfig) -> Result<Self, FeedError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let file = File::open(path)
            .map_err(|e| FeedError::new(name.clone(), Position::Byte(0), FeedErrorKind::Io(e)))?;
        Ok(Self::new(name, file, config))
    }
}

impl<R: Read> ItchFileFeed<R> {
    /// A feed named `name` (for errors) over `reader`, with a [`DEFAULT_BUFFER`] buffer.
    pub fn new(name: impl Into<String>, reader: R, config: ItchConfig) -> Self {
        Self::with_buffer(name, reader, config, DEFAULT_BUFFER)
    }

    /// As [`new`](Self::new) with a buffer of `capacity` bytes (at least [`MIN_BUFFER`]).
    pub fn with_buffer(
        name: impl Into<String>,
        reader: R,
        config: ItchConfig,
        capacity: usize,
    ) -> Self {
        Self {
            name: name.into(),
            reader,
            buf: vec![0; capacity.max(MIN_BUFFER)].into_boxed_slice(),
            start: 0,
            end: 0,
            base: 0,
            eof: false,
            done: false,
            messages: 0,
            builder: ItchBookBuilder::new(config),
            clock: Arc::new(WallClock),
        }
    }

    /// Uses `clock` for receive timestamps (a `ManualClock` makes replays repeatable).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The book builder: books, statistics.
    pub fn builder(&self) -> &ItchBookBuilder {
        &self.builder
    }

    /// Messages read so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    fn error(&self, offset: u64, kind: FeedErrorKind) -> FeedError {
        FeedError::new(self.name.clone(), Position::Byte(offset), kind)
    }

    /// Moves the unconsumed bytes to the front and reads more; false at the end of input.
    fn refill(&mut self) -> Result<bool, FeedError> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(self.error(self.base + self.end as u64, FeedErrorKind::Io(e)));
                }
            }
        }
    }
}

impl<R: Read + Send> Feed for ItchFileFeed<R> {
    fn name(&self) -> &str {
        &self.name
    }

    fn max_events_per_message(&self) -> usize {
        MAX_EVENTS_PER_MESSAGE
    }

    fn poll(&mut self, sink: &mut Sink<'_>) -> Result<FeedStatus, FeedError> {
        if self.done {
            return Ok(FeedStatus::End);
        }
        let receive_ts = self.clock.now_ns();
        let mut budget = MESSAGES_PER_POLL;
        while sink.remaining() >= MAX_EVENTS_PER_MESSAGE && budget > 0 {
            let offset = self.base + self.start as u64;
            let rest = &self.buf[self.start..self.end];
            match next_frame(rest) {
                Ok(Some((bytes, len))) => {
                    budget -= 1;
                    self.start += len;
                    self.messages += 1;
                    // Start loading what the next message will touch while this one is
                    // applied.
                    if let Some((next, _)) = rest.get(len..).and_then(peek_frame) {
                        self.builder.prefetch(next);
                    }
                    match self
                        .builder
                        .apply_frame(bytes, self.messages, receive_ts, sink)
                    {
                        Ok(_) => {}
                        Err(FrameError::Decode(e)) => {
                            let at = offset + (LENGTH_PREFIX + e.offset) as u64;
                            let kind = FeedErrorKind::Malformed(e.kind.to_string());
                            return Err(FeedError::new(
                                self.name.clone(),
                                Position::Byte(at),
                                kind,
                            ));
                        }
                        Err(FrameError::Build(e)) => {
                            let kind = FeedErrorKind::Malformed(e.to_string());
                            return Err(FeedError::new(
                                self.name.clone(),
                                Position::Byte(offset),
                                kind,
                            ));
                        }
                    }
                }
                Ok(None) if self.eof => {
                    self.done = true;
                    let rest = &self.buf[self.start..self.end];
                    if rest.is_empty() {
                        return Ok(FeedStatus::End);
                    }
                    let kind = match truncated(rest).kind {
                        DecodeErrorKind::Truncated { needed, available } => {
                            format!("the last frame needs {needed} bytes, {available} remain")
                        }
                        other => other.to_string(),
                    };
                    return Err(self.error(offset, FeedErrorKind::Truncated(kind)));
                }
                Ok(None) => self.eof = !self.refill()?,
                Err(e) => {
                    // A zero length prefix: skip the two bytes so the next poll moves on.
                    self.start += LENGTH_PREFIX;
                    return Err(self.error(offset, FeedErrorKind::Malformed(e.kind.to_string())));
                }
            }
        }
        Ok(FeedStatus::Active)
    }

    fn instruments(&self) -> &InstrumentRegistry {
        self.builder.instruments()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::itch::generator::{GeneratorConfig, generate_file};
    use crate::itch::messages::{OrderDeleteData, SystemEventData, decode};
    use proptest::prelude::*;
    use tickwire_engine::clock::ManualClock;
    use tickwire_engine::event::Event;

    fn day(messages: u64) -> Vec<u8> {
        generate_file(&GeneratorConfig {
            stocks: 4,
            messages,
            ..GeneratorConfig::default()
        })
        .expect("generated")
    }

    /// Polls `feed` to the end or the first error; the events and the outcome.
    fn drain<R: Read + Send>(feed: &mut ItchFileFeed<R>) -> (Vec<Event>, Result<(), FeedError>) {
        crate::test_util::drain(feed, 64)
    }

    fn feed<R: Read>(reader: R) -> ItchFileFeed<R> {
        ItchFileFeed::new("test", reader, ItchConfig::default())
            .with_clock(Arc::new(ManualClock::new(7)))
    }

    /// A reader that hands out at most `chunk` bytes per read.
    struct Trickle<'a> {
        bytes: &'a [u8],
        chunk: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.chunk.min(buf.len()).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    #[test]
    fn frames_round_trip_and_the_feed_reads_every_message() {
        let bytes = day(3_000);
        let frames: Vec<_> = Frames::new(&bytes)
            .collect::<Result<_, _>>()
            .expect("valid");
        assert!(frames.len() > 3_000);
        assert_eq!(frames[0].0, 0);
        let mut rebuilt = Vec::new();
        for (_, message) in &frames {
            write_frame(&decode(message).expect("valid").to_data(), &mut rebuilt)
                .expect("encodable");
        }
        assert_eq!(rebuilt, bytes);

        let mut f = feed(bytes.as_slice());
        let (events, outcome) = drain(&mut f);
        outcome.expect("a valid day");
        assert_eq!(f.messages(), frames.len() as u64);
        assert_eq!(f.builder().stats().unknown_orders, 0);
        assert!(events.iter().all(|e| e.receive_ts == 7));
        assert_eq!(
            f.poll(&mut Sink::from_slice(&mut [Event::default(); 3]))
                .ok(),
            Some(FeedStatus::End)
        );
    }

    #[test]
    fn small_reads_and_small_buffers_give_the_same_events() {
        let bytes = day(20_000);
        assert!(
            bytes.len() > MIN_BUFFER * 2,
            "the buffer wraps several times"
        );
        let (whole, outcome) = drain(&mut feed(bytes.as_slice()));
        outcome.expect("valid");
        for chunk in [1, 7, 4096] {
            let reader = Trickle {
                bytes: &bytes,
                chunk,
            };
            let mut f = ItchFileFeed::with_buffer("t", reader, ItchConfig::default(), 0)
                .with_clock(Arc::new(ManualClock::new(7)));
            let (events, outcome) = drain(&mut f);
            outcome.expect("valid");
            assert_eq!(events, whole, "chunk {chunk}");
        }
    }

    #[test]
    fn errors_name_the_byte_and_the_feed_moves_on() {
        let mut bytes = Vec::new();
        let s = MessageData::SystemEvent(SystemEventData::default());
        write_frame(&s, &mut bytes).expect("encodable"); // frame at 0..14
        bytes.extend_from_slice(&[0, 3, b'Z', 1, 2]); // 14..19, unknown type byte at 16
        bytes.extend_from_slice(&[0, 4, b'D', 1, 2, 3]); // 19..25, a 'D' of 4 bytes, not 19
        bytes.extend_from_slice(&[0, 0]); // 25..27, zero length
        write_frame(&s, &mut bytes).expect("encodable"); // 27..41
        bytes.extend_from_slice(&[0, 19, b'D']); // a frame from 41 that never ends
        let mut f = feed(bytes.as_slice());
        let mut slots = [Event::default(); 8];
        let mut positions = Vec::new();
        for _ in 0..10 {
            match f.poll(&mut Sink::from_slice(&mut slots)) {
                Ok(FeedStatus::End) => break,
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.feed, "test");
                    if let FeedErrorKind::Truncated(_) = e.kind {
                        assert_eq!(
                            e.to_string(),
                            "test: byte 41: truncated: the last frame needs 21 bytes, 3 remain"
                        );
                    }
                    positions.push((e.position, matches!(e.kind, FeedErrorKind::Truncated(_))));
                }
            }
        }
        assert_eq!(
            positions,
            [
                (Position::Byte(16), false),
                (Position::Byte(25), false), // the first byte the 4-byte 'D' lacks
                (Position::Byte(25), false),
                (Position::Byte(41), true),
            ]
        );
        assert_eq!(f.messages(), 4);

        let mut frames = Frames::new(&bytes[..20]);
        assert_eq!(
            frames.next().and_then(Result::ok).map(|(at, _)| at),
            Some(0)
        );
        assert_eq!(
            frames
                .next()
                .and_then(Result::ok)
                .map(|(at, m)| (at, m.len())),
            Some((14, 3))
        );
        let err = frames.next().and_then(Result::err).expect("truncated");
        assert_eq!(err.offset, 19);
        assert!(frames.next().is_none());
    }

    #[test]
    fn a_missing_file_is_an_io_error() {
        let err = ItchFileFeed::open("/nonexistent/day.itch", ItchConfig::default())
            .expect_err("no such file");
        assert!(matches!(err.kind, FeedErrorKind::Io(_)));
        assert_eq!(err.feed, "/nonexistent/day.itch");
    }

    fn small_day() -> Vec<u8> {
        day(300)
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut f = feed(bytes.as_slice());
            let mut slots = [Event::default(); 8];
            for _ in 0..2_000 {
                match f.poll(&mut Sink::from_slice(&mut slots)) {
                    Ok(FeedStatus::End) => break,
                    Ok(_) => {}
                    Err(e) => match e.position {
                        Position::Byte(at) => prop_assert!(at <= bytes.len() as u64),
                        other => prop_assert!(false, "position {other:?}"),
                    },
                }
            }
            for frame in Frames::new(&bytes) {
                if let Err(e) = frame {
                    prop_assert!(e.offset <= bytes.len());
                }
            }
        }

        #[test]
        fn truncated_days_keep_every_event_before_the_cut(cut in 0..8_000usize) {
            let bytes = small_day();
            let cut = cut % bytes.len();
            let (whole, _) = drain(&mut feed(bytes.as_slice()));
            let (events, outcome) = drain(&mut feed(&bytes[..cut]));
            prop_assert_eq!(&whole[..events.len()], &events[..], "accepted events are intact");
            // The cut lands on a frame boundary (clean end) or inside one (an error there).
            let boundaries: Vec<usize> = Frames::new(&bytes).map(|f| f.map(|(at, _)| at)).collect::<Result<_, _>>().expect("valid");
            match outcome {
                Ok(()) => prop_assert!(cut == 0 || boundaries.contains(&cut)),
                Err(e) => {
                    prop_assert!(matches!(e.kind, FeedErrorKind::Truncated(_)));
                    let start = boundaries.iter().copied().filter(|&b| b <= cut).max().unwrap_or(0);
                    prop_assert_eq!(e.position, Position::Byte(start as u64));
                }
            }
        }
    }

    #[test]
    fn deletes_of_unknown_orders_are_skipped_by_default() {
        let mut bytes = Vec::new();
        let d = MessageData::OrderDelete(OrderDeleteData {
            order_ref: 5,
            ..Default::default()
        });
        write_frame(&d, &mut bytes).expect("encodable");
        let mut f = feed(bytes.as_slice());
        let (events, outcome) = drain(&mut f);
        outcome.expect("skipped, not an error");
        assert!(events.is_empty());
        assert_eq!(f.builder().stats().unknown_orders, 1);
    }
}
