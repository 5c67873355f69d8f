//! Moving-average crossover on the mid: samples the mid every `sample_ms` of event time,
//! keeps a fast and a slow simple moving average, and when the fast crosses the slow it
//! trades toward a target position of `+size` (fast above) or `-size` (fast below) with IOC
//! orders priced `slippage_bps` through the touch, none larger than `size` (a reversal is
//! two orders).

use serde::Deserialize;
use tickwire_engine::event::{OrderType, Side};
use tickwire_engine::instrument::InstrumentRegistry;

use crate::config::{self, ConfigError};
use crate::registry::BuildStrategy;
use crate::strategy::{Context, Strategy, TimerId};

/// Parameters of [`MaCross`] (`kind = "ma_cross"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaCrossParams {
    /// The symbol traded.
    pub instrument: String,
    /// Samples in the fast average. Default 10.
    #[serde(default = "default_fast")]
    pub fast: usize,
    /// Samples in the slow average. Default 40.
    #[serde(default = "default_slow")]
    pub slow: usize,
    /// Sampling interval, ms of event time. Default 1000.
    #[serde(default = "default_sample_ms")]
    pub sample_ms: u64,
    /// Target absolute position, base units.
    pub size: f64,
    /// How far through the touch the IOC is priced, basis points. Default 5.
    #[serde(default = "default_slippage")]
    pub slippage_bps: u32,
}

fn default_fast() -> usize {
    10
}
fn default_slow() -> usize {
    40
}
fn default_sample_ms() -> u64 {
    1000
}
fn default_slippage() -> u32 {
    5
}

/// The moving-average crossover strategy.
#[derive(Debug)]
pub struct MaCross {
    instrument: u32,
    fast: usize,
    slow: usize,
    sample_ns: u64,
    size: i64,
    slippage_bps: i64,
    /// The last `slow` mids, a ring (preallocated).
    samples: Vec<i64>,
    next: usize,
    count: usize,
    /// Last sign of fast - slow (0 before both averages exist).
    last_sign: i64,
}

const SAMPLE: TimerId = 1;

impl BuildStrategy for MaCross {
    type Params = MaCrossParams;

    fn build(p: MaCrossParams, instruments: &InstrumentRegistry) -> Result<Self, ConfigError> {
        let size = i64::try_from(config::size(p.size)).unwrap_or(0);
        if !(p.size > 0.0 && p.size.is_finite()) || size == 0 {
            return Err(ConfigError::invalid(
                "ma_cross",
                format!(
                    "size = {:?}: must be a positive number of at most 9.2e10",
                    p.size
                ),
            ));
        }
        if p.fast == 0 || p.fast >= p.slow {
            return Err(ConfigError::invalid(
                "ma_cross",
                format!("need 0 < fast < slow, got fast {} slow {}", p.fast, p.slow),
            ));
        }
        Ok(Self {
            instrument: config::instrument(instruments, &p.instrument, "ma_cross")?,
            fast: p.fast,
            slow: p.slow,
            sample_ns: p.sample_ms.max(1) * 1_000_000,
            size,
            slippage_bps: i64::from(p.slippage_bps),
            samples: vec![0; p.slow],
            next: 0,
            count: 0,
            last_sign: 0,
        })
    }
}

impl MaCross {
    /// Mean of the last `n` samples (`n <= count`), 10⁻⁹ units.
    fn average(&self, n: usize) -> i64 {
        let len = self.samples.len();
        let sum: i128 = (1..=n)
            .map(|k| i128::from(self.samples[(self.next + len - k) % len]))
            .sum();
        (sum / n as i128) as i64
    }
}

impl Strategy for MaCross {
    fn on_start(&mut self, ctx: &mut Context<'_>) {
        // The first sample is due at the first event (the clock is 0 until then).
        let _ = ctx.set_timer(0, SAMPLE);
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, _timer: TimerId) {
        // Next sample on the grid after now (a gap in the data skips samples).
        let now = ctx.now();
        let _ = ctx.set_timer((now / self.sample_ns + 1) * self.sample_ns, SAMPLE);
        let Some(mid) = ctx.mid(self.instrument) else {
            return;
        };
        self.samples[self.next] = mid;
        self.next = (self.next + 1) % self.slow;
        self.count = (self.count + 1).min(self.slow);
        if self.count < self.slow {
            return;
        }
        let sign = (self.average(self.fast) - self.average(self.slow)).signum();
        if sign == 0 || sign == self.last_sign {
            return;
        }
        let first = self.last_sign == 0;
        self.last_sign = sign;
        if first {
            return; // trade on crossings, not on the first reading
        }
        let target = sign * self.size;
        let pending: i64 = ctx
            .open_orders()
            .iter()
            .filter(|o| o.instrument == self.instrument)
            .map(|o| {
                if o.side == Side::Bid {
                    o.leaves as i64
                } else {
                    -(o.leaves as i64)
                }
            })
            .sum();
        let delta = target - ctx.position(self.instrument).qty - pending;
        let Some(top) = ctx.top(self.instrument) else {
            return;
        };
        let (side, price) = if delta > 0 && top.ask_size > 0 {
            (
                Side::Bid,
                top.ask_px + top.ask_px * self.slippage_bps / 10_000,
            )
        } else if delta < 0 && top.bid_size > 0 {
            (
                Side::Ask,
                top.bid_px - top.bid_px * self.slippage_bps / 10_000,
            )
        } else {
            return;
        };
        // In orders of at most `size`: a reversal (from -size to +size) is two orders, so a
        // risk limit of `max_order_size = size` does not reject it.
        let mut left = delta.unsigned_abs();
        while left > 0 {
            let quantity = left.min(self.size.unsigned_abs());
            if ctx
                .submit(self.instrument, side, OrderType::Ioc, price, quantity)
                .is_err()
            {
                return;
            }
            left -= quantity;
        }
    }
}
