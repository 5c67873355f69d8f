//! The wire protocol, byte for byte as `docs/protocol.md` documents it: frame header,
//! control messages, event frames (rkyv archives), channels, error codes, patterns.
//!
//! Everything here is sans-IO: encoders append a whole frame to a buffer, decoders take a
//! header or a payload that the transport already read. The server, the client and the
//! fan-out agent share it.
//!
//! ```
//! use tickwire_quic::protocol::{Control, decode_control, decode_header, HEADER_LEN};
//!
//! let mut frame = Vec::new();
//! Control::Heartbeat { timestamp_ns: 42 }.encode(&mut frame);
//! let header: &[u8; HEADER_LEN] = frame[..HEADER_LEN].try_into().expect("8 bytes");
//! let (kind, len) = decode_header(header, 1 << 16).expect("valid header");
//! let back = decode_control(kind, &frame[HEADER_LEN..HEADER_LEN + len]).expect("valid payload");
//! assert_eq!(back, Control::Heartbeat { timestamp_ns: 42 });
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use rkyv::util::AlignedVec;
use tickwire_engine::event::{Event, EventKind};

/// ALPN protocol identifier (TLS application-layer protocol negotiation).
pub const ALPN: &[u8] = b"tickwire/1";
/// Protocol version carried in every frame header.
pub const VERSION: u8 = 1;
/// Bytes in a frame header: length (u32), version (u8), type (u8), reserved (u16).
pub const HEADER_LEN: usize = 8;
/// Alignment of the buffer an event frame's payload is read into: the archive's highest
/// field alignment is 8 (u64); 16 is rkyv's default `AlignedVec` alignment.
pub const PAYLOAD_ALIGN: usize = 16;
/// Default cap on a frame's payload, bytes (4 MiB: a replay frame of 8192 events is 512 KiB
/// plus 24 bytes; control frames are far smaller).
pub const DEFAULT_MAX_FRAME: u32 = 4 << 20;
/// Cap on a control frame's payload, bytes (a subscribe with 256 patterns of 255 bytes).
pub const MAX_CONTROL_FRAME: u32 = 64 << 10;

/// Frame header flag bits for [`EventBatch::flags`].
pub mod batch_flags {
    /// The events are a replay from the retained window (resume), not live.
    pub const REPLAY: u8 = 1 << 0;
    /// Conflated: sequences between the previous frame of this channel and this one were
    /// dropped for this subscriber (quotes only); the event is the latest quote.
    pub const CONFLATED: u8 = 1 << 1;
}

/// A message type byte (header offset 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// Client: authenticate (first message).
    Hello = 0x01,
    /// Client: subscribe to a channel kind with patterns and a policy.
    Subscribe = 0x02,
    /// Client: end a subscription.
    Unsubscribe = 0x03,
    /// Client: resume a channel of a subscription after a sequence (sent before the
    /// subscribe it refers to).
    Resume = 0x04,
    /// Client: heartbeat, echoed by the server.
    Heartbeat = 0x05,
    /// Server, event stream: a batch of events of one channel.
    EventBatch = 0x10,
    /// Server: authentication accepted.
    Welcome = 0x81,
    /// Server: subscription active.
    Subscribed = 0x82,
    /// Server: subscription ended.
    Unsubscribed = 0x83,
    /// Server: heartbeat echo.
    HeartbeatAck = 0x84,
    /// Server: an error, for a subscription or (id 0) for the connection.
    Error = 0x85,
}

impl MessageType {
    /// The type for a code byte, if it names one.
    pub fn from_code(code: u8) -> Option<Self> {
        use MessageType::*;
        [
            Hello,
            Subscribe,
            Unsubscribe,
            Resume,
            Heartbeat,
            EventBatch,
            Welcome,
            Subscribed,
            Unsubscribed,
            HeartbeatAck,
            Error,
        ]
        .into_iter()
        .find(|t| *t as u8 == code)
    }
}

/// A kind of channel. A channel is a kind and a 32-bit key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ChannelKind {
    /// Market data (quotes, trades, book deltas, status); key = instrument id; named by
    /// the instrument's symbol.
    MarketData = 1,
    /// User notifications; key = user id; named by the id in decimal.
    Notifications = 2,
    /// Execution reports; key = strategy id; named by the id in decimal.
    ExecutionReports = 3,
}

