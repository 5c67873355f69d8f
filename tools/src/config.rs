//! The service's configuration: one TOML file whose every key has a documented default
//! (`tickwire run --print-config` prints the effective configuration), checked whole
//! before anything starts.
//!
//! Sections: `data_dir`, `[feed]`, `[pipeline]` (rings, cores, idle), `[risk]`,
//! `[strategies.<name>]`, `[[alerts]]` (the same tables as `tickwire replay --config`),
//! `[journal]`, `[quic]` (with `[[quic.tokens]]`), `[metrics]`, `[status]` and `[io]`.
//! Unknown keys are errors, so a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tickwire_engine::agent::available_cores;
use tickwire_engine::idle::IdleStrategy;
use tickwire_nats::NatsConfig;
use tickwire_strategies::TradingConfig;
use tickwire_strategies::notify::{AlertRuleConfig, RuleConfig};
use tickwire_strategies::pipeline::PipelineConfig;
use tickwire_strategies::risk::RiskConfig;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Directory for the journal, the QUIC certificate and the default token.
    /// Default `tickwire-data` (relative to the working directory).
    pub data_dir: PathBuf,
    /// The market-data source.
    pub feed: FeedConfig,
    /// Rings, cores, idle strategy of the trading thread (see `tickwire replay --help`).
    pub pipeline: PipelineConfig,
    /// Pre-trade risk limits.
    pub risk: RiskConfig,
    /// Strategy instances by name: `kind` plus the kind's parameters.
    pub strategies: BTreeMap<String, toml::Table>,
    /// Alert rules (`[[alerts]]`).
    pub alerts: Vec<AlertRuleConfig>,
    /// The journal of the market-data ring.
    pub journal: JournalSection,
    /// The QUIC publisher.
    pub quic: QuicSection,
    /// The Prometheus endpoint.
    pub metrics: MetricsSection,
    /// The status line.
    pub status: StatusSection,
    /// The I/O thread (journal recorder, QUIC publisher, NATS sink, counters).
    pub io: IoSection,
    /// The NATS JetStream sink (`tickwire_nats::NatsConfig`): absent (the default) means
    /// off; an empty `[nats]` section publishes to `nats://127.0.0.1:4222`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsConfig>,
}

/// `[feed]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedConfig {
    /// `synthetic` (the live generator, default), or a recorded file or journal to replay
    /// at `[pipeline] pace` (a Binance `.gz`, a DBN file, an ITCH file, a journal
    /// directory).
    pub input: String,
    /// Synthetic only: events per second (0 = as fast as the ring takes them). Default
    /// 100 000.
    pub rate: u64,
    /// Synthetic only: number of instruments (`SYN000`, `SYN001`, ...). Default 8.
    pub instruments: u32,
    /// Synthetic only: seed of the generator. Default 42.
    pub seed: u64,
    /// Synthetic only: fraction of events that are trades. Default 0.2.
    pub trade_ratio: f64,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            input: "synthetic".into(),
            rate: 100_000,
            instruments: 8,
            seed: 42,
            trade_ratio: 0.2,
        }
    }
}

/// `[journal]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalSection {
    /// Record the market-data ring. Default true.
    pub enabled: bool,
    /// The journal directory. Default `<data_dir>/journal`. A journal already there is
    /// appended to (sequences continue).
    pub dir: Option<PathBuf>,
    /// When to fsync: `never`, `batch` (every ring batch) or a period in ms. Default 1000.
    pub fsync: FsyncSetting,
    /// Segment size, MiB. Default 256.
    pub segment_mib: u64,
}

impl Default for JournalSection {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: None,
            fsync: FsyncSetting::Millis(1000),
            segment_mib: 256,
        }
    }
}

/// The largest ring a configuration may ask for, slots (64-byte events: 1 GiB).
pub const MAX_RING: usize = 1 << 24;

/// The most instruments the synthetic feed may be asked for.
pub const MAX_INSTRUMENTS: u32 = 65_536;

/// `fsync = "never" | "batch" | <ms>`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum FsyncSetting {
    /// Fsync when at least this many ms passed since the last one.
    Millis(u64),
    /// `never` or `batch`.
    Word(FsyncWord),
}

