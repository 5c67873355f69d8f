//! End to end: a feed through the trading pipeline (ingest -> market-data ring -> the
//! shipped strategies -> risk -> paper execution -> notifier -> alert log, see
//! [`TradingPipeline`]) **and** a QUIC subscriber, at fixed rates and flat out.
//!
//! The pipeline is built with [`TradingPipeline::assemble`] and three taps, as `tickwire
//! run` builds it: a [`PublisherAgent`] on its own thread (backoff idle) reads the
//! market-data, execution-report and notification rings; a [`Server`] on 127.0.0.1:0
//! (TLS 1.3, its self-signed certificate pinned by the client, a token) runs in a
//! one-worker tokio runtime; one [`Client`] in a one-worker runtime of its own subscribes
//! to every market-data channel with policy disconnect before the first event is
//! released. Each run reports the pipeline's hops and what the subscriber received, with
//! its latency from each event's `receive_ts` ([`SubscriberReport`]). The publisher gates
//! the market-data ring like any subscriber, so the pipeline's events/s include it.
//!
//! At a fixed rate the feed is a [`ScheduledFeed`]: event `i` is released at `start + i /
//! rate` and its `receive_ts` is that *scheduled* time, not the time the ingest thread got
//! to it, and the pipeline does not re-stamp it. A stall of the ingest thread therefore
//! shows as latency of every event it delayed (no coordinated omission). Flat out, the
//! feed is the recorded Binance file (or synthetic without `../shared/data`) re-stamped at
//! ingest, so the figures are mostly queueing behind a full ring.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tickwire_engine::agent::{Layout, ThreadSpec};
use tickwire_engine::clock::wall_ns;
use tickwire_engine::event::Event;
use tickwire_engine::idle::IdleStrategy;
use tickwire_engine::instrument::InstrumentRegistry;
use tickwire_feeds::binance::{BinanceConfig, BinanceFeed};
use tickwire_feeds::synthetic::{SyntheticConfig, SyntheticFeed};
use tickwire_feeds::{Feed, FeedError, FeedStatus, INGEST_BATCH, Sink};
use tickwire_quic::client::{Client, ClientConfig, Delivery};
use tickwire_quic::fanout::{FanoutConfig, PublisherAgent};
use tickwire_quic::protocol::{ChannelKind, Policy, SubscribeRequest};
use tickwire_quic::server::{Entitlement, Limits, Server, ServerConfig, TokenEntry};
use tickwire_strategies::pipeline::{Report, Taps, TradingConfig, TradingPipeline};

/// A failed run: the feed could not be opened, or the pipeline failed.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The pipeline configuration of the end-to-end runs (and of the `tick_to_order` binary):
/// both shipped strategies, risk limits, two alert rules. `{SYMBOL}` is the instrument.
pub const CONFIG: &str = r#"
[pipeline]
md_ring = 4096
timeout_s = 900

[risk]
max_order_size = 0.05
max_position = 0.1
max_notional = 100000.0
collar_bps = 20
max_orders = 20

[strategies.ma_cross]
instrument = "{SYMBOL}"
fast = 5
slow = 20
sample_ms = 1000
size = 0.02

[strategies.market_maker]
instrument = "{SYMBOL}"
size = 0.01
half_spread_bps = 0.5
skew_bps = 0.5
max_position = 0.05
requote_bps = 0.3
min_requote_ms = 250

[[alerts]]
user = 1
rule = "fills"
strategy = "market_maker"

[[alerts]]
user = 2
rule = "spread_wide"
instrument = "{SYMBOL}"
spread = 0.5
"#;

/// [`CONFIG`] for `symbol`.
///
/// # Panics
///
/// Never for the shipped strategies: `CONFIG` is valid (the `tick_to_order` binary and the
/// suite's CI run parse it).
pub fn config(symbol: &str) -> TradingConfig {
    TradingConfig::from_toml(&CONFIG.replace("{SYMBOL}", symbol))
        .expect("the end-to-end configuration is valid")
}

/// A synthetic feed (one instrument, `SYN000`) released on a schedule: `rate` events per
/// second of wall time, each stamped with its scheduled send time (see the module docs).
#[derive(Debug)]
pub struct ScheduledFeed {
    inner: SyntheticFeed,
    rate: u64,
    events: u64,
    emitted: u64,
    /// The monotonic and wall clocks at the first poll.
    start: Option<(Instant, u64)>,
    buffer: Vec<Event>,
}

impl ScheduledFeed {
    /// `events` events at `rate` events/s.
    pub fn new(rate: u64, events: u64) -> Self {
        Self {
            inner: SyntheticFeed::new(SyntheticConfig {
                instruments: 1,
                events: Some(events),
                rate: rate.max(1),
                real_time: false,
                ..SyntheticConfig::default()
            }),
            rate: rate.max(1),
            events,
            emitted: 0,
            start: None,
            buffer: vec![Event::default(); INGEST_BATCH],
        }
    }

