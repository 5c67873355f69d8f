//! End to end: a feed through the trading pipeline (ingest -> market-data ring -> the
//! shipped strategies -> risk -> paper execution -> notifier -> alert log, see
//! [`TradingPipeline`]), at fixed rates and flat out.
//!
//! At a fixed rate the feed is a [`ScheduledFeed`]: event `i` is released at `start + i /
//! rate` and its `receive_ts` is that *scheduled* time, not the time the ingest thread got
//! to it, and the pipeline does not re-stamp it. A stall of the ingest thread therefore
//! shows as latency of every event it delayed (no coordinated omission). Flat out, the
//! feed is the recorded Binance file (or synthetic without `../shared/data`) re-stamped at
//! ingest, so the figures are mostly queueing behind a full ring.

use std::path::Path;
use std::time::Instant;

use tickwire_engine::clock::wall_ns;
use tickwire_engine::event::Event;
use tickwire_engine::instrument::InstrumentRegistry;
use tickwire_feeds::binance::{BinanceConfig, BinanceFeed};
use tickwire_feeds::synthetic::{SyntheticConfig, SyntheticFeed};
use tickwire_feeds::{Feed, FeedError, FeedStatus, INGEST_BATCH, Sink};
use tickwire_strategies::pipeline::{Report, TradingConfig, TradingPipeline};

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

/// `events` synthetic events at `rate` events/s through the pipeline, latency from the
/// scheduled send times.
///
/// The market maker may requote every 1 ms of event time and the order-rate check is off,
/// so that a run of a second sends thousands of orders (the recorded-file configuration
/// requotes at most every 250 ms: a handful of orders, too few for a latency histogram).
pub fn at_rate(rate: u64, events: u64) -> Result<Report, Error> {
    let text = CONFIG
        .replace("{SYMBOL}", "SYN000")
        .replace("min_requote_ms = 250", "min_requote_ms = 1")
        .replace("max_orders = 20", "max_orders = 0");
    let mut config = TradingConfig::from_toml(&text)?;
    tune(&mut config);
    config.pipeline.restamp = false;
    Ok(TradingPipeline::new(config).run(ScheduledFeed::new(rate, events))?)
}

/// Flat out: the recorded Binance file at `binance` (re-stamped at ingest), or `synthetic`
/// events when it is `None`.
pub fn flat_out(binance: Option<&Path>, synthetic: u64) -> Result<Report, Error> {
    let symbol = if binance.is_some() {
        "BTCUSDT"
    } else {
        "SYN000"
    };
    let mut config = config(symbol);
    tune(&mut config);
    let pipeline = TradingPipeline::new(config);
    Ok(match binance {
        Some(path) => {
            let feed = BinanceFeed::open(path, BinanceConfig::default())?
                .with_registry(InstrumentRegistry::from_symbols([symbol]));
            pipeline.run(feed)?
        }
        None => pipeline.run(SyntheticFeed::new(SyntheticConfig {
            instruments: 1,
            events: Some(synthetic),
            ..SyntheticConfig::default()
        }))?,
    })
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
}