// By hand rather than `untagged`, whose error does not say what the accepted values are.
impl<'de> Deserialize<'de> for FsyncSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{Error, Unexpected, Visitor};
        struct Setting;
        impl Visitor<'_> for Setting {
            type Value = FsyncSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"never\", \"batch\" or a number of milliseconds")
            }
            fn visit_u64<E: Error>(self, ms: u64) -> Result<FsyncSetting, E> {
                Ok(FsyncSetting::Millis(ms))
            }
            fn visit_i64<E: Error>(self, ms: i64) -> Result<FsyncSetting, E> {
                u64::try_from(ms)
                    .map(FsyncSetting::Millis)
                    .map_err(|_| E::invalid_value(Unexpected::Signed(ms), &self))
            }
            fn visit_str<E: Error>(self, word: &str) -> Result<FsyncSetting, E> {
                match word {
                    "never" => Ok(FsyncSetting::Word(FsyncWord::Never)),
                    "batch" => Ok(FsyncSetting::Word(FsyncWord::Batch)),
                    other => Err(E::invalid_value(Unexpected::Str(other), &self)),
                }
            }
        }
        deserializer.deserialize_any(Setting)
    }
}

/// The named fsync policies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncWord {
    /// Never fsync (the OS writes back when it likes).
    Never,
    /// Fsync at the end of every ring batch.
    Batch,
}

/// `[quic]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuicSection {
    /// Serve subscribers over QUIC. Default true.
    pub enabled: bool,
    /// UDP address. Default `127.0.0.1:4433`.
    pub bind: SocketAddr,
    /// PEM certificate chain; with `key`, used instead of the self-signed certificate
    /// kept in `<data_dir>/quic/`.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// PEM file of the CA that signs client certificates: when set, every client must
    /// present one (mutual TLS) as well as a token. Default absent.
    pub client_ca: Option<PathBuf>,
    /// The default token's file: created with a random token at first start, entitled to
    /// every channel. Default `<data_dir>/quic/token`. Set `default_token = false` to
    /// accept only `[[quic.tokens]]`.
    pub token_file: Option<PathBuf>,
    /// Accept the token in `token_file`. Default true.
    pub default_token: bool,
    /// More tokens, each stored as its SHA-256 (`tickwire` never needs the clear token).
    pub tokens: Vec<TokenConfig>,
    /// Concurrent connections. Default 1024.
    pub max_connections: usize,
    /// Subscriptions per connection. Default 64.
    pub max_subscriptions: usize,
    /// Frames queued per connection before its policy (conflate or disconnect) applies.
    /// Default 1024.
    pub queue_frames: usize,
    /// Events kept in memory per channel for resume. Default 16384. Older market data is
    /// served from the journal when `[journal]` is enabled.
    pub retain_per_channel: usize,
    /// Most events one resume may replay from the journal. Default 1048576.
    pub max_journal_replay: usize,
    /// Longest a channel's events are held back to batch them while most of its
    /// subscribers are behind, µs (smart batching, docs/protocol.md section 7). Default
    /// 500; 0 never holds.
    pub linger_us: u64,
    /// Idle timeout, ms. Default 10000.
    pub idle_timeout_ms: u64,
    /// Keep-alive interval, ms. Default 2000.
    pub keep_alive_ms: u64,
    /// UDP send and receive buffer asked of the kernel, KiB (capped by
    /// `net.core.wmem_max`/`rmem_max`; 0 keeps the kernel's default). Default 4096.
    pub socket_buffer_kib: usize,
}

impl Default for QuicSection {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: SocketAddr::from(([127, 0, 0, 1], 4433)),
            cert: None,
            key: None,
            client_ca: None,
            token_file: None,
            default_token: true,
            tokens: Vec::new(),
            max_connections: 1024,
            max_subscriptions: 64,
            queue_frames: 1024,
            retain_per_channel: 16_384,
            max_journal_replay: 1 << 20,
            linger_us: 500,
            idle_timeout_ms: 10_000,
            keep_alive_ms: 2000,
            socket_buffer_kib: tickwire_quic::SOCKET_BUFFER >> 10,
        }
    }
}