impl ChannelKind {
    /// The kind for a code byte.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::MarketData),
            2 => Some(Self::Notifications),
            3 => Some(Self::ExecutionReports),
            _ => None,
        }
    }

    /// The kind's name in messages: `market data`, `notifications`, `execution reports`.
    pub fn name(self) -> &'static str {
        match self {
            Self::MarketData => "market data",
            Self::Notifications => "notifications",
            Self::ExecutionReports => "execution reports",
        }
    }

    /// This kind's bit in `Welcome.durable`: `1 << (code - 1)`.
    pub fn bit(self) -> u8 {
        1 << (self as u8 - 1)
    }

    /// The channel an event belongs to, if it is published at all (orders are not).
    pub fn of_event(event: &Event) -> Option<ChannelId> {
        match event.kind()? {
            EventKind::Quote | EventKind::Trade | EventKind::BookDelta | EventKind::Status => {
                Some(ChannelId {
                    kind: Self::MarketData,
                    key: event.instrument,
                })
            }
            EventKind::Notification => Some(ChannelId {
                kind: Self::Notifications,
                key: event.notification()?.user,
            }),
            EventKind::ExecutionReport => Some(ChannelId {
                kind: Self::ExecutionReports,
                key: event.execution_report()?.strategy,
            }),
            EventKind::Order => None,
        }
    }
}

/// One channel: its kind and key. Every channel has its own sequence, from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId {
    /// The kind.
    pub kind: ChannelKind,
    /// Instrument, user or strategy id.
    pub key: u32,
}

/// What the server does when a subscriber's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Policy {
    /// Keep the latest quote per instrument and deliver it when there is room (frame flag
    /// CONFLATED); any other event that cannot be queued closes the connection with
    /// [`ErrorCode::Undeliverable`].
    Conflate = 1,
    /// Close the connection with [`ErrorCode::SlowConsumer`].
    Disconnect = 2,
}

impl Policy {
    /// The policy for a code byte.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Conflate),
            2 => Some(Self::Disconnect),
            _ => None,
        }
    }
}

/// Error codes: in [`Control::Error`] and as the QUIC application close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[repr(u16)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Normal close.
    #[error("no error")]
    NoError = 0,
    /// Malformed frame or message, or a message out of place.
    #[error("protocol error")]
    Protocol = 1,
    /// Frame header version is not 1.
    #[error("unsupported protocol version")]
    UnsupportedVersion = 2,
    /// Frame payload longer than the receiver's limit.
    #[error("frame too large")]
    FrameTooLarge = 3,
    /// Missing or wrong token, or no hello in time.
    #[error("unauthenticated")]
    Unauthenticated = 4,
    /// The token may not read this channel kind (subscription refused).
    #[error("not entitled")]
    NotEntitled = 5,
    /// More subscriptions than the server allows per connection.
    #[error("too many subscriptions")]
    TooManySubscriptions = 6,
    /// The server is at its connection limit.
    #[error("too many connections")]
    TooManyConnections = 7,
    /// A resume sequence is older than the server retains (subscription refused).
    #[error("resume sequence too old")]
    ResumeTooOld = 8,
    /// A resume sequence is beyond what the server published (it restarted?).
    #[error("resume sequence ahead of the channel")]
    ResumeAhead = 9,
    /// Policy `disconnect`: the subscriber's queue was full.
    #[error("slow consumer")]
    SlowConsumer = 10,
    /// Policy `conflate`: a non-quote event could not be queued.
    #[error("undeliverable event for a slow consumer")]
    Undeliverable = 11,
    /// Unsubscribe of an id that is not subscribed.
    #[error("unknown subscription")]
    UnknownSubscription = 12,
    /// Subscribe with an id already in use on this connection.
    #[error("duplicate subscription id")]
    DuplicateSubscription = 13,
    /// Too many control messages per second.
    #[error("rate limited")]
    RateLimited = 14,
    /// Server shutting down or internal failure.
    #[error("internal error or shutdown")]
    Internal = 15,
}

impl ErrorCode {
    /// Every code, in code order.
    pub const ALL: [Self; 16] = [
        Self::NoError,
        Self::Protocol,
        Self::UnsupportedVersion,
        Self::FrameTooLarge,
        Self::Unauthenticated,
        Self::NotEntitled,
        Self::TooManySubscriptions,
        Self::TooManyConnections,
        Self::ResumeTooOld,
        Self::ResumeAhead,
        Self::SlowConsumer,
        Self::Undeliverable,
        Self::UnknownSubscription,
        Self::DuplicateSubscription,
        Self::RateLimited,
        Self::Internal,
    ];

