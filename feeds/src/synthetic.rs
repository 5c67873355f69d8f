//! The synthetic generator: deterministic market data from a seed, with no files or
//! network. It is the service's embedded default source, and what tests and benchmarks
//! use when they need data of a given shape and rate.
//!
//! Each instrument's mid price follows a random walk on a tick grid; the spread is one to
//! three ticks; sizes are whole lots. Every event is a quote (the new top of book) or, with
//! probability `trade_ratio`, a trade at the bid or the ask. The same seed gives the same
//! events, on any machine (the generator is SplitMix64, written out below, so no library
//! upgrade can change the stream).
//!
//! Two clocks: **real time** (`rate` events per second of wall time, stamped with the wall
//! clock when generated; `rate = 0` means flat out) for the live service, and **simulated**
//! (timestamps advance by `1 / rate` from `start_ns`, generated as fast as asked) for files.

use tickwire_engine::clock::wall_ns;
use tickwire_engine::event::{Event, PRICE_SCALE, Quote, SIZE_SCALE, Side, Trade, flags};
use tickwire_engine::instrument::InstrumentRegistry;

use crate::{Feed, FeedError, FeedStatus, Sink};

/// Configuration of the synthetic feed.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticConfig {
    /// Seed of the generator.
    pub seed: u64,
    /// Number of instruments (symbols `SYN000`, `SYN001`, ...).
    pub instruments: u32,
    /// Events per second; 0 = as fast as the ring takes them.
    pub rate: u64,
    /// Stop after this many events (`None` = never).
    pub events: Option<u64>,
    /// Fraction of events that are trades, in [0, 1].
    pub trade_ratio: f64,
    /// Stamp events with the wall clock and pace to `rate` in real time (the live service),
    /// or simulate time from `start_ns` (files, tests).
    pub real_time: bool,
    /// First timestamp in simulated time, ns since the Unix epoch.
    pub start_ns: u64,
    /// Feed id written into each event's header.
    pub feed_id: u16,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            instruments: 8,
            rate: 0,
            events: None,
            trade_ratio: 0.2,
            real_time: false,
            // 2024-01-02T14:30:00Z, a market open.
            start_ns: 1_704_205_800_000_000_000,
            feed_id: 0,
        }
    }
}

/// Price grid: 0.01 (one cent).
const TICK: i64 = PRICE_SCALE / 100;

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and fixed forever.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, n).
    #[inline]
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

#[derive(Debug, Clone, Copy)]
struct Book {
    mid_ticks: i64,
    spread_ticks: i64,
}

/// The synthetic feed.
#[derive(Debug)]
pub struct SyntheticFeed {
    config: SyntheticConfig,
    name: String,
    rng: SplitMix64,
    books: Vec<Book>,
    registry: InstrumentRegistry,
    generated: u64,
    trade_id: u64,
    /// Wall time of the first poll, for real-time pacing.
    started_ns: Option<u64>,
    trade_threshold: u64,
}

impl SyntheticFeed {
    /// A feed with `config`.
    pub fn new(config: SyntheticConfig) -> Self {
        let mut rng = SplitMix64(config.seed);
        let instruments = config.instruments.max(1);
        let books = (0..instruments)
            .map(|_| Book {
                // Prices between 20.00 and 520.00.
                mid_ticks: 2_000 + rng.below(50_000) as i64,
                spread_ticks: 1,
            })
            .collect();
        let registry =
            InstrumentRegistry::from_symbols((0..instruments).map(|i| format!("SYN{i:03}")));
        let trade_threshold = (config.trade_ratio.clamp(0.0, 1.0) * u64::MAX as f64) as u64;
        Self {
            name: format!("synthetic(seed={})", config.seed),
            config,
            rng,
            books,
            registry,
            generated: 0,
            trade_id: 0,
            started_ns: None,
            trade_threshold,
        }
    }

    /// Events generated so far.
    pub fn generated(&self) -> u64 {
        self.generated
    }

    /// How many events are due now.
    fn due(&mut self) -> u64 {
        let remaining = self.config.events.map_or(u64::MAX, |n| n - self.generated);
        if !self.config.real_time || self.config.rate == 0 {
            return remaining;
        }
        let now = wall_ns();
        let start = *self.started_ns.get_or_insert(now);
        let target = ((now - start) as u128 * self.config.rate as u128 / 1_000_000_000) as u64;
        target.saturating_sub(self.generated).min(remaining)
    }

