//! tickwire's NATS JetStream bridge: scale-out beyond one host.
//!
//! * [`sink`]: [`NatsSink`], an [`Agent`](tickwire_engine::agent::Agent) reading rings of
//!   events (market data, execution reports, notifications) and publishing them to
//!   JetStream subjects `<prefix>.md.<feed>.<symbol>.<kind>`, `<prefix>.exec.<strategy>`
//!   and `<prefix>.alerts.<user>`. The payload is the QUIC protocol's versioned rkyv event
//!   frame ([`tickwire_quic::protocol::encode_event_frame`]); headers carry the tickwire
//!   sequence and a `Nats-Msg-Id` derived from it. The ring never waits on NATS: the agent
//!   offers messages to a bounded queue; a tokio task publishes them with acknowledgements.
//! * [`source`]: [`NatsFeed`], a [`Feed`](tickwire_feeds::Feed) reading a stream back
//!   through a durable consumer, from a sequence or a time, instantly or at the original
//!   pace (`tickwire replay nats://HOST:PORT/STREAM`).
//! * [`config`]: [`NatsConfig`], the `[nats]` section.
//!
//! Data flows:
//!
//! ```text
//! ring ─► NatsSink agent ─(bounded queue, try_send)─► publish task ─► JetStream stream
//!           │ queue full: drop, or stop and let the task catch up from the journal
//! JetStream stream ─► durable pull consumer ─► NatsFeed ─► IngestAgent ─► ring (host 2)
//! ```
//!
//! Message headers (see [`headers`]): `Tickwire-Seq` (sequence of the message's first event
//! in its source ring; for a journaled source the journal sequence), `Tickwire-Count`,
//! `Tickwire-Source`, `Nats-Msg-Id` (`<epoch>-<source>-<seq>`: stable across restarts for a
//! journaled source) and `Nats-Expected-Last-Msg-Id` (the previous message of the stream),
//! so the server refuses a message published out of order and the sink resynchronises from
//! what the stream holds.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod config;
pub mod sink;
pub mod source;

use std::collections::HashMap;

use bytes::Bytes;
use tickwire_engine::event::{Event, EventKind};
use tickwire_engine::instrument::InstrumentRegistry;
use tickwire_quic::protocol::{ChannelKind, EventBatch, encode_event_frame};

pub use config::{NatsConfig, OverflowPolicy};
pub use sink::{NatsSink, NatsSinkHandle, NatsStats, StatsSnapshot};
pub use source::{NatsFeed, SourceConfig};

/// Header names.
pub mod headers {
    /// Sequence of the message's first event in its source.
    pub const SEQ: &str = "Tickwire-Seq";
    /// Events in the message.
    pub const COUNT: &str = "Tickwire-Count";
    /// Index of the source ring in the sink.
    pub const SOURCE: &str = "Tickwire-Source";
    /// JetStream's de-duplication id.
    pub const MSG_ID: &str = "Nats-Msg-Id";
}

/// Errors at the edges: configuration, connection, stream setup, reading.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// A setting is wrong.
    #[error("nats config: {0}")]
    Config(String),
    /// The server could not be reached or refused us.
    #[error("nats {url}: {reason}")]
    Connect {
        /// The URL.
        url: String,
        /// What happened.
        reason: String,
    },
    /// The sink did not get everything acknowledged in time (its counters say how far).
    #[error("nats sink: not everything acknowledged within {timeout:?}: {stats}")]
    Unfinished {
        /// The time allowed.
        timeout: std::time::Duration,
        /// The counters at the end.
        stats: String,
    },
    /// A stream could not be created, read or checked.
    #[error("nats stream {stream}: {reason}")]
    Stream {
        /// The stream.
        stream: String,
        /// What happened.
        reason: String,
    },
}

/// Builds subjects and message frames from events (shared by the agent and the catch-up).
#[derive(Debug)]
pub(crate) struct Encoder {
    prefix: String,
    feed: String,
    instruments: InstrumentRegistry,
    subjects: HashMap<(u8, u32, u8), async_nats::Subject>,
}

/// Which stream an event goes to: 0 market data, 1 executions, 2 alerts.
pub(crate) fn stream_of(kind: ChannelKind) -> usize {
    match kind {
        ChannelKind::MarketData => 0,
        ChannelKind::ExecutionReports => 1,
        ChannelKind::Notifications => 2,
    }
}

