//! Inventory-skewed quoting market maker: quotes one bid and one ask around a fair price
//! that leans against its inventory (long: both quotes lower, to sell more than it buys),
//! stays behind the touch (never crosses: it provides liquidity), stops quoting the side
//! that would take it past `max_position`, and requotes when its desired price moves
//! `requote_bps` away from a live quote (at most once per `min_requote_ms` of event time).

use serde::Deserialize;
use tickwire_engine::event::{Event, Quote, Side};
use tickwire_engine::instrument::InstrumentRegistry;

use crate::config::{self, ConfigError};
use crate::registry::BuildStrategy;
use crate::strategy::{Context, Strategy};

/// Parameters of [`MarketMaker`] (`kind = "market_maker"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketMakerParams {
    /// The symbol quoted.
    pub instrument: String,
    /// Size of each quote, base units.
    pub size: f64,
    /// Half the quoted spread around fair, basis points of the mid. Default 2.
    #[serde(default = "default_half_spread")]
    pub half_spread_bps: f64,
    /// Skew: basis points the fair price moves per `size` of inventory. Default 1.
    #[serde(default = "default_skew")]
    pub skew_bps: f64,
    /// No quote on the side that would take |position| beyond this, base units.
    pub max_position: f64,
    /// Requote when the desired price is this far from the live one, basis points.
    /// Default 1.
    #[serde(default = "default_requote")]
    pub requote_bps: f64,
    /// Least event time between requotes, ms. Default 100.
    #[serde(default = "default_min_requote")]
    pub min_requote_ms: u64,
    /// Price grid, quote currency (quotes are rounded onto it). Default 0.01.
    #[serde(default = "default_tick")]
    pub tick: f64,
}

fn default_half_spread() -> f64 {
    2.0
}
fn default_skew() -> f64 {
    1.0
}
fn default_requote() -> f64 {
    1.0
}
fn default_min_requote() -> u64 {
    100
}
fn default_tick() -> f64 {
    0.01
}

/// The market maker.
#[derive(Debug)]
pub struct MarketMaker {
    instrument: u32,
    size: u64,
    /// In 10⁻⁴ basis points (so fractional bps stay integers).
    half_spread: i128,
    skew: i128,
    requote: i128,
    max_position: i64,
    min_requote_ns: u64,
    tick: i64,
    last_quote_ns: Option<u64>,
}

/// Parts per unit of the `*_bps` fields after conversion: 10⁴ bps × 10⁴.
const BPS_SCALE: i128 = 100_000_000;

fn bps(value: f64) -> i128 {
    (value * 10_000.0).round() as i128
}

impl BuildStrategy for MarketMaker {
    type Params = MarketMakerParams;

    fn build(p: MarketMakerParams, instruments: &InstrumentRegistry) -> Result<Self, ConfigError> {
        let tick = config::price(p.tick);
        if tick <= 0 || !(p.size > 0.0 && p.size.is_finite()) || config::size(p.size) == 0 {
            return Err(ConfigError::invalid(
                "market_maker",
                format!(
                    "tick ({:?}) and size ({:?}) must be positive numbers",
                    p.tick, p.size
                ),
            ));
        }
        for (key, value) in [
            ("half_spread_bps", p.half_spread_bps),
            ("skew_bps", p.skew_bps),
            ("requote_bps", p.requote_bps),
            ("max_position", p.max_position),
        ] {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(ConfigError::invalid(
                    "market_maker",
                    format!("{key} = {value:?}: must be a number, 0 or more"),
                ));
            }
        }
        Ok(Self {
            instrument: config::instrument(instruments, &p.instrument, "market_maker")?,
            size: config::size(p.size),
            half_spread: bps(p.half_spread_bps),
            skew: bps(p.skew_bps),
            requote: bps(p.requote_bps),
            max_position: config::size(p.max_position) as i64,
            min_requote_ns: p.min_requote_ms * 1_000_000,
            tick,
            last_quote_ns: None,
        })
    }
}

impl MarketMaker {
    /// Desired bid and ask for `top` and inventory `position` (10⁻⁸ units).
    pub fn desired(&self, top: &Quote, position: i64) -> (i64, i64) {
        let mid = i128::from(top.mid_px());
        let inventory = i128::from(position) * BPS_SCALE / i128::from(self.size.max(1) as i64);
        // fair = mid * (1 - skew * inventory), inventory in units of `size`.
        let fair = mid - mid * self.skew * inventory / BPS_SCALE / BPS_SCALE;
        let half = mid * self.half_spread / BPS_SCALE;
        let tick = i128::from(self.tick);
        let bid = ((fair - half) / tick * tick).min(i128::from(top.bid_px));
        let ask = ((fair + half + tick - 1) / tick * tick).max(i128::from(top.ask_px));
        (bid as i64, ask as i64)
    }