    /// The code for a number, if it names one.
    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|c| *c as u64 == code)
    }

    /// The QUIC application close code.
    pub fn var_int(self) -> quinn::VarInt {
        quinn::VarInt::from_u32(self as u32)
    }
}

/// Why bytes could not be decoded; each maps to an [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Header version byte is not [`VERSION`].
    #[error("unsupported version {0}")]
    Version(u8),
    /// Payload length above the limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced payload length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// Unknown message type, reserved bits set, truncated or trailing bytes, bad enum code,
    /// invalid UTF-8, or an archive that fails validation.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

impl WireError {
    /// The error code a peer closes with for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Version(_) => ErrorCode::UnsupportedVersion,
            Self::TooLarge { .. } => ErrorCode::FrameTooLarge,
            Self::Malformed(_) => ErrorCode::Protocol,
        }
    }
}

fn malformed(what: impl Into<String>) -> WireError {
    WireError::Malformed(what.into())
}

/// Writes a frame header for a payload of `len` bytes.
pub fn put_header(out: &mut impl BufMut, kind: MessageType, len: usize) {
    out.put_u32_le(len as u32);
    out.put_u8(VERSION);
    out.put_u8(kind as u8);
    out.put_u16_le(0);
}

/// Checks a frame header: version, reserved bytes, type, length against `max_payload`.
/// Returns the type and the payload length.
pub fn decode_header(
    header: &[u8; HEADER_LEN],
    max_payload: u32,
) -> Result<(MessageType, usize), WireError> {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    if header[4] != VERSION {
        return Err(WireError::Version(header[4]));
    }
    let kind = MessageType::from_code(header[5])
        .ok_or_else(|| malformed(format!("unknown message type 0x{:02x}", header[5])))?;
    if header[6] != 0 || header[7] != 0 {
        return Err(malformed("reserved header bytes are not zero"));
    }
    let max = if kind == MessageType::EventBatch {
        max_payload
    } else {
        max_payload.min(MAX_CONTROL_FRAME)
    };
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    Ok((kind, len as usize))
}

/// A subscription request (message `Subscribe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeRequest {
    /// Client-chosen id, unique on the connection, not 0.
    pub id: u32,
    /// The channel kind.
    pub kind: ChannelKind,
    /// Policy when the subscriber falls behind.
    pub policy: Policy,
    /// Patterns over channel names (`*` any run, `?` one character); at least one.
    pub patterns: Vec<String>,
}

/// A control message (control stream) .
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Client's first message.
    Hello {
        /// The secret token, raw bytes (at most 1024).
        token: Vec<u8>,
        /// Free-form client name for logs (at most 255 bytes of UTF-8).
        client: String,
    },
    /// Subscribe.
    Subscribe(SubscribeRequest),
    /// End subscription `id`.
    Unsubscribe {
        /// The subscription id.
        id: u32,
    },
    /// Deliver channel `key` of subscription `id` from `last_sequence + 1`.
    Resume {
        /// The subscription id (of a subscribe sent after this message).
        id: u32,
        /// The channel key within the subscription's kind.
        key: u32,
        /// The last sequence the client holds for this channel.
        last_sequence: u64,
    },
    /// Heartbeat; the server echoes the value in `HeartbeatAck`.
    Heartbeat {
        /// Sender's clock, ns (opaque to the server).
        timestamp_ns: u64,
    },
    /// Authentication accepted.
    Welcome {
        /// Server-assigned connection id, for logs.
        session: u64,
        /// Largest event-frame payload the server sends, bytes.
        max_frame: u32,
        /// How often the client should send a heartbeat, ms.
        heartbeat_ms: u32,
        /// Identifies this run of the server's sequence space: it changes when the server
        /// restarts, and then every channel kind not in `durable` counts from 1 again.
        epoch: u64,
        /// The channel kinds whose sequences survive a restart (bit `kind - 1`; market data
        /// when the server records a journal).
        durable: u8,
    },
    /// Subscription active.
    Subscribed {
        /// The subscription id.
        id: u32,
    },
    /// Subscription ended.
    Unsubscribed {
        /// The subscription id.
        id: u32,
    },
    /// Heartbeat echo.
    HeartbeatAck {
        /// The value from the heartbeat.
        timestamp_ns: u64,
    },
    /// An error: for subscription `id`, or for the connection when `id == 0` (the server
    /// then closes the connection with the same code).
    Error {
        /// The error.
        code: ErrorCode,
        /// The subscription, or 0.
        id: u32,
        /// Human-readable detail (at most 1024 bytes of UTF-8).
        message: String,
    },
}

