//! MoldUDP64: how Nasdaq multicasts ITCH. Packet decoding and encoding, and
//! [`MoldUdpFeed`], which receives datagrams on a UDP socket, detects sequence gaps and
//! drives an [`ItchBookBuilder`].
//!
//! A downstream packet (*MoldUDP64 Protocol Specification* v1.00, "Downstream Packet") is
//! a 20-byte header — session (10 bytes, ASCII), sequence number of the first message
//! (8 bytes), message count (2 bytes), all big-endian — followed by `count` message blocks,
//! each a 2-byte length and that many bytes. A count of 0 is a heartbeat (the sequence is
//! the next one expected); `0xFFFF` ends the session. [`MoldPacket::parse`] validates the
//! whole framing before anything is read from it, so its message iterator cannot fail.
//!
//! **Gaps.** The feed expects each packet to start where the previous one ended (the first
//! packet received sets the start). A packet or heartbeat further on means messages were
//! lost: the feed counts the gap and the missed messages in [`MoldUdpStats`], and the next
//! event it writes carries [`flags::GAP`]. Messages it has already seen (a duplicate or
//! overlapping packet, as an A/B feed arbiter would deliver) are skipped and counted.
//! Retransmission requests are not implemented: a gap is reported, not repaired.
//!
//! ```
//! use tickwire_feeds::itch::moldudp::{MoldPacket, MoldPacketWriter, PacketKind};
//! use tickwire_feeds::itch::messages::{MessageData, OrderDeleteData};
//!
//! let mut writer = MoldPacketWriter::new(*b"SESSION001", 41);
//! writer.push(&MessageData::OrderDelete(OrderDeleteData { order_ref: 7, ..Default::default() }))?;
//! writer.push(&MessageData::OrderDelete(OrderDeleteData { order_ref: 8, ..Default::default() }))?;
//! let packet = MoldPacket::parse(writer.bytes())?;
//! assert_eq!((packet.sequence(), packet.count(), packet.kind()), (41, 2, PacketKind::Messages));
//! let seqs: Vec<u64> = packet.messages().map(|(seq, _, _)| seq).collect();
//! assert_eq!(seqs, [41, 42]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`flags::GAP`]: tickwire_engine::event::flags::GAP

use std::io::ErrorKind;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::Arc;

use tickwire_engine::clock::{Clock, WallClock};
use tickwire_engine::event::flags;
use tickwire_engine::instrument::InstrumentRegistry;

use super::builder::{FrameError, ItchBookBuilder, ItchConfig, MAX_EVENTS_PER_MESSAGE};
use super::messages::{DecodeError, DecodeErrorKind, EncodeError, MessageData};
use crate::{Feed, FeedError, FeedErrorKind, FeedStatus, Position, Sink};

/// Session field length (MoldUDP64 v1.00, "Downstream Packet": Session, 10 bytes).
pub const SESSION_LEN: usize = 10;
/// Packet header length: session 10, sequence number 8, message count 2 (MoldUDP64 v1.00).
pub const HEADER_LEN: usize = 20;
/// Message count of an end-of-session packet (MoldUDP64 v1.00, "End of Session").
pub const END_OF_SESSION: u16 = 0xFFFF;
/// Message count of a heartbeat (MoldUDP64 v1.00, "Heartbeats").
pub const HEARTBEAT: u16 = 0;
/// Largest UDP payload (65 535 minus the 8-byte UDP header; IPv6 jumbograms aside).
pub const MAX_DATAGRAM: usize = 65_527;

/// Datagrams processed per poll at most (each may hold many messages), so a flood of
/// heartbeats or duplicates cannot keep the ingest agent from noticing a stop.
const DATAGRAMS_PER_POLL: usize = 64;

/// What a packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// Carries one or more messages.
    Messages,
    /// Carries none; its sequence number is the next one to be sent.
    Heartbeat,
    /// The session is over; its sequence number is one past the last message.
    EndOfSession,
}

/// A validated MoldUDP64 downstream packet, borrowed from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoldPacket<'a> {
    session: [u8; SESSION_LEN],
    sequence: u64,
    count: u16,
    datagram: &'a [u8],
}

