//! The `[nats]` configuration: connection, streams, queue and overflow policy.
//!
//! ```
//! use tickwire_nats::config::{NatsConfig, OverflowPolicy};
//!
//! let config: NatsConfig = toml::from_str(r#"
//!     url = "nats://127.0.0.1:4222"
//!     queue_messages = 4096
//!     policy = "drop"
//!     [market_data]
//!     name = "MD"
//!     max_age_s = 3600
//! "#).expect("valid [nats] section");
//! assert_eq!(config.market_data.name, "MD");
//! assert_eq!(config.policy, OverflowPolicy::Drop);
//! assert_eq!(config.alerts.name, "TICKWIRE_ALERTS"); // defaults fill the rest
//! ```

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::stream;
use serde::{Deserialize, Serialize};

use crate::NatsError;

/// The NATS bridge's settings (the `[nats]` section of the service config). Every field has
/// a default, so an empty section connects to a local server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL; several comma-separated for a cluster. `tls://` requires TLS.
    /// Default: `nats://127.0.0.1:4222`.
    pub url: String,
    /// A NATS credentials file (`.creds`: user JWT and nkey seed). Default: none.
    pub credentials: Option<PathBuf>,
    /// A PEM file of CA certificates to trust for the server's TLS certificate; setting it
    /// requires TLS. Default: none (the system roots when the URL is `tls://`).
    pub tls_ca: Option<PathBuf>,
    /// Require TLS even when the URL is `nats://`. Default: false.
    pub tls_required: bool,
    /// First token of every subject. Default: `tickwire`.
    pub subject_prefix: String,
    /// The `<feed>` token of market-data subjects (`<prefix>.md.<feed>.<symbol>.<kind>`).
    /// Default: `feed`.
    pub feed: String,
    /// Stream of market data, subjects `<prefix>.md.>`. Default name `TICKWIRE_MD`.
    pub market_data: StreamSettings,
    /// Stream of execution reports, subjects `<prefix>.exec.>`. Default name `TICKWIRE_EXEC`.
    pub executions: StreamSettings,
    /// Stream of notifications, subjects `<prefix>.alerts.>`. Default name `TICKWIRE_ALERTS`.
    pub alerts: StreamSettings,
    /// Create a missing stream from these settings (true), or only check that it exists and
    /// covers its subjects (false). An existing stream is never changed. Default: true.
    pub create_streams: bool,
    /// Messages the sink agent may queue for the publishing task before the overflow
    /// [`policy`](Self::policy) applies. Default: 65 536.
    pub queue_messages: usize,
    /// Most events in one message. Consecutive events of one subject share a message (a
    /// burst of one instrument); events of different subjects never do, so the stream keeps
    /// the ring's order. Default: 256 (16 KiB of events).
    pub max_batch: usize,
    /// Messages published and not yet acknowledged at most. Default: 1024.
    pub max_in_flight: usize,
    /// What happens when the queue is full (NATS down or slow). Default: `catch-up`.
    pub policy: OverflowPolicy,
    /// The journal recording the first source ring (market data), for `catch-up`.
    /// Default: none (then `catch-up` behaves as `drop`).
    pub journal: Option<PathBuf>,
    /// Journal sequence of the first source ring's first event (the journal's end sequence
    /// when the recorder started appending). Default: 0.
    pub journal_first_sequence: u64,
    /// Wait for a publish acknowledgement before resynchronising, ms. Default: 5000.
    pub ack_timeout_ms: u64,
    /// Pause between attempts to reach the server or set up streams, ms. Default: 250.
    pub retry_ms: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".to_owned(),
            credentials: None,
            tls_ca: None,
            tls_required: false,
            subject_prefix: "tickwire".to_owned(),
            feed: "feed".to_owned(),
            market_data: StreamSettings::named("TICKWIRE_MD"),
            executions: StreamSettings::named("TICKWIRE_EXEC"),
            alerts: StreamSettings::named("TICKWIRE_ALERTS"),
            create_streams: true,
            queue_messages: 65_536,
            max_batch: 256,
            max_in_flight: 1024,
            policy: OverflowPolicy::CatchUp,
            journal: None,
            journal_first_sequence: 0,
            ack_timeout_ms: 5000,
            retry_ms: 250,
        }
    }
}

/// What the sink does when its queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverflowPolicy {
    /// Drop the events that do not fit and count them (`dropped_events`); the stream has a
    /// gap, visible in its `Tickwire-Seq` headers.
    Drop,
    /// Stop queueing the first source's events and count them (`overflowed_events`); the
    /// publishing task, once it drained the queue, publishes them from the
    /// [journal](NatsConfig::journal) until it is level with the ring again, then returns to
    /// the queue. Without a journal, and for the other sources, this is `Drop`.
    CatchUp,
}