/// One `[[quic.tokens]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (for logs).
    pub name: String,
    /// SHA-256 of the token, 64 hex digits (`printf %s TOKEN | sha256sum`).
    pub sha256: String,
    /// Market-data channels it may read: symbol patterns (`*`, `BTC*`). Default none.
    #[serde(default)]
    pub market_data: Vec<String>,
    /// Execution-report channels (strategy ids, patterns). Default none.
    #[serde(default)]
    pub execution_reports: Vec<String>,
    /// Notification channels (user ids, patterns). Default none.
    #[serde(default)]
    pub notifications: Vec<String>,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// Serve Prometheus metrics at `http://<bind>/metrics`. Default true.
    pub enabled: bool,
    /// TCP address. Default `127.0.0.1:9464`.
    pub bind: SocketAddr,
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// `[status]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusSection {
    /// Print a status line every `interval_ms`. Default true.
    pub enabled: bool,
    /// Default 1000.
    pub interval_ms: u64,
    /// `text` (default) or `json`: one JSON object per line, for scripts.
    pub format: StatusFormat,
}

/// How the status line is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusFormat {
    /// For people.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for StatusSection {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_ms: 1000,
            format: StatusFormat::Text,
        }
    }
}

/// `[io]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IoSection {
    /// Core of the I/O thread (absent = unpinned). Default absent.
    pub core: Option<usize>,
    /// Its idle strategy. Default `backoff`.
    pub idle: String,
}

impl Default for IoSection {
    fn default() -> Self {
        Self {
            core: None,
            idle: "backoff".into(),
        }
    }
}

impl Default for ServiceConfig {
    /// The embedded default: the synthetic feed, two shipped strategies with alerts on
    /// their fills and rejects, the journal, QUIC and metrics on loopback.
    fn default() -> Self {
        let mut strategies = BTreeMap::new();
        let table = |text: &str| -> toml::Table {
            toml::from_str(text).expect("the embedded strategy tables are valid TOML")
        };
        strategies.insert(
            "mm".to_owned(),
            table(
                "kind = \"market_maker\"\nuser = 1\ninstrument = \"SYN000\"\nsize = 1.0\n\
                 max_position = 4.0\nhalf_spread_bps = 1.0\n",
            ),
        );
        strategies.insert(
            "trend".to_owned(),
            table(
                "kind = \"ma_cross\"\nuser = 2\ninstrument = \"SYN001\"\nsize = 1.0\n\
                 fast = 5\nslow = 20\nsample_ms = 100\n",
            ),
        );
        let alerts = vec![
            AlertRuleConfig {
                user: 1,
                cooldown_ms: 0,
                rule: RuleConfig::Fills {
                    strategy: "mm".into(),
                },
            },
            AlertRuleConfig {
                user: 1,
                cooldown_ms: 0,
                rule: RuleConfig::Rejects {
                    strategy: "mm".into(),
                },
            },
            AlertRuleConfig {
                user: 2,
                cooldown_ms: 0,
                rule: RuleConfig::Fills {
                    strategy: "trend".into(),
                },
            },
            AlertRuleConfig {
                user: 2,
                cooldown_ms: 5000,
                rule: RuleConfig::Move {
                    instrument: "SYN001".into(),
                    percent: 0.5,
                    window_ms: 10_000,
                },
            },
        ];
        let cores = available_cores();
        let pipeline = PipelineConfig {
            // Strategies run ahead of execution, as they would against a real venue.
            lockstep: false,
            cores: (cores.len() >= 2).then(|| [cores[0], cores[1]]),
            ..PipelineConfig::default()
        };
        Self {
            data_dir: PathBuf::from("tickwire-data"),
            feed: FeedConfig::default(),
            pipeline,
            risk: RiskConfig::default(),
            strategies,
            alerts,
            journal: JournalSection::default(),
            quic: QuicSection::default(),
            metrics: MetricsSection::default(),
            status: StatusSection::default(),
            io: IoSection::default(),
            nats: None,
        }
    }
}