impl<'a> MoldPacket<'a> {
    /// Parses and validates `datagram`: a full header, exactly `count` message blocks that
    /// end where the datagram ends, no empty block. Error offsets are from the datagram's
    /// start (for a bad block, the block's first byte).
    pub fn parse(datagram: &'a [u8]) -> Result<Self, DecodeError> {
        let Some((header, mut rest)) = datagram.split_first_chunk::<HEADER_LEN>() else {
            return Err(DecodeError {
                offset: 0,
                kind: DecodeErrorKind::Truncated {
                    needed: HEADER_LEN,
                    available: datagram.len(),
                },
            });
        };
        let mut session = [0u8; SESSION_LEN];
        session.copy_from_slice(&header[..SESSION_LEN]);
        let mut sequence = [0u8; 8];
        sequence.copy_from_slice(&header[SESSION_LEN..SESSION_LEN + 8]);
        let sequence = u64::from_be_bytes(sequence);
        let count = u16::from_be_bytes([header[18], header[19]]);
        let blocks = if count == END_OF_SESSION { 0 } else { count };
        let mut at = HEADER_LEN;
        for _ in 0..blocks {
            let Some((&[hi, lo], body)) = rest.split_first_chunk::<2>() else {
                return Err(DecodeError {
                    offset: at,
                    kind: DecodeErrorKind::Truncated {
                        needed: 2,
                        available: rest.len(),
                    },
                });
            };
            let len = usize::from(u16::from_be_bytes([hi, lo]));
            if len == 0 {
                return Err(DecodeError {
                    offset: at,
                    kind: DecodeErrorKind::Empty,
                });
            }
            if body.len() < len {
                return Err(DecodeError {
                    offset: at,
                    kind: DecodeErrorKind::Truncated {
                        needed: 2 + len,
                        available: rest.len(),
                    },
                });
            }
            rest = &body[len..];
            at += 2 + len;
        }
        if !rest.is_empty() {
            return Err(DecodeError {
                offset: at,
                kind: DecodeErrorKind::TrailingBytes(rest.len()),
            });
        }
        Ok(Self {
            session,
            sequence,
            count,
            datagram,
        })
    }

    /// The session name.
    pub fn session(&self) -> [u8; SESSION_LEN] {
        self.session
    }

    /// Sequence number of the first message (of the next one, for heartbeats and
    /// end-of-session packets).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The raw message count field.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Messages, heartbeat or end of session.
    pub fn kind(&self) -> PacketKind {
        match self.count {
            HEARTBEAT => PacketKind::Heartbeat,
            END_OF_SESSION => PacketKind::EndOfSession,
            _ => PacketKind::Messages,
        }
    }

    /// Number of messages carried.
    pub fn message_count(&self) -> u16 {
        match self.kind() {
            PacketKind::Messages => self.count,
            _ => 0,
        }
    }

    /// The sequence number expected after this packet.
    pub fn next_sequence(&self) -> u64 {
        self.sequence
            .saturating_add(u64::from(self.message_count()))
    }

    /// The messages: `(sequence number, offset of the message in the datagram, bytes)`.
    pub fn messages(&self) -> MoldMessages<'a> {
        MoldMessages {
            datagram: self.datagram,
            at: HEADER_LEN,
            sequence: self.sequence,
            left: self.message_count(),
        }
    }
}

/// The messages of a [`MoldPacket`], in order.
#[derive(Debug, Clone)]
pub struct MoldMessages<'a> {
    datagram: &'a [u8],
    at: usize,
    sequence: u64,
    left: u16,
}

impl<'a> Iterator for MoldMessages<'a> {
    type Item = (u64, usize, &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        // The packet was validated in `parse`, so these reads succeed.
        let (message, len) = block_at(self.datagram, self.at)?;
        let item = (self.sequence, self.at + 2, message);
        self.at += len;
        self.sequence = self.sequence.wrapping_add(1);
        self.left -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.left), Some(usize::from(self.left)))
    }
}

/// The message block at `at`: its message and the block's length (prefix included).
#[inline(always)]
fn block_at(datagram: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let &[hi, lo] = datagram.get(at..)?.first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    Some((datagram.get(at + 2..at + 2 + len)?, 2 + len))
}

/// Builds one downstream packet.
#[derive(Debug, Clone)]
pub struct MoldPacketWriter {
    buf: Vec<u8>,
    count: u16,
}

impl MoldPacketWriter {
    /// An empty packet (a heartbeat until a message is pushed) of `session` whose first
    /// message will have sequence number `sequence`.
    pub fn new(session: [u8; SESSION_LEN], sequence: u64) -> Self {
        let mut buf = Vec::with_capacity(1500);
        buf.extend_from_slice(&session);
        buf.extend_from_slice(&sequence.to_be_bytes());
        buf.extend_from_slice(&HEARTBEAT.to_be_bytes());
        Self { buf, count: 0 }
    }

