//! The source feed: a JetStream stream read back as a [`Feed`], so a second tickwire host
//! runs its strategies on the events the first one published.
//!
//! [`NatsFeed`] creates (or reuses) a pull consumer on the stream: durable when named (it
//! then resumes where it stopped, the server remembering its acknowledgements), delivering
//! from the start, a stream sequence, a time, or only new messages; the server replays
//! instantly or at the original pace. A tokio task (on the feed's own small runtime) pulls
//! messages, checks each frame (the QUIC protocol's event frame) and its `Tickwire-Seq`
//! continuity, and hands events to `poll` through a bounded channel; `poll` never waits.
//!
//! By default the feed ends when it has delivered what the stream held when it opened
//! (`follow` keeps it live). As a URL (what `tickwire replay` takes):
//!
//! `nats://HOST:PORT/STREAM[?durable=NAME&from_seq=N&from_time=NS&new=true&pace=original&follow=true&subject=FILTER&creds=PATH&ca=PATH]`
//! (`tls://` requires TLS).
//!
//! ```
//! use tickwire_nats::source::{Pace, SourceConfig, Start};
//!
//! let c = SourceConfig::from_url("nats://127.0.0.1:4222/TICKWIRE_MD?durable=host2&from_seq=10&pace=original")?;
//! assert_eq!((c.url.as_str(), c.stream.as_str()), ("nats://127.0.0.1:4222", "TICKWIRE_MD"));
//! assert_eq!(c.durable.as_deref(), Some("host2"));
//! assert_eq!((c.start, c.pace), (Start::Sequence(10), Pace::Original));
//! assert!(SourceConfig::from_url("nats://h:1/S?colour=red").is_err());
//! # Ok::<(), tickwire_nats::NatsError>(())
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use futures_util::StreamExt;
use tickwire_engine::event::Event;
use tickwire_engine::instrument::InstrumentRegistry;
use tickwire_feeds::{Feed, FeedError, FeedErrorKind, FeedStatus, Position, Sink};
use tickwire_quic::protocol::{
    DEFAULT_MAX_FRAME, HEADER_LEN, MessageType, aligned_payload, decode_event_batch, decode_header,
};

use crate::config::NatsConfig;
use crate::{NatsError, headers};

/// Where the consumer starts (a durable consumer that exists already resumes instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The stream's first message.
    All,
    /// This stream sequence (from 1).
    Sequence(u64),
    /// The first message stored at or after this time, ns since the Unix epoch.
    Time(u64),
    /// Only messages stored after the consumer is created.
    New,
}

/// How fast the server delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// As fast as the feed takes them.
    Instant,
    /// At the pace they were stored.
    Original,
}

/// What to read (see the module docs for the URL form).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    /// Server URL (`nats://HOST:PORT`).
    pub url: String,
    /// The stream.
    pub stream: String,
    /// Durable consumer name; `None`: an ephemeral consumer.
    pub durable: Option<String>,
    /// Where a new consumer starts. Default: [`Start::All`].
    pub start: Start,
    /// Delivery pace. Default: [`Pace::Instant`].
    pub pace: Pace,
    /// Keep reading after the messages present at open. Default: false.
    pub follow: bool,
    /// Only subjects matching this filter (`tickwire.md.feed.BTCUSDT.>`). Default: all.
    pub subject: Option<String>,
    /// Credentials file. Default: none.
    pub credentials: Option<PathBuf>,
    /// CA file for TLS. Default: none.
    pub tls_ca: Option<PathBuf>,
    /// Messages buffered between the pulling task and `poll`. Default: 1024.
    pub buffer_messages: usize,
}

impl SourceConfig {
    /// Reads `stream` on `url` from its start, instantly, ending at its end.
    pub fn new(url: &str, stream: &str) -> Self {
        Self {
            url: url.to_owned(),
            stream: stream.to_owned(),
            durable: None,
            start: Start::All,
            pace: Pace::Instant,
            follow: false,
            subject: None,
            credentials: None,
            tls_ca: None,
            buffer_messages: 1024,
        }
    }