fn put_str8(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(255)];
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

fn put_bytes16(out: &mut Vec<u8>, b: &[u8]) {
    let b = &b[..b.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

impl Control {
    /// Its message type.
    pub fn message_type(&self) -> MessageType {
        match self {
            Self::Hello { .. } => MessageType::Hello,
            Self::Subscribe(_) => MessageType::Subscribe,
            Self::Unsubscribe { .. } => MessageType::Unsubscribe,
            Self::Resume { .. } => MessageType::Resume,
            Self::Heartbeat { .. } => MessageType::Heartbeat,
            Self::Welcome { .. } => MessageType::Welcome,
            Self::Subscribed { .. } => MessageType::Subscribed,
            Self::Unsubscribed { .. } => MessageType::Unsubscribed,
            Self::HeartbeatAck { .. } => MessageType::HeartbeatAck,
            Self::Error { .. } => MessageType::Error,
        }
    }

    /// Appends the whole frame (header and payload) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER_LEN]);
        match self {
            Self::Hello { token, client } => {
                put_bytes16(out, token);
                put_str8(out, client);
            }
            Self::Subscribe(s) => {
                out.extend_from_slice(&s.id.to_le_bytes());
                out.push(s.kind as u8);
                out.push(s.policy as u8);
                out.extend_from_slice(
                    &(s.patterns.len().min(u16::MAX as usize) as u16).to_le_bytes(),
                );
                for p in s.patterns.iter().take(u16::MAX as usize) {
                    put_str8(out, p);
                }
            }
            Self::Unsubscribe { id } | Self::Subscribed { id } | Self::Unsubscribed { id } => {
                out.extend_from_slice(&id.to_le_bytes());
            }
            Self::Resume {
                id,
                key,
                last_sequence,
            } => {
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&key.to_le_bytes());
                out.extend_from_slice(&last_sequence.to_le_bytes());
            }
            Self::Heartbeat { timestamp_ns } | Self::HeartbeatAck { timestamp_ns } => {
                out.extend_from_slice(&timestamp_ns.to_le_bytes());
            }
            Self::Welcome {
                session,
                max_frame,
                heartbeat_ms,
                epoch,
                durable,
            } => {
                out.extend_from_slice(&session.to_le_bytes());
                out.extend_from_slice(&max_frame.to_le_bytes());
                out.extend_from_slice(&heartbeat_ms.to_le_bytes());
                out.extend_from_slice(&epoch.to_le_bytes());
                out.push(*durable);
            }
            Self::Error { code, id, message } => {
                out.extend_from_slice(&(*code as u16).to_le_bytes());
                out.extend_from_slice(&id.to_le_bytes());
                let m = &message.as_bytes()[..message.len().min(1024)];
                // Cut at a character boundary so the message stays valid UTF-8.
                let cut = (0..=m.len())
                    .rev()
                    .find(|&i| message.is_char_boundary(i))
                    .unwrap_or(0);
                put_bytes16(out, &message.as_bytes()[..cut]);
            }
        }
        let len = out.len() - start - HEADER_LEN;
        let mut header = [0u8; HEADER_LEN];
        put_header(&mut &mut header[..], self.message_type(), len);
        out[start..start + HEADER_LEN].copy_from_slice(&header);
    }

    /// The whole frame as a new buffer.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        self.encode(&mut out);
        out
    }
}

/// A cursor over a payload that fails with [`WireError::Malformed`] on truncation.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(malformed("truncated payload"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn str8(&mut self) -> Result<String, WireError> {
        let n = self.u8()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| malformed("string is not UTF-8"))
    }
    fn bytes16(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    fn end(self) -> Result<(), WireError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(malformed("trailing bytes after message"))
        }
    }
}