    /// An end-of-session packet; `next_sequence` is one past the session's last message.
    pub fn end_of_session(session: [u8; SESSION_LEN], next_sequence: u64) -> Vec<u8> {
        let mut writer = Self::new(session, next_sequence);
        writer.set_count(END_OF_SESSION);
        writer.buf
    }

    /// Appends an encoded ITCH message.
    pub fn push(&mut self, message: &MessageData) -> Result<(), EncodeError> {
        let mark = self.buf.len();
        self.reserve_block(message.len())?;
        if let Err(e) = message.encode(&mut self.buf) {
            self.buf.truncate(mark);
            return Err(e);
        }
        self.set_count(self.count + 1);
        Ok(())
    }

    fn reserve_block(&mut self, len: usize) -> Result<(), EncodeError> {
        let prefix = u16::try_from(len).map_err(|_| EncodeError::TooLong(len))?;
        if self.count >= END_OF_SESSION - 1 {
            return Err(EncodeError::PacketFull(self.count));
        }
        self.buf.extend_from_slice(&prefix.to_be_bytes());
        Ok(())
    }

    /// Appends raw message bytes (no validation: tests use this to send bad messages).
    pub fn push_bytes(&mut self, message: &[u8]) -> Result<(), EncodeError> {
        self.reserve_block(message.len())?;
        self.buf.extend_from_slice(message);
        self.set_count(self.count + 1);
        Ok(())
    }

    fn set_count(&mut self, count: u16) {
        self.count = count;
        self.buf[HEADER_LEN - 2..HEADER_LEN].copy_from_slice(&count.to_be_bytes());
    }

    /// Messages so far.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// The packet as it stands.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The packet.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Counters of a [`MoldUdpFeed`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MoldUdpStats {
    /// Datagrams received.
    pub datagrams: u64,
    /// Heartbeats among them.
    pub heartbeats: u64,
    /// Datagrams from a session other than the first one seen, ignored.
    pub foreign_session: u64,
    /// Times the sequence jumped ahead.
    pub gaps: u64,
    /// Messages skipped over by those jumps.
    pub missed_messages: u64,
    /// Messages received again (sequence below the expected one), skipped.
    pub duplicate_messages: u64,
}

/// Live ITCH over MoldUDP64 on a UDP socket (unicast or an already-joined multicast
/// group), non-blocking: a poll with nothing to read returns [`FeedStatus::Idle`].
///
/// Events are stamped with the receive time of their datagram (from the clock, the wall
/// clock by default) and carry the MoldUDP64 sequence number in `seq`. An error names the
/// message's sequence number ([`Position::Packet`]) or, for a datagram that is not a
/// packet, the datagram's count from 1; the bad message or datagram is consumed, so polling
/// again continues after it.
pub struct MoldUdpFeed {
    name: String,
    socket: UdpSocket,
    buf: Box<[u8]>,
    /// The datagram being worked through: its length, the offset of its next block, that
    /// block's sequence number and the blocks left.
    len: usize,
    cursor: usize,
    cursor_seq: u64,
    left: u16,
    receive_ts: u64,
    session: Option<[u8; SESSION_LEN]>,
    expected: Option<u64>,
    ended: bool,
    stats: MoldUdpStats,
    builder: ItchBookBuilder,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MoldUdpFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoldUdpFeed")
            .field("name", &self.name)
            .field("expected", &self.expected)
            .field("stats", &self.stats)
            .finish()
    }
}

impl MoldUdpFeed {
    /// Binds a socket to `addr` and receives on it.
    pub fn bind(addr: impl ToSocketAddrs, config: ItchConfig) -> Result<Self, FeedError> {
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map(Iterator::collect)
            .map_err(|e| FeedError::new("moldudp64", Position::Packet(0), FeedErrorKind::Io(e)))?;
        let name = addrs
            .first()
            .map_or_else(|| "moldudp64".to_owned(), |a| format!("moldudp64://{a}"));
        let socket = UdpSocket::bind(addrs.as_slice())
            .map_err(|e| FeedError::new(name.clone(), Position::Packet(0), FeedErrorKind::Io(e)))?;
        Self::new(name, socket, config)
    }

