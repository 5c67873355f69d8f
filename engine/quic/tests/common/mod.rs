//! Shared set-up for the QUIC tests: a market-data ring, the publisher agent on its own
//! thread, a server on 127.0.0.1 with an ephemeral port, and helpers to publish and collect.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use tickwire_engine::agent::{Layout, Pipeline, ThreadSpec};
use tickwire_engine::clock::wall_ns;
use tickwire_engine::event::{Event, Quote, Trade};
use tickwire_engine::idle::IdleStrategy;
use tickwire_engine::instrument::InstrumentRegistry;
use tickwire_engine::journal::{FsyncPolicy, JournalConfig, JournalWriter, RecorderAgent};
use tickwire_engine::ring::{Publisher, RingBuilder};
use tickwire_quic::client::{Client, ClientConfig, Delivery};
use tickwire_quic::fanout::{FanoutConfig, FanoutHandle, PublisherAgent};
use tickwire_quic::protocol::{ChannelId, ChannelKind, Policy, SubscribeRequest};
use tickwire_quic::server::{Entitlement, Limits, Server, ServerConfig, TokenEntry};

pub const WAIT: Duration = Duration::from_secs(30);
pub const SYMBOLS: [&str; 3] = ["BTC-USD", "ETH-USD", "SOL-USD"];
pub const TOKEN: &str = "all-access";
pub const BTC_ONLY: &str = "btc-only";

pub struct Harness {
    pub md: Option<Publisher<Event>>,
    pub server: Server,
    pub fanout: FanoutHandle,
    pub pipeline: Option<Pipeline>,
    pub cert: Vec<u8>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// A harness; with `fanout.journal` set, a `RecorderAgent` on its own thread records
    /// the market-data ring into that journal, as the service does.
    pub fn start(limits: Limits, fanout: FanoutConfig) -> Self {
        Self::start_with(limits, fanout, |_| {})
    }

    /// As [`start`](Self::start), with `tweak` applied to the server's configuration.
    pub fn start_with(
        limits: Limits,
        fanout: FanoutConfig,
        tweak: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        let mut ring = RingBuilder::<Event>::new(1 << 16).expect("power of two");
        let source = ring.subscriber("quic-publisher");
        let recorder = fanout.journal.as_ref().map(|_| ring.subscriber("recorder"));
        let md = ring.build().expect("has a subscriber");
        let writer = fanout.journal.as_ref().map(|dir| {
            let config = JournalConfig {
                fsync: FsyncPolicy::Never,
                ..JournalConfig::default()
            };
            JournalWriter::open(dir, config).expect("journal opens")
        });
        let mut fanout = fanout;
        fanout.instruments = InstrumentRegistry::from_symbols(SYMBOLS);
        let (agent, handle) = PublisherAgent::try_new(vec![source], fanout).expect("journal read");
        let mut layout = Layout::new().thread(
            ThreadSpec::new("publisher")
                .idle(IdleStrategy::BACKOFF)
                .agent(agent),
        );
        if let (Some(sub), Some(writer)) = (recorder, writer) {
            layout = layout.thread(
                ThreadSpec::new("recorder")
                    .idle(IdleStrategy::BACKOFF)
                    .agent(RecorderAgent::new(sub, writer)),
            );
        }
        let pipeline = layout.spawn().expect("layout");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = ServerConfig {
            bind: "127.0.0.1:0".parse().expect("address"),
            data_dir: dir.path().join("quic"),
            tokens: vec![
                TokenEntry::new(
                    "all",
                    TOKEN,
                    vec![
                        Entitlement::new(ChannelKind::MarketData, ["*"]),
                        Entitlement::new(ChannelKind::Notifications, ["*"]),
                    ],
                ),
                TokenEntry::new(
                    "btc",
                    BTC_ONLY,
                    vec![Entitlement::new(ChannelKind::MarketData, ["BTC*"])],
                ),
            ],
            limits,
            ..ServerConfig::default()
        };
        tweak(&mut config);
        let server = Server::start(config, handle.clone()).expect("server starts");
        let cert = server.certificate_der().to_vec();
        Self {
            md: Some(md),
            server,
            fanout: handle,
            pipeline: Some(pipeline),
            cert,
            _dir: dir,
        }
    }

    pub fn client_config(&self, token: &str, patterns: &[&str], policy: Policy) -> ClientConfig {
        let mut config = ClientConfig::new(self.server.local_addr(), self.cert.clone(), token);
        config.subscriptions.push(SubscribeRequest {
            id: 1,
            kind: ChannelKind::MarketData,
            policy,
            patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
        });
        config
    }

    /// Publishes one event; returns it.
    pub fn publish(&mut self, event: Event) -> Event {
        self.md
            .as_mut()
            .expect("ring open")
            .publish(|slot| *slot = event)
            .expect("ring not halted");
        event
    }