/// Storage of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Storage {
    /// On disk.
    File,
    /// In memory.
    Memory,
}

/// Retention of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Retention {
    /// Keep messages up to the limits.
    Limits,
    /// Keep messages while a consumer is interested.
    Interest,
    /// Remove a message once a consumer acknowledged it.
    WorkQueue,
}

/// One stream's name and limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamSettings {
    /// Stream name (no `.`, `*`, `>` or spaces). Defaults: see [`NatsConfig`].
    pub name: String,
    /// Oldest message kept, seconds; 0 = no limit. Default: 86 400 (one day).
    pub max_age_s: u64,
    /// Bytes kept at most; -1 = no limit. Default: -1.
    pub max_bytes: i64,
    /// Messages kept at most; -1 = no limit. Default: -1.
    pub max_messages: i64,
    /// Window in which a repeated `Nats-Msg-Id` is dropped as a duplicate, seconds.
    /// Default: 120 (the server's default).
    pub duplicate_window_s: u64,
    /// Storage. Default: `file`.
    pub storage: Storage,
    /// Retention. Default: `limits`.
    pub retention: Retention,
    /// Replicas in a cluster. Default: 1.
    pub replicas: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self::named("TICKWIRE")
    }
}

impl StreamSettings {
    /// Default settings with a name.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            max_age_s: 86_400,
            max_bytes: -1,
            max_messages: -1,
            duplicate_window_s: 120,
            storage: Storage::File,
            retention: Retention::Limits,
            replicas: 1,
        }
    }

    /// The JetStream stream configuration for `subjects`.
    pub fn to_stream_config(&self, subjects: Vec<String>) -> stream::Config {
        stream::Config {
            name: self.name.clone(),
            subjects,
            max_age: Duration::from_secs(self.max_age_s),
            max_bytes: self.max_bytes,
            max_messages: self.max_messages,
            duplicate_window: Duration::from_secs(self.duplicate_window_s),
            storage: match self.storage {
                Storage::File => stream::StorageType::File,
                Storage::Memory => stream::StorageType::Memory,
            },
            retention: match self.retention {
                Retention::Limits => stream::RetentionPolicy::Limits,
                Retention::Interest => stream::RetentionPolicy::Interest,
                Retention::WorkQueue => stream::RetentionPolicy::WorkQueue,
            },
            num_replicas: self.replicas,
            ..Default::default()
        }
    }
}

impl NatsConfig {
    /// The three streams with their subject filters: market data, executions, alerts.
    pub fn streams(&self) -> [(&StreamSettings, String); 3] {
        let p = &self.subject_prefix;
        [
            (&self.market_data, format!("{p}.md.>")),
            (&self.executions, format!("{p}.exec.>")),
            (&self.alerts, format!("{p}.alerts.>")),
        ]
    }

    /// Checks names and sizes before anything connects.
    pub fn validate(&self) -> Result<(), NatsError> {
        let bad = |what: &str, why: &str| NatsError::Config(format!("{what}: {why}"));
        for (s, _) in self.streams() {
            if s.name.is_empty() || s.name.contains(['.', '*', '>', ' ', '\t']) {
                return Err(bad(
                    &format!("stream name `{}`", s.name),
                    "must be non-empty without `.`, `*`, `>` or spaces",
                ));
            }
        }
        if !valid_token(&self.subject_prefix) || !valid_token(&self.feed) {
            return Err(bad(
                "subject_prefix/feed",
                "must be one subject token (no `.`, `*`, `>` or spaces)",
            ));
        }
        if self.queue_messages == 0 || self.max_batch == 0 || self.max_in_flight == 0 {
            return Err(bad(
                "queue_messages/max_batch/max_in_flight",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// Connection options from the credentials and TLS settings.
    pub async fn connect_options(&self) -> Result<async_nats::ConnectOptions, NatsError> {
        let mut options = async_nats::ConnectOptions::new();
        if let Some(path) = &self.credentials {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| NatsError::Config(format!("{}: {e}", path.display())))?;
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if self.tls_required {
            options = options.require_tls(true);
        }
        Ok(options)
    }
}

/// Whether `token` can be one subject token.
pub(crate) fn valid_token(token: &str) -> bool {
    !token.is_empty() && !token.contains(['.', '*', '>', ' ', '\t', '\r', '\n'])
}