    /// Receives on `socket` (set to non-blocking here).
    pub fn new(
        name: impl Into<String>,
        socket: UdpSocket,
        config: ItchConfig,
    ) -> Result<Self, FeedError> {
        let name = name.into();
        socket
            .set_nonblocking(true)
            .map_err(|e| FeedError::new(name.clone(), Position::Packet(0), FeedErrorKind::Io(e)))?;
        Ok(Self {
            name,
            socket,
            buf: vec![0; MAX_DATAGRAM + 1].into_boxed_slice(),
            len: 0,
            cursor: 0,
            cursor_seq: 0,
            left: 0,
            receive_ts: 0,
            session: None,
            expected: None,
            ended: false,
            stats: MoldUdpStats::default(),
            builder: ItchBookBuilder::new(config),
            clock: Arc::new(WallClock),
        })
    }

    /// Starts from `sequence` instead of the first packet's: messages before it count as
    /// duplicates, a first packet after it as a gap.
    pub fn expecting(mut self, sequence: u64) -> Self {
        self.expected = Some(sequence);
        self
    }

    /// Uses `clock` for receive timestamps.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Counters.
    pub fn stats(&self) -> &MoldUdpStats {
        &self.stats
    }

    /// The sequence number expected next (`None` before the first packet).
    pub fn expected_sequence(&self) -> Option<u64> {
        self.expected
    }

    /// The book builder: books, statistics.
    pub fn builder(&self) -> &ItchBookBuilder {
        &self.builder
    }

    fn error(&self, position: u64, kind: FeedErrorKind) -> FeedError {
        FeedError::new(self.name.clone(), Position::Packet(position), kind)
    }

    /// Takes in the datagram of `len` bytes now in `buf`.
    fn accept(&mut self, len: usize) -> Result<(), FeedError> {
        self.stats.datagrams += 1;
        self.receive_ts = self.clock.now_ns();
        let packet = match MoldPacket::parse(&self.buf[..len]) {
            Ok(p) => p,
            Err(e) => {
                let detail = format!("datagram {}: {e}", self.stats.datagrams);
                return Err(self.error(self.stats.datagrams, FeedErrorKind::Malformed(detail)));
            }
        };
        match self.session {
            None => self.session = Some(packet.session()),
            Some(s) if s != packet.session() => {
                self.stats.foreign_session += 1;
                return Ok(());
            }
            Some(_) => {}
        }
        let sequence = packet.sequence();
        match self.expected {
            Some(expected) if sequence > expected => {
                self.stats.gaps += 1;
                self.stats.missed_messages += sequence - expected;
                self.builder.flag_next(flags::GAP);
                self.expected = Some(sequence);
            }
            Some(_) => {}
            None => self.expected = Some(sequence),
        }
        match packet.kind() {
            PacketKind::Heartbeat => self.stats.heartbeats += 1,
            PacketKind::EndOfSession => self.ended = true,
            PacketKind::Messages => {
                self.len = len;
                self.cursor = HEADER_LEN;
                self.cursor_seq = sequence;
                self.left = packet.count();
            }
        }
        Ok(())
    }
}

impl Feed for MoldUdpFeed {
    fn name(&self) -> &str {
        &self.name
    }

    fn max_events_per_message(&self) -> usize {
        MAX_EVENTS_PER_MESSAGE
    }