    fn scheduled_offset_ns(&self, i: u64) -> u64 {
        (u128::from(i) * 1_000_000_000 / u128::from(self.rate)) as u64
    }
}

impl Feed for ScheduledFeed {
    fn name(&self) -> &str {
        "scheduled synthetic"
    }

    fn poll(&mut self, sink: &mut Sink<'_>) -> Result<FeedStatus, FeedError> {
        if self.emitted >= self.events {
            return Ok(FeedStatus::End);
        }
        let (start, start_wall) = *self
            .start
            .get_or_insert_with(|| (Instant::now(), wall_ns()));
        let elapsed = start.elapsed().as_nanos();
        // Events 0..=due_index are due.
        let due_index = (elapsed * u128::from(self.rate) / 1_000_000_000) as u64;
        let due = (due_index + 1)
            .min(self.events)
            .saturating_sub(self.emitted)
            .min(sink.remaining() as u64)
            .min(self.buffer.len() as u64) as usize;
        if due == 0 {
            return Ok(FeedStatus::Idle);
        }
        let mut staging = Sink::from_slice(&mut self.buffer[..due]);
        self.inner.poll(&mut staging)?;
        let written = staging.written();
        for i in 0..written {
            let mut event = self.buffer[i];
            let scheduled = start_wall + self.scheduled_offset_ns(self.emitted + i as u64);
            event.receive_ts = scheduled;
            event.exchange_ts = scheduled;
            sink.push(event);
        }
        self.emitted += written as u64;
        Ok(FeedStatus::Active)
    }

    fn instruments(&self) -> &InstrumentRegistry {
        self.inner.instruments()
    }
}

/// The idle strategies and the cores of the end-to-end runs: both threads yielding, and
/// pinned to two cores when there are two (two threads, one per core: no livelock).
fn tune(config: &mut TradingConfig) {
    config.pipeline.idle = "yielding".into();
    config.pipeline.ingest_idle = "yielding".into();
    if let [a, b, ..] = tickwire_engine::agent::available_cores()[..] {
        config.pipeline.cores = Some([a, b]);
    }
}

/// `events` synthetic events at `rate` events/s through the pipeline and its QUIC
/// subscriber, latency from the scheduled send times.
///
/// The market maker may requote every 1 ms of event time and the order-rate check is off,
/// so that a run of a second sends thousands of orders (the recorded-file configuration
/// requotes at most every 250 ms: a handful of orders, too few for a latency histogram).
pub fn at_rate(rate: u64, events: u64) -> Result<Run, Error> {
    run_with_subscriber(rate_config()?, ScheduledFeed::new(rate, events))
}

/// [`at_rate`] without the QUIC publisher, server and subscriber: the pipeline alone, to
/// show in the same run what the subscriber costs the trading path.
pub fn at_rate_without_subscriber(rate: u64, events: u64) -> Result<Report, Error> {
    Ok(TradingPipeline::new(rate_config()?).run(ScheduledFeed::new(rate, events))?)
}

/// The configuration of the fixed-rate runs (see [`at_rate`]).
fn rate_config() -> Result<TradingConfig, Error> {
    let text = CONFIG
        .replace("{SYMBOL}", "SYN000")
        .replace("min_requote_ms = 250", "min_requote_ms = 1")
        .replace("max_orders = 20", "max_orders = 0");
    let mut config = TradingConfig::from_toml(&text)?;
    tune(&mut config);
    config.pipeline.restamp = false;
    Ok(config)
}

/// Flat out through the pipeline and its QUIC subscriber: the recorded Binance file at
/// `binance` (re-stamped at ingest), or `synthetic` events when it is `None`.
pub fn flat_out(binance: Option<&Path>, synthetic: u64) -> Result<Run, Error> {
    let symbol = if binance.is_some() {
        "BTCUSDT"
    } else {
        "SYN000"
    };
    let mut config = config(symbol);
    tune(&mut config);
    match binance {
        Some(path) => {
            let feed = BinanceFeed::open(path, BinanceConfig::default())?
                .with_registry(InstrumentRegistry::from_symbols([symbol]));
            run_with_subscriber(config, feed)
        }
        None => run_with_subscriber(
            config,
            SyntheticFeed::new(SyntheticConfig {
                instruments: 1,
                events: Some(synthetic),
                ..SyntheticConfig::default()
            }),
        ),
    }
}