impl ServiceConfig {
    /// Reads `path` (TOML); keys it leaves out keep their defaults, except that a file
    /// with a `[strategies.*]` table or an `[[alerts]]` entry replaces the default
    /// strategies and alerts whole.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("{}: invalid configuration", path.display()))
    }

    /// Parses TOML text (see [`from_file`](Self::from_file)): the file's keys are laid
    /// over the embedded default's, table by table.
    pub fn from_toml(text: &str) -> Result<Self> {
        // Read as written first, only for its errors: they give the line, the column and
        // the text (every section has defaults, so this refuses nothing the merge accepts).
        // The merged table below has lost the positions.
        toml::from_str::<Self>(text)?;
        let user: toml::Table = toml::from_str(text)?;
        let mut merged = toml::Table::try_from(Self::default())?;
        if user.contains_key("strategies") || user.contains_key("alerts") {
            merged.insert("strategies".into(), toml::Value::Table(toml::Table::new()));
            merged.insert("alerts".into(), toml::Value::Array(Vec::new()));
        }
        overlay(&mut merged, user);
        Ok(merged.try_into()?)
    }

    /// The effective configuration as TOML, every key included: the optional keys that
    /// are not set appear commented out under their section, with what they do.
    pub fn to_toml(&self) -> Result<String> {
        let text = toml::to_string_pretty(self)?;
        let mut out = String::with_capacity(text.len() + 2048);
        out.push_str(
            "# tickwire service configuration (`tickwire run --print-config`): every key with its\n\
             # effective value. Keys left out of a file keep these defaults; see tools/src/config.rs.\n\n",
        );
        for line in text.lines() {
            out.push_str(line);
            out.push('\n');
            let section = line.trim();
            for (table, key, hint) in OPTIONAL_KEYS {
                if section == format!("[{table}]") && !section_has(&text, table, key) {
                    out.push_str(&format!("# {key} = {hint}\n"));
                }
            }
        }
        if self.nats.is_none() {
            out.push_str(
                "\n# [nats]                          # the NATS JetStream sink, off when absent\n\
                 # url = \"nats://127.0.0.1:4222\"  # every key: tickwire_nats::NatsConfig\n",
            );
        }
        Ok(out)
    }

    /// The journal directory.
    pub fn journal_dir(&self) -> PathBuf {
        self.journal
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("journal"))
    }

    /// Where the self-signed certificate is kept.
    pub fn quic_dir(&self) -> PathBuf {
        self.data_dir.join("quic")
    }

    /// The default token's file.
    pub fn token_file(&self) -> PathBuf {
        self.quic
            .token_file
            .clone()
            .unwrap_or_else(|| self.quic_dir().join("token"))
    }

    /// The strategy, risk and alert part, for the trading pipeline.
    pub fn trading(&self) -> TradingConfig {
        TradingConfig {
            pipeline: self.pipeline.clone(),
            risk: self.risk.clone(),
            strategies: self.strategies.clone(),
            alerts: self.alerts.clone(),
        }
    }

    /// Checks everything that can be checked without starting: values, cores, files.
    /// Ports are checked by [`check_ports`](Self::check_ports). Each error names the key.
    pub fn validate(&self) -> Result<()> {
        let p = &self.pipeline;
        for (key, size) in [
            ("[pipeline] md_ring", p.md_ring),
            ("[pipeline] order_ring", p.order_ring),
            ("[pipeline] exec_ring", p.exec_ring),
            ("[pipeline] notification_ring", p.notification_ring),
        ] {
            if size < 2 || !size.is_power_of_two() || size > MAX_RING {
                bail!(
                    "{key} = {size}: a ring size must be a power of two from 2 to {MAX_RING} \
                     (1 GiB of events)"
                );
            }
        }
        self.risk.validate()?;
        if self.data_dir.exists() && !self.data_dir.is_dir() {
            bail!(
                "data_dir = {}: exists and is not a directory",
                self.data_dir.display()
            );
        }
        let cores = available_cores();
        let check_core = |key: &str, core: usize| -> Result<()> {
            if !cores.contains(&core) {
                bail!("{key}: core {core} does not exist; the available cores are {cores:?}");
            }
            Ok(())
        };
        if let Some([ingest, trading]) = p.cores {
            check_core("[pipeline] cores (ingest)", ingest)?;
            check_core("[pipeline] cores (trading)", trading)?;
            if ingest == trading {
                bail!(
                    "[pipeline] cores = [{ingest}, {trading}]: the ingest and trading threads \
                     each need a core of their own (or `cores = []` to leave them unpinned)"
                );
            }
        }
        if let Some(core) = self.io.core {
            check_core("[io] core", core)?;
            if let Some(taken) = p.cores
                && taken.contains(&core)
            {
                bail!(
                    "[io] core = {core}: [pipeline] cores = {taken:?} already pins a thread \
                     there; the I/O thread needs a core of its own (or leave `core` unset)"
                );
            }
        }
        p.idle
            .parse::<IdleStrategy>()
            .map_err(|e| anyhow::anyhow!("[pipeline] idle = {:?}: {e}", p.idle))?;
        p.ingest_idle
            .parse::<IdleStrategy>()
            .map_err(|e| anyhow::anyhow!("[pipeline] ingest_idle = {:?}: {e}", p.ingest_idle))?;
        self.io
            .idle
            .parse::<IdleStrategy>()
            .map_err(|e| anyhow::anyhow!("[io] idle = {:?}: {e}", self.io.idle))?;
        if let Some(pace) = p.pace
            && !(pace > 0.0 && pace.is_finite())
        {
            bail!("[pipeline] pace = {pace}: must be a positive speed factor (1.0 = recorded)");
        }
        if self.feed.input != "synthetic" {
            let path = Path::new(&self.feed.input);
            if !path.exists() {
                bail!(
                    "[feed] input = {:?}: no such file or directory (use \"synthetic\" for the generator)",
                    self.feed.input
                );
            }
        }
        if !(1..=MAX_INSTRUMENTS).contains(&self.feed.instruments) {
            bail!(
                "[feed] instruments = {}: the synthetic feed makes from 1 to {MAX_INSTRUMENTS}",
                self.feed.instruments
            );
        }
        if !(0.0..=1.0).contains(&self.feed.trade_ratio) {
            bail!(
                "[feed] trade_ratio = {}: must be between 0 and 1",
                self.feed.trade_ratio
            );
        }
        if !(1..=1 << 20).contains(&self.journal.segment_mib) {
            bail!(
                "[journal] segment_mib = {}: must be between 1 and 1048576 (1 TiB)",
                self.journal.segment_mib
            );
        }
        if self.quic.max_journal_replay > 1 << 24 {
            bail!(
                "[quic] max_journal_replay = {}: at most 16777216 events (1 GiB) per resume",
                self.quic.max_journal_replay
            );
        }
        if self.quic.socket_buffer_kib > 1 << 20 {
            bail!(
                "[quic] socket_buffer_kib = {}: at most 1048576 (1 GiB)",
                self.quic.socket_buffer_kib
            );
        }
        if self.quic.linger_us > 100_000 {
            bail!(
                "[quic] linger_us = {}: at most 100000 (100 ms); it adds to every late subscriber's latency",
                self.quic.linger_us
            );
        }
        if self.status.interval_ms == 0 {
            bail!("[status] interval_ms = 0: must be at least 1");
        }
        let q = &self.quic;
        match (&q.cert, &q.key) {
            (Some(_), None) => bail!("[quic] cert is set but key is not: give both or neither"),
            (None, Some(_)) => bail!("[quic] key is set but cert is not: give both or neither"),
            (Some(cert), Some(key)) => {
                for (k, path) in [("cert", cert), ("key", key)] {
                    if !path.is_file() {
                        bail!("[quic] {k} = {}: no such file", path.display());
                    }
                }
            }
            (None, None) => {}
        }
        if let Some(ca) = &q.client_ca
            && !ca.is_file()
        {
            bail!("[quic] client_ca = {}: no such file", ca.display());
        }
        for (i, token) in q.tokens.iter().enumerate() {
            if parse_sha256(&token.sha256).is_none() {
                bail!(
                    "[[quic.tokens]] #{} ({}): sha256 must be 64 hex digits",
                    i + 1,
                    token.name
                );
            }
        }
        if q.enabled && !q.default_token && q.tokens.is_empty() {
            bail!("[quic] default_token = false and no [[quic.tokens]]: nobody could subscribe");
        }
        for (key, value) in [
            ("[quic] max_connections", q.max_connections),
            ("[quic] max_subscriptions", q.max_subscriptions),
            ("[quic] queue_frames", q.queue_frames),
        ] {
            if value == 0 {
                bail!("{key} = 0: must be at least 1");
            }
        }
        if q.keep_alive_ms == 0 || q.keep_alive_ms >= q.idle_timeout_ms {
            bail!(
                "[quic] keep_alive_ms = {} must be above 0 and below idle_timeout_ms = {}",
                q.keep_alive_ms,
                q.idle_timeout_ms
            );
        }
        if let Some(nats) = &self.nats {
            nats.validate().map_err(|e| anyhow::anyhow!("[nats] {e}"))?;
        }
        Ok(())
    }

    /// Binds the metrics port (returned, to serve on) and checks the QUIC port is free,
    /// so that a port in use is an error before any thread starts.
    pub fn check_ports(&self) -> Result<Option<TcpListener>> {
        if self.quic.enabled {
            // Bound and released at once: quinn binds it again a moment later.
            UdpSocket::bind(self.quic.bind).with_context(|| {
                format!(
                    "[quic] bind = {}: cannot bind the UDP port (in use by another tickwire?)",
                    self.quic.bind
                )
            })?;
        }
        if !self.metrics.enabled {
            return Ok(None);
        }
        let listener = TcpListener::bind(self.metrics.bind).with_context(|| {
            format!(
                "[metrics] bind = {}: cannot bind the TCP port (in use by another process?)",
                self.metrics.bind
            )
        })?;
        Ok(Some(listener))
    }
}