    fn poll(&mut self, sink: &mut Sink<'_>) -> Result<FeedStatus, FeedError> {
        let mut datagrams = 0;
        let mut progressed = false;
        while sink.remaining() >= MAX_EVENTS_PER_MESSAGE {
            if self.left == 0 {
                if self.ended {
                    return Ok(FeedStatus::End);
                }
                if datagrams == DATAGRAMS_PER_POLL {
                    break;
                }
                match self.socket.recv(&mut self.buf) {
                    Ok(len) => {
                        datagrams += 1;
                        progressed = true;
                        self.accept(len)?;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(self.error(self.stats.datagrams, FeedErrorKind::Io(e))),
                }
                continue;
            }
            let Some((bytes, block_len)) = block_at(&self.buf[..self.len], self.cursor) else {
                // Validated in `accept`; drop the rest of the datagram rather than panic.
                self.left = 0;
                continue;
            };
            let (seq, offset) = (self.cursor_seq, self.cursor + 2);
            self.cursor += block_len;
            self.cursor_seq = seq.wrapping_add(1);
            self.left -= 1;
            if self.expected.is_some_and(|expected| seq < expected) {
                self.stats.duplicate_messages += 1;
                continue;
            }
            self.expected = Some(seq.wrapping_add(1));
            // Start loading what the datagram's next message will touch while this one is
            // applied (as the file feed does).
            if self.left > 0 {
                if let Some((next, _)) = block_at(&self.buf[..self.len], self.cursor) {
                    self.builder.prefetch(next);
                }
            }
            match self.builder.apply_frame(bytes, seq, self.receive_ts, sink) {
                Ok(_) => {}
                Err(FrameError::Decode(e)) => {
                    let detail = format!(
                        "message {seq} (datagram {}, byte {}): {}",
                        self.stats.datagrams,
                        offset + e.offset,
                        e.kind
                    );
                    return Err(FeedError::new(
                        self.name.clone(),
                        Position::Packet(seq),
                        FeedErrorKind::Malformed(detail),
                    ));
                }
                Err(FrameError::Build(e)) => {
                    let detail = format!("message {seq}: {e}");
                    return Err(FeedError::new(
                        self.name.clone(),
                        Position::Packet(seq),
                        FeedErrorKind::Malformed(detail),
                    ));
                }
            }
        }
        Ok(if progressed || sink.written() > 0 {
            FeedStatus::Active
        } else {
            FeedStatus::Idle
        })
    }

    fn instruments(&self) -> &InstrumentRegistry {
        self.builder.instruments()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::itch::generator::{GeneratorConfig, ItchGenerator};
    use crate::itch::messages::{
        AddOrderData, Header, OrderDeleteData, StockDirectoryData, decode,
    };
    use proptest::prelude::*;
    use std::time::{Duration, Instant};
    use tickwire_engine::clock::ManualClock;
    use tickwire_engine::event::{Event, EventKind};

    const SESSION: [u8; SESSION_LEN] = *b"0000012345";

    fn add(order_ref: u64, price: u32) -> MessageData {
        MessageData::AddOrder(AddOrderData {
            header: Header {
                stock_locate: 1,
                ..Header::default()
            },
            order_ref,
            side: b'B',
            shares: 100,
            stock: *b"ZVZZT   ",
            price,
        })
    }

    fn directory() -> MessageData {
        MessageData::StockDirectory(StockDirectoryData {
            header: Header {
                stock_locate: 1,
                ..Header::default()
            },
            stock: *b"ZVZZT   ",
            ..StockDirectoryData::default()
        })
    }

    fn packet(sequence: u64, messages: &[MessageData]) -> Vec<u8> {
        let mut w = MoldPacketWriter::new(SESSION, sequence);
        for m in messages {
            w.push(m).expect("fits");
        }
        w.into_bytes()
    }

    struct Loopback {
        feed: MoldUdpFeed,
        sender: UdpSocket,
        to: SocketAddr,
    }

    impl Loopback {
        fn new() -> Self {
            let feed = MoldUdpFeed::bind("127.0.0.1:0", ItchConfig::default())
                .expect("bind loopback")
                .with_clock(Arc::new(ManualClock::new(11)));
            let to = feed.local_addr().expect("bound");
            let sender = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
            Self { feed, sender, to }
        }

        fn send(&self, datagram: &[u8]) {
            self.sender
                .send_to(datagram, self.to)
                .expect("send on loopback");
        }

        /// Polls until `datagrams` datagrams have been taken in (or 5 s pass), then drains
        /// what is buffered; the events and the errors seen.
        fn receive(&mut self, datagrams: u64) -> (Vec<Event>, Vec<FeedError>) {
            let deadline = Instant::now() + Duration::from_secs(5);
            let (mut events, mut errors) = (Vec::new(), Vec::new());
            let mut slots = [Event::default(); 16];
            loop {
                let mut sink = Sink::from_slice(&mut slots);
                let status = self.feed.poll(&mut sink);
                events.extend_from_slice(sink.events());
                match status {
                    Ok(FeedStatus::End) => break,
                    Ok(FeedStatus::Idle) if self.feed.stats().datagrams >= datagrams => break,
                    Ok(FeedStatus::Idle) => std::thread::sleep(Duration::from_millis(1)),
                    Ok(FeedStatus::Active) => {}
                    Err(e) => errors.push(e),
                }
                assert!(Instant::now() < deadline, "timed out waiting for datagrams");
            }
            (events, errors)
        }
    }

    #[test]
    fn packets_round_trip() {
        let messages: Vec<MessageData> = ItchGenerator::new(&GeneratorConfig {
            messages: 40,
            ..GeneratorConfig::default()
        })
        .collect();
        let bytes = packet(1_000, &messages);
        let p = MoldPacket::parse(&bytes).expect("valid");
        assert_eq!((p.session(), p.sequence()), (SESSION, 1_000));
        assert_eq!(usize::from(p.message_count()), messages.len());
        assert_eq!(p.next_sequence(), 1_000 + messages.len() as u64);
        for ((seq, offset, m), (i, original)) in p.messages().zip(messages.iter().enumerate()) {
            assert_eq!(seq, 1_000 + i as u64);
            assert_eq!(&bytes[offset..offset + m.len()], m);
            assert_eq!(decode(m).expect("valid").to_data(), *original);
        }
        let heartbeat = MoldPacketWriter::new(SESSION, 77).into_bytes();
        let p = MoldPacket::parse(&heartbeat).expect("valid");
        assert_eq!(
            (p.kind(), p.next_sequence(), p.messages().count()),
            (PacketKind::Heartbeat, 77, 0)
        );
        let end = MoldPacketWriter::end_of_session(SESSION, 78);
        let p = MoldPacket::parse(&end).expect("valid");
        assert_eq!(
            (p.kind(), p.count(), p.message_count()),
            (PacketKind::EndOfSession, 0xFFFF, 0)
        );
    }

    #[test]
    fn malformed_packets_name_the_offset() {
        let good = packet(1, &[add(1, 100), add(2, 100)]);
        let err = |bytes: &[u8]| MoldPacket::parse(bytes).expect_err("malformed");
        assert_eq!(err(&good[..19]).offset, 0);
        let second_block = HEADER_LEN + 2 + 36;
        let e = err(&good[..good.len() - 1]);
        assert_eq!(e.offset, second_block);
        assert!(matches!(e.kind, DecodeErrorKind::Truncated { .. }));
        let mut extra = good.clone();
        extra.push(0);
        assert_eq!(
            err(&extra),
            DecodeError {
                offset: good.len(),
                kind: DecodeErrorKind::TrailingBytes(1)
            }
        );
        let mut empty = MoldPacketWriter::new(SESSION, 1);
        empty.push_bytes(&[]).expect("the writer does not validate");
        assert_eq!(
            err(empty.bytes()),
            DecodeError {
                offset: HEADER_LEN,
                kind: DecodeErrorKind::Empty
            }
        );
        let mut heartbeat_with_body = MoldPacketWriter::new(SESSION, 1).into_bytes();
        heartbeat_with_body.extend_from_slice(&[0, 1, b'S']);
        assert!(matches!(
            err(&heartbeat_with_body).kind,
            DecodeErrorKind::TrailingBytes(3)
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_datagrams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            match MoldPacket::parse(&bytes) {
                Ok(p) => {
                    let mut seen = 0;
                    for (_, offset, m) in p.messages() {
                        prop_assert!(offset + m.len() <= bytes.len());
                        let _ = decode(m);
                        seen += 1;
                    }
                    prop_assert_eq!(seen, p.message_count());
                }
                Err(e) => prop_assert!(e.offset <= bytes.len()),
            }
        }

        #[test]
        fn truncated_packets_are_errors(cut in 0..1_000usize, count in 1..20u64) {
            let messages: Vec<MessageData> = (0..count).map(|i| add(i + 1, 100)).collect();
            let bytes = packet(5, &messages);
            let cut = cut % bytes.len();
            let e = MoldPacket::parse(&bytes[..cut]).expect_err("a strict prefix is not a packet");
            prop_assert!(e.offset <= cut);
        }
    }

    #[test]
    fn live_messages_become_events_and_idle_means_nothing_arrived() {
        let mut lo = Loopback::new();
        let mut slots = [Event::default(); 8];
        assert_eq!(
            lo.feed
                .poll(&mut Sink::from_slice(&mut slots))
                .expect("idle"),
            FeedStatus::Idle
        );
        lo.send(&packet(1, &[directory(), add(1, 100_000), add(2, 99_000)]));
        lo.send(&MoldPacketWriter::new(SESSION, 4).into_bytes());
        let (events, errors) = lo.receive(2);
        assert!(errors.is_empty(), "{errors:?}");
        let kinds: Vec<_> = events.iter().filter_map(Event::kind).collect();
        assert_eq!(
            kinds,
            [EventKind::BookDelta, EventKind::Quote, EventKind::BookDelta]
        );
        let seqs: Vec<u64> = events
            .iter()
            .filter_map(|e| e.book_delta().map(|d| d.seq))
            .collect();
        assert_eq!(seqs, [2, 3], "events carry the MoldUDP64 sequence numbers");
        assert!(
            events
                .iter()
                .all(|e| e.receive_ts == 11 && e.flags & flags::GAP == 0)
        );
        assert_eq!(lo.feed.instruments().symbol(0), Some("ZVZZT"));
        assert_eq!(lo.feed.stats().heartbeats, 1);
        assert_eq!(lo.feed.expected_sequence(), Some(4));
    }

    #[test]
    fn gaps_are_flagged_and_counted_and_duplicates_skipped() {
        let mut lo = Loopback::new();
        lo.send(&packet(1, &[directory(), add(1, 100_000)]));
        // Sequences 3 and 4 are lost.
        lo.send(&packet(5, &[add(2, 99_000), add(3, 98_000)]));
        // A replay of 5..6 and the new 7: only 7 is applied.
        lo.send(&packet(
            5,
            &[add(2, 99_000), add(3, 98_000), add(4, 97_000)],
        ));
        let (events, errors) = lo.receive(3);
        assert!(errors.is_empty(), "{errors:?}");
        let gap_flagged: Vec<u64> = events
            .iter()
            .filter(|e| e.flags & flags::GAP != 0)
            .filter_map(|e| e.book_delta().map(|d| d.order_id))
            .collect();
        assert_eq!(
            gap_flagged,
            [2],
            "the first event after the gap carries the flag"
        );
        let stats = *lo.feed.stats();
        assert_eq!(
            (stats.gaps, stats.missed_messages, stats.duplicate_messages),
            (1, 2, 2)
        );
        let adds = events.iter().filter(|e| e.book_delta().is_some()).count();
        assert_eq!(adds, 4);
        assert_eq!(lo.feed.expected_sequence(), Some(8));

        // A heartbeat ahead of the expected sequence is a gap too.
        lo.send(&MoldPacketWriter::new(SESSION, 10).into_bytes());
        lo.send(&packet(10, &[add(5, 96_000)]));
        let (events, _) = lo.receive(5);
        assert_eq!(
            events.first().map(|e| e.flags & flags::GAP),
            Some(flags::GAP)
        );
        assert_eq!(lo.feed.stats().gaps, 2);
        assert_eq!(lo.feed.stats().missed_messages, 4);
    }

    #[test]
    fn a_bad_message_names_its_sequence_and_earlier_events_stay() {
        let mut lo = Loopback::new();
        let mut w = MoldPacketWriter::new(SESSION, 20);
        w.push(&directory()).expect("fits");
        w.push(&add(1, 100_000)).expect("fits");
        w.push_bytes(b"Zbad").expect("fits");
        w.push(&add(2, 100_100)).expect("fits");
        lo.send(w.bytes());
        lo.send(b"not a packet");
        lo.send(&MoldPacketWriter::end_of_session(SESSION, 24));
        let (events, errors) = lo.receive(3);
        let ids: Vec<u64> = events
            .iter()
            .filter_map(|e| e.book_delta().map(|d| d.order_id))
            .collect();
        assert_eq!(ids, [1, 2], "the message after the bad one is applied too");
        let positions: Vec<Position> = errors.iter().map(|e| e.position).collect();
        assert_eq!(positions, [Position::Packet(22), Position::Packet(2)]);
        assert!(
            errors
                .iter()
                .all(|e| matches!(e.kind, FeedErrorKind::Malformed(_)))
        );
        let mut slots = [Event::default(); 4];
        assert_eq!(
            lo.feed
                .poll(&mut Sink::from_slice(&mut slots))
                .expect("ended"),
            FeedStatus::End
        );
    }

    #[test]
    fn other_sessions_are_ignored() {
        let mut lo = Loopback::new();
        lo.send(&packet(1, &[directory()]));
        let mut other = MoldPacketWriter::new(*b"OTHER00001", 2);
        other
            .push(&MessageData::OrderDelete(OrderDeleteData::default()))
            .expect("fits");
        lo.send(other.bytes());
        let (_, errors) = lo.receive(2);
        assert!(errors.is_empty());
        assert_eq!(lo.feed.stats().foreign_session, 1);
        assert_eq!(lo.feed.builder().stats().messages, 1);
    }
}