/// Decodes a control message's payload (the bytes after the header).
pub fn decode_control(kind: MessageType, payload: &[u8]) -> Result<Control, WireError> {
    let mut r = Reader(payload);
    let msg = match kind {
        MessageType::Hello => {
            let token = r.bytes16()?;
            if token.len() > 1024 {
                return Err(malformed("token longer than 1024 bytes"));
            }
            let token = token.to_vec();
            Control::Hello {
                token,
                client: r.str8()?,
            }
        }
        MessageType::Subscribe => {
            let id = r.u32()?;
            let kind = ChannelKind::from_code(r.u8()?).ok_or_else(|| malformed("bad channel"))?;
            let policy = Policy::from_code(r.u8()?).ok_or_else(|| malformed("bad policy"))?;
            let n = r.u16()? as usize;
            if n == 0 || n > 256 {
                return Err(malformed("pattern count must be 1..=256"));
            }
            let mut patterns = Vec::with_capacity(n);
            for _ in 0..n {
                patterns.push(r.str8()?);
            }
            if id == 0 {
                return Err(malformed("subscription id 0 is reserved"));
            }
            Control::Subscribe(SubscribeRequest {
                id,
                kind,
                policy,
                patterns,
            })
        }
        MessageType::Unsubscribe => Control::Unsubscribe { id: r.u32()? },
        MessageType::Subscribed => Control::Subscribed { id: r.u32()? },
        MessageType::Unsubscribed => Control::Unsubscribed { id: r.u32()? },
        MessageType::Resume => Control::Resume {
            id: r.u32()?,
            key: r.u32()?,
            last_sequence: r.u64()?,
        },
        MessageType::Heartbeat => Control::Heartbeat {
            timestamp_ns: r.u64()?,
        },
        MessageType::HeartbeatAck => Control::HeartbeatAck {
            timestamp_ns: r.u64()?,
        },
        MessageType::Welcome => Control::Welcome {
            session: r.u64()?,
            max_frame: r.u32()?,
            heartbeat_ms: r.u32()?,
            epoch: r.u64()?,
            durable: r.u8()?,
        },
        MessageType::Error => {
            let code = ErrorCode::from_code(u64::from(r.u16()?))
                .ok_or_else(|| malformed("unknown error code"))?;
            let id = r.u32()?;
            let message = String::from_utf8(r.bytes16()?.to_vec())
                .map_err(|_| malformed("message is not UTF-8"))?;
            Control::Error { code, id, message }
        }
        MessageType::EventBatch => {
            return Err(malformed("event batch on the control stream"));
        }
    };
    r.end()?;
    Ok(msg)
}

/// A batch of consecutive events of one channel: the event frame's payload, as an rkyv
/// archive. `events[i]` has sequence `first_sequence + i` (for a CONFLATED frame, one event).
#[derive(
    Debug, Clone, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct EventBatch {
    /// Sequence of `events[0]` in its channel (sequences start at 1).
    pub first_sequence: u64,
    /// The channel key.
    pub key: u32,
    /// The [`ChannelKind`] code.
    pub channel: u8,
    /// [`batch_flags`] bits.
    pub flags: u8,
    /// The events, 64 bytes each.
    pub events: Vec<Event>,
}

impl EventBatch {
    /// The channel, if the code names a kind.
    pub fn channel_id(&self) -> Option<ChannelId> {
        Some(ChannelId {
            kind: ChannelKind::from_code(self.channel)?,
            key: self.key,
        })
    }
}

/// Encodes `batch` as a whole event frame (header + rkyv archive), ready to share.
pub fn encode_event_frame(batch: &EventBatch) -> Bytes {
    let mut frame = BytesMut::with_capacity(HEADER_LEN + 24 + batch.events.len() * 64);
    let archive = match rkyv::to_bytes::<rkyv::rancor::Error>(batch) {
        Ok(a) => a,
        // Serializing plain integers and a Vec into memory has no failure path but
        // allocation, which aborts rather than returning.
        Err(e) => unreachable!("rkyv cannot fail on an in-memory EventBatch: {e}"),
    };
    put_header(&mut frame, MessageType::EventBatch, archive.len());
    frame.extend_from_slice(&archive);
    frame.freeze()
}

/// A payload buffer aligned for [`access_event_batch`]: read the payload straight into it.
pub fn aligned_payload(len: usize) -> AlignedVec<PAYLOAD_ALIGN> {
    let mut buf = AlignedVec::<PAYLOAD_ALIGN>::with_capacity(len);
    buf.resize(len, 0);
    buf
}