/// One subject token from a symbol: characters NATS reserves become `_`.
fn token(symbol: &str) -> String {
    symbol
        .chars()
        .map(|c| match c {
            '.' | '*' | '>' | ' ' | '\t' | '\r' | '\n' => '_',
            c => c,
        })
        .collect()
}

impl Encoder {
    pub(crate) fn new(config: &NatsConfig, instruments: InstrumentRegistry) -> Self {
        Self {
            prefix: config.subject_prefix.clone(),
            feed: config.feed.clone(),
            instruments,
            subjects: HashMap::new(),
        }
    }

    /// The subject key of an event (events with equal keys may share a message), its
    /// stream, or `None` for events never published (orders).
    pub(crate) fn key(event: &Event) -> Option<((u8, u32, u8), usize)> {
        let id = ChannelKind::of_event(event)?;
        Some(((id.kind as u8, id.key, event.kind), stream_of(id.kind)))
    }

    pub(crate) fn subject(&mut self, key: (u8, u32, u8)) -> async_nats::Subject {
        if let Some(s) = self.subjects.get(&key) {
            return s.clone();
        }
        let (kind, id, event_kind) = key;
        let p = &self.prefix;
        let s = match ChannelKind::from_code(kind) {
            Some(ChannelKind::MarketData) => {
                let symbol = self
                    .instruments
                    .symbol(id)
                    .map_or_else(|| id.to_string(), token);
                let kind = EventKind::from_code(event_kind).map_or("unknown", |k| k.name());
                format!("{p}.md.{}.{symbol}.{kind}", self.feed)
            }
            Some(ChannelKind::ExecutionReports) => format!("{p}.exec.{id}"),
            _ => format!("{p}.alerts.{id}"),
        };
        let subject = async_nats::Subject::from(s);
        self.subjects.insert(key, subject.clone());
        subject
    }

    /// The frame of `events` (one subject), whose first has sequence `first_sequence`.
    pub(crate) fn frame(events: &[Event], first_sequence: u64, key: (u8, u32, u8)) -> Bytes {
        encode_event_frame(&EventBatch {
            first_sequence,
            key: key.1,
            channel: key.0,
            flags: 0,
            events: events.to_vec(),
        })
    }
}

/// Whether `nats-server` can be started (tests and benchmarks use it).
pub fn nats_server_available() -> bool {
    std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_engine::event::{ExecutionReport, Quote};

    #[test]
    fn subjects_name_feed_symbol_kind_and_replace_reserved_characters() {
        let config = NatsConfig::default();
        let mut encoder = Encoder::new(&config, InstrumentRegistry::from_symbols(["ES.H7 X"]));
        let mut quote = Event::new(0, 0, 1, 1);
        quote.set_quote(Quote::default());
        let (key, stream) = Encoder::key(&quote).expect("published");
        assert_eq!(stream, 0);
        assert_eq!(
            encoder.subject(key).as_str(),
            "tickwire.md.feed.ES_H7_X.quote"
        );
        let mut unknown = Event::new(0, 42, 1, 1);
        unknown.set_quote(Quote::default());
        let (key, _) = Encoder::key(&unknown).expect("published");
        assert_eq!(encoder.subject(key).as_str(), "tickwire.md.feed.42.quote");
        let mut report = Event::new(0, 0, 1, 1);
        report.set_execution_report(ExecutionReport {
            strategy: 3,
            ..ExecutionReport::default()
        });
        let (key, stream) = Encoder::key(&report).expect("published");
        assert_eq!(stream, 1);
        assert_eq!(encoder.subject(key).as_str(), "tickwire.exec.3");
    }

    #[test]
    fn validate_names_the_bad_setting() {
        let mut config = NatsConfig::default();
        config.market_data.name = "A.B".into();
        let error = config.validate().expect_err("a dot in a stream name");
        assert!(error.to_string().contains("`A.B`"), "{error}");
        let config = NatsConfig {
            queue_messages: 0,
            ..NatsConfig::default()
        };
        assert!(config.validate().is_err());
        let unknown = toml::from_str::<NatsConfig>("colour = 1");
        assert!(unknown.is_err(), "unknown keys are refused");
    }
}