    /// Waits (bounded) until the publisher agent has sequenced `n` events in all: the
    /// ring hands them over asynchronously.
    pub async fn wait_sequenced(&self, n: u64) {
        let deadline = std::time::Instant::now() + WAIT;
        while self
            .fanout
            .stats()
            .events
            .load(std::sync::atomic::Ordering::Relaxed)
            < n
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the publisher sequenced only {} of {n} events in {WAIT:?}",
                self.fanout
                    .stats()
                    .events
                    .load(std::sync::atomic::Ordering::Relaxed)
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    pub fn stop(&mut self) {
        self.md = None;
        if let Some(p) = self.pipeline.take() {
            p.join_timeout(WAIT).expect("publisher agent stops");
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.md = None;
        if let Some(p) = self.pipeline.take() {
            let _ = p.join_timeout(WAIT);
        }
    }
}

pub fn quote(instrument: u32, i: u64) -> Event {
    let mut e = Event::new(0, instrument, i, wall_ns());
    e.set_quote(Quote {
        bid_px: 100 + i as i64,
        ask_px: 101 + i as i64,
        bid_size: 1,
        ask_size: 2,
        seq: i,
    });
    e
}

pub fn trade(instrument: u32, i: u64) -> Event {
    let mut e = Event::new(0, instrument, i, wall_ns());
    e.set_trade(Trade {
        price: 100 + i as i64,
        size: 3,
        trade_id: i,
        seq: i,
        ..Trade::default()
    });
    e
}

pub fn md(key: u32) -> ChannelId {
    ChannelId {
        kind: ChannelKind::MarketData,
        key,
    }
}

/// What a client saw, per channel: (sequence, checksum) in arrival order.
#[derive(Debug, Default)]
pub struct Seen {
    pub events: HashMap<ChannelId, Vec<(u64, u64)>>,
    pub gaps: Vec<Delivery>,
    pub disconnects: Vec<Delivery>,
    pub refused: Vec<Delivery>,
    pub connects: usize,
    /// The `restarted` kinds of every connect that reported a server restart.
    pub restarts: Vec<Vec<ChannelKind>>,
}

impl Seen {
    pub fn record(&mut self, d: Delivery) {
        match d {
            Delivery::Batch(b) => {
                let v = self.events.entry(b.channel).or_default();
                for (i, e) in b.events.iter().enumerate() {
                    v.push((b.first_sequence + i as u64, e.checksum()));
                }
            }
            g @ Delivery::Gap { .. } => self.gaps.push(g),
            d @ Delivery::Disconnected { .. } => self.disconnects.push(d),
            r @ Delivery::Refused { .. } => self.refused.push(r),
            Delivery::Connected { restarted, .. } => {
                self.connects += 1;
                if !restarted.is_empty() {
                    self.restarts.push(restarted);
                }
            }
            Delivery::Subscribed { .. } => {}
        }
    }

    pub fn count(&self, channel: ChannelId) -> usize {
        self.events.get(&channel).map_or(0, Vec::len)
    }

    pub fn last(&self, channel: ChannelId) -> u64 {
        self.events
            .get(&channel)
            .and_then(|v| v.last())
            .map_or(0, |x| x.0)
    }
}

/// Connects with `config` and waits (bounded) until its subscription is active.
pub async fn connected(config: ClientConfig) -> (Client, Seen) {
    let mut client = Client::connect(config).await.expect("connects");
    let mut seen = Seen::default();
    subscribed(&mut client, &mut seen).await;
    (client, seen)
}

/// Waits for the subscription to be active.
pub async fn subscribed(client: &mut Client, seen: &mut Seen) {
    tokio::time::timeout(WAIT, async {
        while let Some(d) = client.next().await {
            if matches!(d, Delivery::Subscribed { .. }) {
                return;
            }
            seen.record(d);
        }
        panic!("client ended before subscribing");
    })
    .await
    .expect("subscribed in time");
}

/// Reads deliveries until `done(seen)`; false if that did not happen within [`WAIT`].
pub async fn try_collect_until(
    client: &mut Client,
    seen: &mut Seen,
    done: impl Fn(&Seen) -> bool,
) -> bool {
    tokio::time::timeout(WAIT, async {
        while !done(seen) {
            match client.next().await {
                Some(d) => seen.record(d),
                None => return,
            }
        }
    })
    .await
    .is_ok()
        && done(seen)
}

/// Reads deliveries until `done(seen)`, panicking after [`WAIT`].
pub async fn collect_until(client: &mut Client, seen: &mut Seen, done: impl Fn(&Seen) -> bool) {
    assert!(
        try_collect_until(client, seen, done).await,
        "not collected in time: {} channels, gaps {:?}, disconnects {:?}, refused {:?}",
        seen.events.len(),
        seen.gaps.len(),
        seen.disconnects,
        seen.refused
    );
}

/// Asserts `seen` holds exactly `expected` (sequence 1.., checksums) for `channel`.
pub fn assert_exact(seen: &Seen, channel: ChannelId, expected: &[u64]) {
    let got = seen.events.get(&channel).map_or(&[][..], Vec::as_slice);
    assert_eq!(got.len(), expected.len(), "event count on {channel:?}");
    for (i, ((seq, sum), want)) in got.iter().zip(expected).enumerate() {
        assert_eq!(*seq, i as u64 + 1, "sequence at {i} on {channel:?}");
        assert_eq!(sum, want, "checksum of sequence {seq} on {channel:?}");
    }
}