    /// Writes the next event into `event`.
    #[inline]
    fn generate(&mut self, event: &mut Event, now_ns: u64) {
        let index = self.rng.below(self.books.len() as u64) as usize;
        let draw = self.rng.next_u64();
        let is_trade = draw < self.trade_threshold;
        let step = self.rng.below(5) as i64 - 2; // -2..=2 ticks
        let spread = 1 + self.rng.below(3) as i64;
        let size_lots = 1 + self.rng.below(20);
        let book = &mut self.books[index];
        book.mid_ticks = (book.mid_ticks + step).max(100);
        book.spread_ticks = spread;
        let bid = (book.mid_ticks - spread / 2) * TICK;
        let ask = bid + spread * TICK;
        let ts = if self.config.real_time {
            now_ns
        } else {
            let interval = 1_000_000_000 / self.config.rate.max(1);
            self.config.start_ns + self.generated * interval
        };
        let seq = self.generated + 1;
        *event = Event::new(self.config.feed_id, index as u32, ts, ts);
        event.flags = flags::LAST;
        if is_trade {
            self.trade_id += 1;
            let buyer_aggressed = draw & 1 == 0;
            event.set_trade(Trade {
                price: if buyer_aggressed { ask } else { bid },
                size: size_lots * 100 * SIZE_SCALE,
                trade_id: self.trade_id,
                seq,
                aggressor: if buyer_aggressed {
                    Side::Bid
                } else {
                    Side::Ask
                } as u8,
                ..Trade::default()
            });
        } else {
            event.set_quote(Quote {
                bid_px: bid,
                ask_px: ask,
                bid_size: size_lots * 100 * SIZE_SCALE,
                ask_size: (1 + (draw >> 59)) * 100 * SIZE_SCALE,
                seq,
            });
        }
        self.generated += 1;
    }
}

impl Feed for SyntheticFeed {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll(&mut self, sink: &mut Sink<'_>) -> Result<FeedStatus, FeedError> {
        if self.config.events.is_some_and(|n| self.generated >= n) {
            return Ok(FeedStatus::End);
        }
        let due = self.due().min(sink.remaining() as u64);
        if due == 0 {
            return Ok(FeedStatus::Idle);
        }
        let now = if self.config.real_time { wall_ns() } else { 0 };
        for _ in 0..due {
            let Some(slot) = sink.next_slot() else { break };
            self.generate(slot, now);
        }
        Ok(FeedStatus::Active)
    }

    fn instruments(&self) -> &InstrumentRegistry {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_engine::event::EventKind;

    fn collect(config: SyntheticConfig, n: usize) -> Vec<Event> {
        let mut feed = SyntheticFeed::new(config);
        let mut buf = vec![Event::default(); n];
        let mut sink = Sink::from_slice(&mut buf);
        feed.poll(&mut sink).expect("synthetic never fails");
        sink.events().to_vec()
    }

    #[test]
    fn same_seed_same_events_other_seed_other_events() {
        let config = SyntheticConfig {
            events: Some(1000),
            ..SyntheticConfig::default()
        };
        let a = collect(config.clone(), 1000);
        assert_eq!(a.len(), 1000);
        assert_eq!(a, collect(config.clone(), 1000));
        assert_ne!(a, collect(SyntheticConfig { seed: 7, ..config }, 1000));
    }

    #[test]
    fn quotes_are_two_sided_and_trades_hit_the_touch() {
        let events = collect(
            SyntheticConfig {
                events: Some(10_000),
                ..Default::default()
            },
            10_000,
        );
        let trades = events
            .iter()
            .filter(|e| e.kind() == Some(EventKind::Trade))
            .count();
        assert!(
            (1_500..2_500).contains(&trades),
            "about 20% trades, got {trades}"
        );
        for e in &events {
            if let Some(q) = e.quote() {
                assert!(
                    q.is_two_sided() && q.bid_px < q.ask_px && q.spread() <= 3 * TICK,
                    "{q:?}"
                );
                assert_eq!(q.bid_px % TICK, 0);
            }
            assert!((e.instrument as usize) < 8);
        }
    }

    #[test]
    fn simulated_time_advances_by_the_rate_interval() {
        let config = SyntheticConfig {
            rate: 1000,
            events: Some(3),
            ..Default::default()
        };
        let start = config.start_ns;
        let ts: Vec<u64> = collect(config, 3).iter().map(|e| e.exchange_ts).collect();
        assert_eq!(ts, [start, start + 1_000_000, start + 2_000_000]);
    }
}