/// Optional keys (no value by default) that `--print-config` shows commented out.
const OPTIONAL_KEYS: &[(&str, &str, &str)] = &[
    (
        "pipeline",
        "pace",
        "1.0      # replay a recorded [feed] input at this factor of its pace",
    ),
    (
        "pipeline",
        "max_events",
        "1000000  # stop after this many market events",
    ),
    (
        "pipeline",
        "alert_log",
        "\"alerts.log\"  # append every alert line to this file",
    ),
    (
        "journal",
        "dir",
        "\"/var/lib/tickwire/journal\"  # default <data_dir>/journal",
    ),
    (
        "quic",
        "cert",
        "\"cert.pem\"   # PEM chain instead of the self-signed certificate",
    ),
    ("quic", "key", "\"key.pem\"     # its PEM private key"),
    (
        "quic",
        "client_ca",
        "\"ca.pem\"  # require client certificates signed by this CA",
    ),
    (
        "quic",
        "token_file",
        "\"token\"  # default <data_dir>/quic/token",
    ),
    (
        "io",
        "core",
        "2   # pin the I/O thread to a core of its own (not one of [pipeline] cores)",
    ),
];

/// Whether `text` (TOML) sets `key` in `[table]`.
fn section_has(text: &str, table: &str, key: &str) -> bool {
    let header = format!("[{table}]");
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == header;
        } else if inside && line.split('=').next().is_some_and(|k| k.trim() == key) {
            return true;
        }
    }
    false
}