    /// Parses `nats://HOST:PORT/STREAM?...` (see the module docs).
    pub fn from_url(input: &str) -> Result<Self, NatsError> {
        let bad = |why: String| NatsError::Config(format!("source URL `{input}`: {why}"));
        let (scheme, rest) = input
            .split_once("://")
            .filter(|(s, _)| *s == "nats" || *s == "tls")
            .ok_or_else(|| bad("expected nats://HOST:PORT/STREAM".into()))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (host, stream) = path
            .split_once('/')
            .filter(|(h, s)| !h.is_empty() && !s.is_empty() && !s.contains('/'))
            .ok_or_else(|| bad("expected HOST:PORT/STREAM".into()))?;
        let mut config = Self::new(&format!("{scheme}://{host}"), stream);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
            let number = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| bad(format!("{k}={v}: expected a number")))
            };
            let flag = |v: &str| match v {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(bad(format!("{k}={v}: expected true or false"))),
            };
            match k {
                "durable" => config.durable = Some(v.to_owned()),
                "from_seq" => config.start = Start::Sequence(number(v)?),
                "from_time" => config.start = Start::Time(number(v)?),
                "new" if flag(v)? => config.start = Start::New,
                "new" => {}
                "pace" => {
                    config.pace = match v {
                        "instant" => Pace::Instant,
                        "original" => Pace::Original,
                        _ => return Err(bad(format!("pace={v}: expected instant or original"))),
                    }
                }
                "follow" => config.follow = flag(v)?,
                "subject" => config.subject = Some(v.to_owned()),
                "creds" => config.credentials = Some(PathBuf::from(v)),
                "ca" => config.tls_ca = Some(PathBuf::from(v)),
                _ => {
                    return Err(bad(format!(
                        "unknown parameter `{k}`; expected durable, from_seq, from_time, new, pace, follow, subject, creds or ca"
                    )));
                }
            }
        }
        Ok(config)
    }
}

enum Item {
    Events {
        stream_seq: u64,
        /// `Tickwire-Seq` and `Tickwire-Source` of the message.
        tickwire: Option<(u64, u32)>,
        events: Vec<Event>,
    },
    End,
    Error {
        stream_seq: u64,
        kind: FeedErrorKind,
    },
}

/// Counters of a [`NatsFeed`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Messages received.
    pub messages: u64,
    /// Events handed to the ring.
    pub events: u64,
    /// Sequence gaps seen in `Tickwire-Seq` (events the sink dropped).
    pub gaps: u64,
    /// Events skipped because their sequence was already delivered.
    pub duplicates: u64,
}

/// The feed (see the module docs).
pub struct NatsFeed {
    name: String,
    // Dropped before the runtime, so the pulling task sees the feed gone and returns.
    rx: Receiver<Item>,
    #[allow(dead_code)] // owns the worker thread the pulling task runs on
    runtime: tokio::runtime::Runtime,
    pending: VecDeque<Event>,
    position: u64,
    stats: SourceStats,
    /// Next expected tickwire sequence per source index.
    expected: HashMap<u32, u64>,
    instruments: InstrumentRegistry,
    ended: bool,
}

impl fmt::Debug for NatsFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsFeed")
            .field("name", &self.name)
            .field("stats", &self.stats)
            .finish()
    }
}