/// What one subscriber (QUIC on 127.0.0.1, TLS 1.3, every market-data channel) received.
#[derive(Debug, Clone)]
pub struct SubscriberReport {
    /// Its policy for falling behind.
    pub policy: Policy,
    /// Market-data events it received.
    pub received: u64,
    /// Market-data events the pipeline published ([`Report::events`]).
    pub expected: u64,
    /// Latency from each received event's `receive_ts` (the scheduled send time at fixed
    /// rates, the ingest's wall clock flat out) to its arrival at the subscriber, ns.
    pub latency: Histogram<u64>,
    /// From the pipeline's start to the subscriber's last arrival.
    pub elapsed: Duration,
    /// Gaps the subscriber saw (conflated away or lost).
    pub gaps: u64,
    /// How its connection ended, if the server closed it before the end of the stream.
    pub ended: Option<String>,
    /// Publisher counters: (events sequenced from the three rings, conflated quotes, slow
    /// disconnects).
    pub publisher: (u64, u64, u64),
}

impl SubscriberReport {
    /// Whether it received every market-data event.
    pub fn complete(&self) -> bool {
        self.received == self.expected
    }
}

/// A run of the pipeline with its QUIC subscriber.
#[derive(Debug, Clone)]
pub struct Run {
    /// The pipeline's report (events, orders, per-hop latency).
    pub report: Report,
    /// The subscriber's.
    pub subscriber: SubscriberReport,
}

/// The subscriber's token (a bench-only secret on loopback).
const TOKEN: &str = "bench-e2e";

/// The subscriber's policy: disconnect. Its queue (8192 frames of up to
/// [`FanoutConfig::max_batch`] events) is deep enough for the usdm file flat out here; a
/// disconnect shows as an incomplete subscriber with the server's reason, never silently.
const POLICY: Policy = Policy::Disconnect;

/// Runs `config` over `feed` with the QUIC publisher on the market-data, execution-report
/// and notification rings (its own thread, backoff idle), the server on 127.0.0.1:0 (a
/// one-worker tokio runtime) and one client subscribed to every market-data channel (a
/// one-worker runtime of its own), connected and subscribed before the first event.
fn run_with_subscriber<F: Feed + 'static>(config: TradingConfig, feed: F) -> Result<Run, Error> {
    let timeout = Duration::from_secs(config.pipeline.timeout_s);
    let instruments = feed.instruments().clone();
    let taps = Taps {
        md: vec!["quic".into()],
        exec: vec!["quic".into()],
        notifications: vec!["quic".into()],
    };
    let mut assembled = TradingPipeline::new(config).assemble(feed, &taps)?;
    let sources = assembled
        .md_taps
        .drain(..)
        .chain(assembled.exec_taps.drain(..))
        .chain(assembled.notification_taps.drain(..))
        .collect();
    let (agent, handle) = PublisherAgent::new(
        sources,
        FanoutConfig {
            instruments,
            ..FanoutConfig::default()
        },
    );
    let fanout = handle.clone();
    let publisher = Layout::new()
        .thread(
            ThreadSpec::new("quic-publisher")
                .idle(IdleStrategy::BACKOFF)
                .agent(agent),
        )
        .spawn()?;
    let server_runtime = runtime("quic-server")?;
    let client_runtime = runtime("subscriber")?;
    let dir = tempfile::tempdir()?;
    let server = {
        let _guard = server_runtime.enter();
        Server::start(
            ServerConfig {
                bind: SocketAddr::from(([127, 0, 0, 1], 0)),
                data_dir: dir.path().to_path_buf(),
                tokens: vec![TokenEntry::new(
                    "bench",
                    TOKEN,
                    vec![Entitlement::new(ChannelKind::MarketData, ["*"])],
                )],
                limits: Limits {
                    queue_frames: 8192,
                    ..Limits::default()
                },
                ..ServerConfig::default()
            },
            handle,
        )?
    };
    let mut client_config = ClientConfig::new(
        server.local_addr(),
        server.certificate_der().to_vec(),
        TOKEN,
    );
    client_config.subscriptions.push(SubscribeRequest {
        id: 1,
        kind: ChannelKind::MarketData,
        policy: POLICY,
        patterns: vec!["*".into()],
    });
    client_config.reconnect = false;
    let client = client_runtime.block_on(subscribe(client_config))?;
    // Set once the pipeline has ended: the subscriber stops at that many events.
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let started = Instant::now();
    let reader = client_runtime.spawn(drain(client, Arc::clone(&target), started));

    let pipeline = assembled.layout.spawn()?;
    let threads = pipeline.join_timeout(timeout)?;
    let elapsed = started.elapsed();
    let report = assembled.finish.report(&threads, elapsed);
    // The rings are finished: the publisher sends what it holds and drops the queues.
    publisher.join_timeout(Duration::from_secs(30))?;
    target.store(report.events, Ordering::Relaxed);
    server_runtime.block_on(server.shutdown_gracefully("end of run", Duration::from_secs(30)));
    let drained = client_runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), reader).await });
    let (client, received, last, ended) = match drained {
        Ok(Ok(drained)) => drained,
        Ok(Err(join)) => return Err(format!("the subscriber task failed: {join}").into()),
        Err(_) => return Err("the subscriber did not finish within 30 s of the end".into()),
    };
    server.shutdown();
    let client_stats = client.stats();
    let stats = fanout.stats();
    Ok(Run {
        subscriber: SubscriberReport {
            policy: POLICY,
            received,
            expected: report.events,
            latency: client.latency().clone(),
            elapsed: last,
            gaps: client_stats.gaps.load(Ordering::Relaxed)
                + client_stats.conflations.load(Ordering::Relaxed),
            ended,
            publisher: (
                stats.events.load(Ordering::Relaxed),
                stats.conflated.load(Ordering::Relaxed),
                stats.slow_disconnects.load(Ordering::Relaxed),
            ),
        },
        report,
    })
}