/// Lays `top` over `base`: tables merge key by key, anything else replaces.
fn overlay(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(t)) => overlay(b, t),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// 64 hex digits to 32 bytes.
pub fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_round_trips_through_print_config() {
        let config = ServiceConfig::default();
        let text = config.to_toml().expect("serializes");
        let back = ServiceConfig::from_toml(&text).expect("parses what it printed");
        assert_eq!(back, config);
        config.validate().expect("the default is valid");
    }

    #[test]
    fn an_empty_cores_list_unpins_and_survives_print_config() {
        let config = ServiceConfig::from_toml("[pipeline]\ncores = []\n").expect("parses");
        assert_eq!(config.pipeline.cores, None, "unpinned, over the default");
        let printed = config.to_toml().expect("prints");
        let again = ServiceConfig::from_toml(&printed).expect("its own output parses");
        assert_eq!(
            again.pipeline.cores, None,
            "printed as `cores = []`:\n{printed}"
        );
        let err = ServiceConfig::from_toml("[pipeline]\ncores = [1]\n").expect_err("one core");
        assert!(
            format!("{err:#}").contains("expected [ingest, trading] or [] (unpinned)"),
            "{err:#}"
        );
    }

    #[test]
    fn the_io_core_must_not_be_a_pipeline_core() {
        let cores = available_cores();
        let [a, b, ..] = cores[..] else {
            println!("SKIPPED: one core; a second is needed to pin the pipeline apart");
            return;
        };
        let config = ServiceConfig::from_toml(&format!(
            "[pipeline]\ncores = [{a}, {b}]\n[io]\ncore = {b}\n"
        ))
        .expect("parses");
        let err = config.validate().expect_err("io on the trading core");
        assert!(
            format!("{err:#}").contains(&format!("[io] core = {b}: [pipeline] cores")),
            "{err:#}"
        );
    }

    #[test]
    fn a_wrong_fsync_names_the_accepted_values() {
        for bad in ["\"sometimes\"", "-5", "true"] {
            let err =
                ServiceConfig::from_toml(&format!("[journal]\nfsync = {bad}\n")).expect_err(bad);
            assert!(
                format!("{err:#}")
                    .contains("expected \"never\", \"batch\" or a number of milliseconds"),
                "{bad}: {err:#}"
            );
        }
        for (good, setting) in [
            ("\"never\"", FsyncSetting::Word(FsyncWord::Never)),
            ("\"batch\"", FsyncSetting::Word(FsyncWord::Batch)),
            ("250", FsyncSetting::Millis(250)),
        ] {
            let config =
                ServiceConfig::from_toml(&format!("[journal]\nfsync = {good}\n")).expect(good);
            assert_eq!(config.journal.fsync, setting);
        }
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_name() {
        let err =
            ServiceConfig::from_toml("[quic]\nbindd = \"127.0.0.1:1\"\n").expect_err("unknown key");
        let text = format!("{err:#}");
        assert!(text.contains("bindd"), "{text}");
        assert!(text.contains("line 2, column 1"), "the position: {text}");
    }

    #[test]
    fn impossible_values_are_refused_naming_the_key() {
        let cases = [
            ("[pipeline]\nmd_ring = 1000\n", "[pipeline] md_ring = 1000"),
            (
                "[pipeline]\ncores = [0, 4096]\n",
                "core 4096 does not exist",
            ),
            ("[io]\ncore = 999\n", "[io] core"),
            ("[feed]\ninput = \"/no/such/file.gz\"\n", "[feed] input"),
            (
                "[quic]\ncert = \"/no/cert.pem\"\n",
                "[quic] cert is set but key is not",
            ),
            ("[pipeline]\nidle = \"sleepy\"\n", "[pipeline] idle"),
            (
                "[quic]\nlinger_us = 1000000\n",
                "[quic] linger_us = 1000000",
            ),
            (
                "[pipeline]\nmd_ring = 4294967296\n",
                "[pipeline] md_ring = 4294967296: a ring size must be a power of two from 2 to 16777216",
            ),
            (
                "[feed]\ninstruments = 10000000\n",
                "[feed] instruments = 10000000",
            ),
            (
                "[pipeline]\ncores = [0, 0]\n",
                "each need a core of their own",
            ),
            (
                "[risk]\nmax_notional = 1e22\n",
                "[risk] max_notional = 1e22",
            ),
            (
                "data_dir = \"Cargo.toml\"\n",
                "data_dir = Cargo.toml: exists and is not a directory",
            ),
            ("[risk]\nmax_position = nan\n", "[risk] max_position = NaN"),
            (
                "[risk]\nmax_order_size = inf\n",
                "[risk] max_order_size = inf",
            ),
            (
                "[risk]\nmax_order_size = -1.0\n",
                "[risk] max_order_size = -1.0",
            ),
        ];
        for (text, expected) in cases {
            let config = ServiceConfig::from_toml(text).expect("parses");
            let err = config.validate().expect_err(text);
            assert!(
                format!("{err:#}").contains(expected),
                "for {text:?}: {err:#}"
            );
        }
    }

    #[test]
    fn a_file_with_strategies_replaces_the_default_ones() {
        let config = ServiceConfig::from_toml(
            "[strategies.only]\nkind = \"market_maker\"\ninstrument = \"SYN000\"\nsize = 1\nmax_position = 2\n",
        )
        .expect("parses");
        assert_eq!(config.strategies.keys().collect::<Vec<_>>(), ["only"]);
        assert!(config.alerts.is_empty());
        let defaults = ServiceConfig::from_toml("").expect("empty file");
        assert_eq!(defaults, ServiceConfig::default());
    }

    #[test]
    fn sha256_hex_parses() {
        let hex = "00ff".repeat(16);
        assert_eq!(parse_sha256(&hex).map(|b| b[1]), Some(0xff));
        assert_eq!(parse_sha256("abc"), None);
        assert_eq!(parse_sha256(&"zz".repeat(32)), None);
    }
}