impl NatsFeed {
    /// Connects, finds the stream, creates or reuses the consumer and starts pulling.
    /// An error names the URL or the stream.
    pub fn open(config: SourceConfig) -> Result<Self, NatsError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("nats-source")
            .enable_all()
            .build()
            .map_err(|e| NatsError::Config(format!("tokio runtime: {e}")))?;
        let name = format!("{}/{}", config.url, config.stream);
        let (tx, rx) = crossbeam_channel::bounded(config.buffer_messages.max(1));
        let (messages, pending) = runtime.block_on(Self::consumer(&config))?;
        if pending == 0 && !config.follow {
            let _ = tx.send(Item::End);
            // The pull stream unsubscribes on drop, which needs the runtime.
            let _guard = runtime.enter();
            drop(messages);
        } else {
            runtime.spawn(pump(messages, tx, config.follow));
        }
        Ok(Self {
            name,
            runtime,
            rx,
            pending: VecDeque::new(),
            position: 0,
            stats: SourceStats::default(),
            expected: HashMap::new(),
            instruments: InstrumentRegistry::default(),
            ended: false,
        })
    }

    /// Opens `nats://HOST:PORT/STREAM?...`.
    pub fn open_url(url: &str) -> Result<Self, NatsError> {
        Self::open(SourceConfig::from_url(url)?)
    }

    /// Stream sequence of the last message received (0: none yet).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The counters so far.
    pub fn stats(&self) -> SourceStats {
        self.stats
    }

    async fn consumer(config: &SourceConfig) -> Result<(consumer::pull::Stream, u64), NatsError> {
        let connection = NatsConfig {
            url: config.url.clone(),
            credentials: config.credentials.clone(),
            tls_ca: config.tls_ca.clone(),
            ..NatsConfig::default()
        };
        let connect_err = |reason: String| NatsError::Connect {
            url: config.url.clone(),
            reason,
        };
        let client = connection
            .connect_options()
            .await?
            .connection_timeout(Duration::from_secs(5))
            .connect(config.url.as_str())
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let stream_err = |reason: String| NatsError::Stream {
            stream: config.stream.clone(),
            reason,
        };
        let context = jetstream::new(client);
        let stream = context
            .get_stream(&config.stream)
            .await
            .map_err(|e| stream_err(e.to_string()))?;
        let deliver_policy = match config.start {
            Start::All => consumer::DeliverPolicy::All,
            Start::Sequence(start_sequence) => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start_sequence.max(1),
            },
            Start::Time(ns) => consumer::DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
                    .map_err(|e| stream_err(format!("from_time {ns}: {e}")))?,
            },
            Start::New => consumer::DeliverPolicy::New,
        };
        let consumer_config = consumer::pull::Config {
            durable_name: config.durable.clone(),
            deliver_policy,
            ack_policy: if config.durable.is_some() {
                consumer::AckPolicy::Explicit
            } else {
                consumer::AckPolicy::None
            },
            replay_policy: match config.pace {
                Pace::Instant => consumer::ReplayPolicy::Instant,
                Pace::Original => consumer::ReplayPolicy::Original,
            },
            filter_subject: config.subject.clone().unwrap_or_default(),
            ..Default::default()
        };
        let mut consumer = match &config.durable {
            Some(name) => stream.get_or_create_consumer(name, consumer_config).await,
            None => stream.create_consumer(consumer_config).await,
        }
        .map_err(|e| stream_err(format!("consumer: {e}")))?;
        let pending = consumer
            .info()
            .await
            .map_err(|e| stream_err(format!("consumer info: {e}")))?
            .num_pending;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| stream_err(format!("pull: {e}")))?;
        Ok((messages, pending))
    }

    fn take(&mut self, item: Item) -> Result<(), FeedError> {
        match item {
            Item::End => self.ended = true,
            Item::Error { stream_seq, kind } => {
                self.ended = true;
                return Err(FeedError::new(
                    self.name.clone(),
                    Position::Record(stream_seq),
                    kind,
                ));
            }
            Item::Events {
                stream_seq,
                tickwire,
                events,
            } => {
                self.position = stream_seq;
                self.stats.messages += 1;
                let mut skip = 0;
                if let Some((seq, source)) = tickwire {
                    let expected = self.expected.entry(source).or_insert(seq);
                    if seq < *expected {
                        skip = (*expected - seq).min(events.len() as u64);
                        self.stats.duplicates += skip;
                    } else if seq > *expected {
                        self.stats.gaps += seq - *expected;
                    }
                    *expected = (*expected).max(seq + events.len() as u64);
                }
                self.pending.extend(events.into_iter().skip(skip as usize));
            }
        }
        Ok(())
    }
}