fn runtime(name: &str) -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()?)
}

/// Connects and waits (10 s at most) until the subscription is active.
async fn subscribe(config: ClientConfig) -> Result<Client, Error> {
    let addr = config.server;
    let mut client = Client::connect(config).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, client.next()).await {
            Ok(Some(Delivery::Subscribed { .. })) => return Ok(client),
            Ok(Some(Delivery::Refused { code, message, .. })) => {
                return Err(format!("{addr}: subscription refused: {code:?} {message}").into());
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(format!("{addr}: the connection ended before subscribing").into());
            }
            Err(_) => return Err(format!("{addr}: not subscribed within 10 s").into()),
        }
    }
}

/// Reads until `target` events arrived, the connection ended, or nothing came for 5 s
/// after the target was set; returns the client, the events received, the time of the
/// last arrival since `started`, and the server's reason if it closed the connection
/// first.
async fn drain(
    mut client: Client,
    target: Arc<AtomicU64>,
    started: Instant,
) -> (Client, u64, Duration, Option<String>) {
    let mut got = 0u64;
    let mut last = Duration::ZERO;
    let mut quiet = Duration::ZERO;
    let tick = Duration::from_millis(100);
    loop {
        if got >= target.load(Ordering::Relaxed) {
            return (client, got, last, None);
        }
        match tokio::time::timeout(tick, client.next()).await {
            Ok(Some(Delivery::Batch(batch))) => {
                got += batch.events.len() as u64;
                last = started.elapsed();
                quiet = Duration::ZERO;
            }
            Ok(Some(Delivery::Disconnected { code, reason })) => {
                let ended = (got < target.load(Ordering::Relaxed))
                    .then(|| format!("disconnected: {code:?} {reason}"));
                return (client, got, last, ended);
            }
            Ok(Some(_)) => {}
            Ok(None) => return (client, got, last, Some("the client stopped".into())),
            Err(_) => {
                if target.load(Ordering::Relaxed) != u64::MAX {
                    quiet += tick;
                    if quiet >= Duration::from_secs(5) {
                        return (
                            client,
                            got,
                            last,
                            Some("nothing for 5 s after the end".into()),
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_feed_stamps_scheduled_times_and_ends() {
        let mut feed = ScheduledFeed::new(1_000_000, 5_000);
        let mut slots = vec![Event::default(); 256];
        let mut seen = Vec::new();
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline, "the feed did not end in 10 s");
            let mut sink = Sink::from_slice(&mut slots);
            let status = feed.poll(&mut sink).expect("synthetic never fails");
            seen.extend(sink.events().iter().map(|e| e.receive_ts));
            if status == FeedStatus::End {
                break;
            }
            if status == FeedStatus::Idle {
                std::thread::yield_now();
            }
        }
        assert_eq!(seen.len(), 5_000);
        // 1 us apart, exactly: the schedule, not the clock.
        assert!(
            seen.windows(2).all(|w| w[1] - w[0] == 1_000),
            "{:?}",
            &seen[..4]
        );
    }
    #[test]
    fn the_subscriber_receives_every_market_data_event_of_a_paced_run() {
        // 2 000 events at 10k/s: 0.2 s through the real pipeline, publisher, server and
        // client on loopback. Completeness only, never a timing.
        let run = at_rate(10_000, 2_000).expect("the run completes");
        assert_eq!(run.report.events, 2_000);
        let s = &run.subscriber;
        assert!(
            s.complete(),
            "received {}/{} ({:?}; gaps {})",
            s.received,
            s.expected,
            s.ended,
            s.gaps
        );
        assert_eq!(s.latency.len(), 2_000, "one latency sample per event");
        assert!(
            s.publisher.0 >= 2_000,
            "the publisher sequenced {} events",
            s.publisher.0
        );
        assert!(
            run.report
                .latency
                .iter()
                .any(|h| h.name == "tick->order" && h.percentiles.count > 0),
            "the strategies sent orders"
        );
    }
}