/// Validates an event frame's payload (bytecheck) and returns the archived batch.
pub fn access_event_batch(payload: &[u8]) -> Result<&ArchivedEventBatch, WireError> {
    if (payload.as_ptr() as usize) % 8 != 0 {
        return Err(malformed("event payload buffer is not 8-byte aligned"));
    }
    let batch = rkyv::access::<ArchivedEventBatch, rkyv::rancor::Error>(payload)
        .map_err(|e| malformed(format!("invalid event archive: {e}")))?;
    if ChannelKind::from_code(batch.channel).is_none() {
        return Err(malformed("unknown channel kind in event frame"));
    }
    Ok(batch)
}

/// Validates and copies out an event frame's payload.
pub fn decode_event_batch(payload: &[u8]) -> Result<EventBatch, WireError> {
    let archived = access_event_batch(payload)?;
    rkyv::deserialize::<EventBatch, rkyv::rancor::Error>(archived)
        .map_err(|e| malformed(format!("event archive: {e}")))
}

/// Whether `name` matches `pattern`: `*` matches any run of characters (also empty), `?`
/// exactly one character, anything else itself (case-sensitive).
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative wildcard match with one backtrack point (the last `*`).
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tickwire_engine::event::{Quote, Trade};

    fn every_control_message() -> Vec<Control> {
        vec![
            Control::Hello {
                token: b"secret".to_vec(),
                client: "test".into(),
            },
            Control::Subscribe(SubscribeRequest {
                id: 7,
                kind: ChannelKind::MarketData,
                policy: Policy::Conflate,
                patterns: vec!["BTC*".into(), "ETH-USD".into()],
            }),
            Control::Unsubscribe { id: 7 },
            Control::Resume {
                id: 7,
                key: 3,
                last_sequence: 99,
            },
            Control::Heartbeat { timestamp_ns: 5 },
            Control::Welcome {
                session: 1,
                max_frame: 4096,
                heartbeat_ms: 1000,
                epoch: 0x0102_0304_0506_0708,
                durable: 1,
            },
            Control::Subscribed { id: 7 },
            Control::Unsubscribed { id: 7 },
            Control::HeartbeatAck { timestamp_ns: 5 },
            Control::Error {
                code: ErrorCode::ResumeTooOld,
                id: 7,
                message: "too old".into(),
            },
        ]
    }

    fn split(frame: &[u8]) -> (MessageType, &[u8]) {
        let header: &[u8; HEADER_LEN] = frame[..HEADER_LEN].try_into().expect("header");
        let (kind, len) = decode_header(header, DEFAULT_MAX_FRAME).expect("valid header");
        assert_eq!(
            len,
            frame.len() - HEADER_LEN,
            "length prefix counts the payload"
        );
        (kind, &frame[HEADER_LEN..])
    }

    #[test]
    fn every_control_message_round_trips() {
        for msg in every_control_message() {
            let frame = msg.to_frame();
            let (kind, payload) = split(&frame);
            assert_eq!(kind, msg.message_type());
            assert_eq!(decode_control(kind, payload).expect("decodes"), msg);
        }
    }

    #[test]
    fn hello_layout_is_as_documented() {
        let frame = Control::Hello {
            token: b"abc".to_vec(),
            client: "py".into(),
        }
        .to_frame();
        // docs/protocol.md, "Hello": u32 len, ver 1, type 0x01, reserved 0, u16 token length,
        // token, u8 name length, name.
        assert_eq!(
            frame,
            [
                8, 0, 0, 0, 1, 0x01, 0, 0, 3, 0, b'a', b'b', b'c', 2, b'p', b'y'
            ]
        );
        let sub = Control::Subscribe(SubscribeRequest {
            id: 0x0102_0304,
            kind: ChannelKind::Notifications,
            policy: Policy::Disconnect,
            patterns: vec!["7".into()],
        })
        .to_frame();
        assert_eq!(
            sub,
            [10, 0, 0, 0, 1, 0x02, 0, 0, 4, 3, 2, 1, 2, 2, 1, 0, 1, b'7']
        );
    }

    #[test]
    fn event_frame_layout_is_as_documented() {
        let mut a = Event::new(1, 5, 10, 20);
        a.set_quote(Quote {
            bid_px: 1,
            ask_px: 2,
            bid_size: 3,
            ask_size: 4,
            seq: 5,
        });
        let mut b = Event::new(1, 5, 11, 21);
        b.set_trade(Trade {
            price: 9,
            size: 8,
            ..Trade::default()
        });
        let batch = EventBatch {
            first_sequence: 0x1122_3344_5566_7788,
            key: 5,
            channel: ChannelKind::MarketData as u8,
            flags: batch_flags::REPLAY,
            events: vec![a, b],
        };
        let frame = encode_event_frame(&batch);
        let n = 2;
        let payload_len = n * 64 + 24;
        assert_eq!(frame.len(), HEADER_LEN + payload_len);
        assert_eq!(&frame[..8], &[(payload_len as u8), 0, 0, 0, 1, 0x10, 0, 0]);
        let p = &frame[HEADER_LEN..];
        // The events' 64-byte images come first, in order, exactly as `Event::as_bytes`.
        assert_eq!(&p[..64], a.as_bytes());
        assert_eq!(&p[64..128], b.as_bytes());
        // Then the 24-byte root: first_sequence, key, channel, flags, 2 padding bytes,
        // i32 relative offset to the events (from the offset field itself), u32 count.
        let root = &p[n * 64..];
        assert_eq!(&root[0..8], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(&root[8..12], &5u32.to_le_bytes());
        assert_eq!(root[12], 1);
        assert_eq!(root[13], batch_flags::REPLAY);
        assert_eq!(&root[14..16], &[0, 0]);
        let rel = i32::from_le_bytes(root[16..20].try_into().expect("4 bytes"));
        assert_eq!(
            (n * 64 + 16) as i64 + i64::from(rel),
            0,
            "offset points at the events"
        );
        assert_eq!(&root[20..24], &(n as u32).to_le_bytes());
        // And it validates and decodes from an aligned copy.
        let mut aligned = aligned_payload(p.len());
        aligned.as_mut_slice().copy_from_slice(p);
        assert_eq!(decode_event_batch(&aligned).expect("valid"), batch);
    }

    #[test]
    fn empty_batch_layout() {
        let frame = encode_event_frame(&EventBatch {
            first_sequence: 1,
            key: 1,
            channel: 1,
            flags: 0,
            events: vec![],
        });
        assert_eq!(frame.len(), HEADER_LEN + 24);
        let mut aligned = aligned_payload(24);
        aligned.as_mut_slice().copy_from_slice(&frame[HEADER_LEN..]);
        assert!(
            decode_event_batch(&aligned)
                .expect("valid")
                .events
                .is_empty()
        );
    }

    #[test]
    fn header_errors_map_to_codes() {
        let mut f = Control::Heartbeat { timestamp_ns: 1 }.to_frame();
        f[4] = 2;
        let h: [u8; 8] = f[..8].try_into().expect("8");
        assert_eq!(
            decode_header(&h, 1024).map_err(|e| e.code()),
            Err(ErrorCode::UnsupportedVersion)
        );
        let h = [0, 0, 1, 0, 1, 0x10, 0, 0];
        assert_eq!(
            decode_header(&h, 1024).map_err(|e| e.code()),
            Err(ErrorCode::FrameTooLarge)
        );
        let h = [0, 0, 0, 0, 1, 0x77, 0, 0];
        assert_eq!(
            decode_header(&h, 1024).map_err(|e| e.code()),
            Err(ErrorCode::Protocol)
        );
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("*", "BTC-USD"));
        assert!(pattern_matches("BTC*", "BTC-USD"));
        assert!(pattern_matches("*USD", "BTC-USD"));
        assert!(pattern_matches("B?C-*D", "BTC-USD"));
        assert!(!pattern_matches("ETH*", "BTC-USD"));
        assert!(!pattern_matches("BTC", "BTC-USD"));
        assert!(pattern_matches("a*b*c", "aXXbYYc"));
        assert!(!pattern_matches("a*b*c", "aXXbYY"));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if bytes.len() >= HEADER_LEN {
                let h: [u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().expect("8");
                if let Ok((kind, _)) = decode_header(&h, DEFAULT_MAX_FRAME) {
                    let _ = decode_control(kind, &bytes[HEADER_LEN..]);
                }
            }
            for kind in [MessageType::Hello, MessageType::Subscribe, MessageType::Error, MessageType::Resume] {
                let _ = decode_control(kind, &bytes);
            }
            let mut aligned = aligned_payload(bytes.len());
            aligned.as_mut_slice().copy_from_slice(&bytes);
            let _ = decode_event_batch(&aligned);
        }
    }
}