    fn requote(&mut self, ctx: &mut Context<'_>) {
        let Some(top) = ctx.top(self.instrument).filter(Quote::is_two_sided) else {
            return;
        };
        let now = ctx.now();
        if self
            .last_quote_ns
            .is_some_and(|t| now < t.saturating_add(self.min_requote_ns))
        {
            return;
        }
        let position = ctx.position(self.instrument).qty;
        let (bid, ask) = self.desired(&top, position);
        let threshold = i128::from(top.mid_px()) * self.requote / BPS_SCALE;
        let mut changed = false;
        for (side, price, allowed) in [
            (
                Side::Bid,
                bid,
                position + self.size as i64 <= self.max_position,
            ),
            (
                Side::Ask,
                ask,
                position - self.size as i64 >= -self.max_position,
            ),
        ] {
            let live = ctx
                .open_orders()
                .iter()
                .find(|o| o.instrument == self.instrument && o.side == side && !o.cancel_sent)
                .copied();
            let keep = live.is_some_and(|o| {
                allowed && (i128::from(o.price) - i128::from(price)).abs() < threshold.max(1)
            });
            if keep {
                continue;
            }
            if let Some(o) = live {
                let _ = ctx.cancel(o.order_id);
                changed = true;
            }
            if allowed {
                let _ = ctx.submit(
                    self.instrument,
                    side,
                    tickwire_engine::event::OrderType::Limit,
                    price,
                    self.size,
                );
                changed = true;
            }
        }
        if changed {
            self.last_quote_ns = Some(now);
        }
    }
}

impl Strategy for MarketMaker {
    fn on_quote(&mut self, ctx: &mut Context<'_>, event: &Event, _quote: &Quote) {
        if event.instrument == self.instrument {
            self.requote(ctx);
        }
    }

    fn on_stop(&mut self, ctx: &mut Context<'_>) {
        let _ = ctx.cancel_all(Some(self.instrument));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_engine::event::{PRICE_SCALE as P, SIZE_SCALE as S};

    fn params() -> MarketMakerParams {
        MarketMakerParams {
            instrument: "X".into(),
            size: 1.0,
            half_spread_bps: 10.0,
            skew_bps: 5.0,
            max_position: 3.0,
            requote_bps: 1.0,
            min_requote_ms: 0,
            tick: 0.01,
        }
    }

    #[test]
    fn impossible_parameters_are_refused_by_name() {
        let base = params();
        let instruments = InstrumentRegistry::from_symbols(["X"]);
        for (params, says) in [
            (
                MarketMakerParams {
                    size: f64::NAN,
                    ..base.clone()
                },
                "size (NaN)",
            ),
            (
                MarketMakerParams {
                    size: 1e-12,
                    ..base.clone()
                },
                "size (1e-12)",
            ),
            (
                MarketMakerParams {
                    half_spread_bps: -1.0,
                    ..base.clone()
                },
                "half_spread_bps = -1.0",
            ),
            (
                MarketMakerParams {
                    skew_bps: f64::INFINITY,
                    ..base.clone()
                },
                "skew_bps = inf",
            ),
        ] {
            let err = MarketMaker::build(params, &instruments).expect_err(says);
            assert!(err.to_string().contains(says), "{err}");
        }
    }

    #[test]
    fn quotes_lean_against_inventory_and_stay_behind_the_touch() {
        let mm = MarketMaker::build(params(), &InstrumentRegistry::from_symbols(["X"]))
            .expect("valid params");
        let top = Quote {
            bid_px: 99 * P + 99 * P / 100,
            ask_px: 100 * P + P / 100,
            bid_size: S,
            ask_size: S,
            seq: 0,
        };
        // Flat: 100 -/+ 10 bps = 99.90 / 100.10.
        assert_eq!(mm.desired(&top, 0), (99_900_000_000, 100_100_000_000));
        // Long 2: fair 100 * (1 - 0.001) = 99.90; quotes 99.80 / 100.01 (not below the ask).
        assert_eq!(
            mm.desired(&top, 2 * S as i64),
            (99_800_000_000, 100_010_000_000)
        );
    }
}