/// Pulls messages and sends their events to the feed until the end (or the feed is gone).
async fn send(tx: &Sender<Item>, mut item: Item) -> bool {
    loop {
        match tx.try_send(item) {
            Ok(()) => return true,
            Err(TrySendError::Disconnected(_)) => return false,
            Err(TrySendError::Full(back)) => {
                item = back;
                // The feed is behind; poll never waits, so this side does.
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
    }
}

async fn pump(mut messages: consumer::pull::Stream, tx: Sender<Item>, follow: bool) {
    while let Some(message) = messages.next().await {
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                // The client reconnects by itself; the stream reports what it saw.
                if e.kind() == consumer::pull::MessagesErrorKind::MissingHeartbeat {
                    continue;
                }
                let _ = send(
                    &tx,
                    Item::Error {
                        stream_seq: 0,
                        kind: FeedErrorKind::Io(std::io::Error::other(e.to_string())),
                    },
                )
                .await;
                return;
            }
        };
        let (stream_seq, left) = match message.info() {
            Ok(info) => (info.stream_sequence, info.pending),
            Err(e) => {
                let _ = send(
                    &tx,
                    Item::Error {
                        stream_seq: 0,
                        kind: FeedErrorKind::Malformed(format!("message metadata: {e}")),
                    },
                )
                .await;
                return;
            }
        };
        let item = match decode(&message.payload) {
            Ok(events) => {
                let seq = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(headers::SEQ))
                    .and_then(|v| v.as_str().parse::<u64>().ok());
                let source = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(headers::SOURCE))
                    .and_then(|v| v.as_str().parse::<u32>().ok())
                    .unwrap_or(0);
                Item::Events {
                    stream_seq,
                    tickwire: seq.map(|seq| (seq, source)),
                    events,
                }
            }
            Err(reason) => Item::Error {
                stream_seq,
                kind: FeedErrorKind::Malformed(reason),
            },
        };
        let is_error = matches!(item, Item::Error { .. });
        if !send(&tx, item).await {
            return;
        }
        if is_error {
            return;
        }
        // Explicit acks only for durable consumers; an ephemeral one acks nothing.
        let _ = message.ack().await;
        if left == 0 && !follow {
            let _ = send(&tx, Item::End).await;
            return;
        }
    }
}

/// The events of one message's frame; an error says what is wrong with it.
fn decode(frame: &[u8]) -> Result<Vec<Event>, String> {
    let header: &[u8; HEADER_LEN] = frame
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| format!("{} bytes, shorter than a frame header", frame.len()))?;
    let (kind, len) = decode_header(header, DEFAULT_MAX_FRAME).map_err(|e| e.to_string())?;
    if kind != MessageType::EventBatch {
        return Err(format!("frame of type {kind:?}, expected an event batch"));
    }
    let body = frame.get(HEADER_LEN..HEADER_LEN + len).ok_or_else(|| {
        format!(
            "frame says {len} bytes, message has {}",
            frame.len() - HEADER_LEN
        )
    })?;
    let mut aligned = aligned_payload(len);
    aligned.copy_from_slice(body);
    decode_event_batch(&aligned)
        .map(|b| b.events)
        .map_err(|e| e.to_string())
}

impl Feed for NatsFeed {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll(&mut self, sink: &mut Sink<'_>) -> Result<FeedStatus, FeedError> {
        loop {
            while sink.remaining() > 0 {
                let Some(event) = self.pending.pop_front() else {
                    break;
                };
                sink.push(event);
                self.stats.events += 1;
            }
            if sink.remaining() == 0 {
                return Ok(FeedStatus::Active);
            }
            if self.ended {
                return Ok(if sink.written() > 0 {
                    FeedStatus::Active
                } else {
                    FeedStatus::End
                });
            }
            match self.rx.try_recv() {
                Ok(item) => self.take(item)?,
                Err(_) => {
                    return Ok(if sink.written() > 0 {
                        FeedStatus::Active
                    } else {
                        FeedStatus::Idle
                    });
                }
            }
        }
    }

    fn instruments(&self) -> &InstrumentRegistry {
        &self.instruments
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parameters_and_errors() {
        let c = SourceConfig::from_url("tls://h:4222/S?new&follow=1&subject=a.b.>&creds=/x")
            .expect("valid");
        assert_eq!(c.url, "tls://h:4222");
        assert_eq!(c.start, Start::New);
        assert!(c.follow);
        assert_eq!(c.subject.as_deref(), Some("a.b.>"));
        for bad in [
            "http://h:1/S",
            "nats://h:1",
            "nats://h:1/",
            "nats://h:1/S/T",
            "nats://h:1/S?from_seq=x",
            "nats://h:1/S?pace=fast",
        ] {
            let error = SourceConfig::from_url(bad).expect_err(bad);
            assert!(error.to_string().contains(bad), "{error}");
        }
    }

    #[test]
    fn a_bad_payload_is_an_error_not_a_panic() {
        for payload in [&b""[..], b"short", &[0u8; 64], &[0xff; 300]] {
            assert!(decode(payload).is_err());
        }
        let frame = crate::Encoder::frame(&[Event::default()], 5, (1, 0, 1));
        assert_eq!(decode(&frame).expect("valid frame").len(), 1);
        for cut in 0..frame.len() {
            let _ = decode(&frame[..cut]); // any prefix: an error or events, never a panic
        }
    }
}
