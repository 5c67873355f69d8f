//! Pre-trade risk checks: every new order passes them, in the execution agent, before it
//! reaches the venue. A rejected order gets an execution report with status `Rejected` and
//! the [`RejectReason`] code; cancels are never blocked (they only reduce risk).
//!
//! The checks, in order (the first that fails is the reason):
//!
//! | code | name | rejects when |
//! |---|---|---|
//! | 1 | `kill_switch` | the kill switch is on |
//! | 8 | `invalid_order` | size 0, price ≤ 0, no side, unknown order type |
//! | 2 | `max_order_size` | size > `max_order_size` |
//! | 4 | `max_notional` | price × size > `max_notional` |
//! | 7 | `no_market` | no two-sided top of book yet (the collar needs a mid) |
//! | 5 | `price_collar` | \|price − mid\| > `collar_bps` of the mid |
//! | 3 | `max_position` | position + open orders on that side + size would exceed `max_position` (per instrument, all strategies together) |
//! | 6 | `rate_limit` | the strategy sent `max_orders` accepted orders within the last `rate_window_ms` of **event time** |
//!
//! The rate limit runs on event time, not the wall clock, so a replay rejects the same
//! orders however fast it runs.
//!
//! ```
//! use tickwire_engine::event::{Order, OrderType, Side, PRICE_SCALE, SIZE_SCALE};
//! use tickwire_strategies::risk::{Exposure, RejectReason, RiskChecker, RiskConfig};
//!
//! let mut risk = RiskChecker::new(RiskConfig { max_order_size: 1.0, ..RiskConfig::default() }.limits());
//! let order = Order { order_id: 1, price: 100 * PRICE_SCALE, size: 2 * SIZE_SCALE, side: Side::Bid as u8,
//!                     order_type: OrderType::Limit as u8, ..Order::default() };
//! let exposure = Exposure { mid: Some(100 * PRICE_SCALE), ..Exposure::default() };
//! assert_eq!(risk.check(&order, &exposure, 0), Err(RejectReason::MaxOrderSize));
//! ```

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use tickwire_engine::event::{Order, OrderType, Side};

use crate::config::{self, ConfigError};

/// Why an order was refused. The code travels in [`ExecutionReport::reason`](tickwire_engine::event::ExecutionReport).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum RejectReason {
    /// The kill switch is on.
    KillSwitch = 1,
    /// The order is larger than `max_order_size`.
    MaxOrderSize = 2,
    /// The order could take the position beyond `max_position`.
    MaxPosition = 3,
    /// Price × size exceeds `max_notional`.
    MaxNotional = 4,
    /// The price is outside the collar around the mid.
    PriceCollar = 5,
    /// Too many orders in the rate window.
    RateLimit = 6,
    /// No two-sided market to check the price against.
    NoMarket = 7,
    /// Size 0, price ≤ 0, no side, or an unknown order type.
    InvalidOrder = 8,
    /// A cancel for an order that is not open.
    UnknownOrder = 9,
    /// A new order reuses the id of one still open.
    DuplicateOrderId = 10,
}

impl RejectReason {
    /// Every reason, in code order.
    pub const ALL: [Self; 10] = [
        Self::KillSwitch,
        Self::MaxOrderSize,
        Self::MaxPosition,
        Self::MaxNotional,
        Self::PriceCollar,
        Self::RateLimit,
        Self::NoMarket,
        Self::InvalidOrder,
        Self::UnknownOrder,
        Self::DuplicateOrderId,
    ];

    /// The code carried in execution reports.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The reason for a code, if it names one.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    /// A short name (`max_position`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::KillSwitch => "kill_switch",
            Self::MaxOrderSize => "max_order_size",
            Self::MaxPosition => "max_position",
            Self::MaxNotional => "max_notional",
            Self::PriceCollar => "price_collar",
            Self::RateLimit => "rate_limit",
            Self::NoMarket => "no_market",
            Self::InvalidOrder => "invalid_order",
            Self::UnknownOrder => "unknown_order",
            Self::DuplicateOrderId => "duplicate_order_id",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// The largest size limit [`RiskConfig::validate`] accepts, base units (10⁻⁸ units must
/// fit a `u64`: 1.8 × 10¹¹).
pub const MAX_SIZE: f64 = 1e11;

/// The largest notional limit [`RiskConfig::validate`] accepts, quote currency.
pub const MAX_NOTIONAL: f64 = 1e15;

/// The `[risk]` table: limits in human units, converted once by [`limits`](Self::limits).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RiskConfig {
    /// Largest order, in base units (e.g. BTC). Default 1.
    pub max_order_size: f64,
    /// Largest absolute position per instrument, base units, counting open orders on the
    /// side that would add to it. Default 5.
    pub max_position: f64,
    /// Largest order value (price × size), quote currency. Default 1,000,000.
    pub max_notional: f64,
    /// Price collar: how far from the mid an order's price may be, in basis points of the
    /// mid. Default 100 (1%).
    pub collar_bps: u32,
    /// Accepted new orders allowed per strategy per window; 0 disables the check.
    /// Default 50.
    pub max_orders: u32,
    /// The rate window, ms of event time. Default 1000.
    pub rate_window_ms: u64,
    /// Start with the kill switch on (every new order rejected). Default false.
    pub kill_switch: bool,
}

impl Default for RiskConfig {
    fn default() -> Self {
        Self {
            max_order_size: 1.0,
            max_position: 5.0,
            max_notional: 1_000_000.0,
            collar_bps: 100,
            max_orders: 50,
            rate_window_ms: 1000,
            kill_switch: false,
        }
    }
}

impl RiskConfig {
    /// Checks that every limit is a number the fixed-point units can hold: sizes and the
    /// notional finite, positive and at most [`MAX_SIZE`] / [`MAX_NOTIONAL`]. (A NaN
    /// would read as 0 and reject every order; an infinite size would turn the check off.)
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value, max) in [
            ("max_order_size", self.max_order_size, MAX_SIZE),
            ("max_position", self.max_position, MAX_SIZE),
            ("max_notional", self.max_notional, MAX_NOTIONAL),
        ] {
            if !(value > 0.0 && value <= max) {
                return Err(ConfigError::invalid(
                    format!("[risk] {key} = {value:?}"),
                    format!("must be a number above 0 and at most {max:e}"),
                ));
            }
        }
        Ok(())
    }

    /// The limits in fixed-point units.
    pub fn limits(&self) -> RiskLimits {
        RiskLimits {
            max_order_size: config::size(self.max_order_size),
            max_position: config::size(self.max_position),
            max_notional: config::money(self.max_notional),
            collar_bps: i64::from(self.collar_bps),
            max_orders: self.max_orders as usize,
            rate_window_ns: self.rate_window_ms.saturating_mul(1_000_000),
            kill_switch: KillSwitch::new(self.kill_switch),
        }
    }
}

/// Risk limits in the event model's units.
#[derive(Debug, Clone)]
pub struct RiskLimits {
    /// Largest order, 10⁻⁸ units.
    pub max_order_size: u64,
    /// Largest absolute position per instrument, 10⁻⁸ units.
    pub max_position: u64,
    /// Largest order value, money units (10⁻¹⁷).
    pub max_notional: i128,
    /// Collar half-width, basis points of the mid.
    pub collar_bps: i64,
    /// Accepted orders per strategy per window (0: unlimited).
    pub max_orders: usize,
    /// Rate window, ns of event time.
    pub rate_window_ns: u64,
    /// The kill switch.
    pub kill_switch: KillSwitch,
}

/// A kill switch shared between the execution agent and whoever may pull it (an operator
/// command, a monitoring thread). While on, every new order is rejected.
#[derive(Debug, Clone, Default)]
pub struct KillSwitch(Arc<AtomicBool>);

impl KillSwitch {
    /// A switch, on or off.
    pub fn new(on: bool) -> Self {
        Self(Arc::new(AtomicBool::new(on)))
    }

    /// Turns it on or off.
    pub fn set(&self, on: bool) {
        // Relaxed: the flag carries no other data; the execution agent sees it on its next
        // order.
        self.0.store(on, Ordering::Relaxed);
    }

    /// Whether it is on.
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the risk check needs to know about the order's instrument.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exposure {
    /// Mid price now, 10⁻⁹ units (`None` without a two-sided market).
    pub mid: Option<i64>,
    /// Net position of all strategies, 10⁻⁸ units.
    pub position: i64,
    /// Open (unfilled) buy quantity, 10⁻⁸ units.
    pub open_buy: u64,
    /// Open sell quantity, 10⁻⁸ units.
    pub open_sell: u64,
}

/// The pre-trade checks, with each strategy's rate window.
#[derive(Debug)]
pub struct RiskChecker {
    limits: RiskLimits,
    /// Event times of recently accepted orders, per strategy id.
    windows: Vec<VecDeque<u64>>,
}

impl RiskChecker {
    /// A checker with `limits`.
    pub fn new(limits: RiskLimits) -> Self {
        Self {
            limits,
            windows: Vec::new(),
        }
    }

    /// The kill switch.
    pub fn kill_switch(&self) -> &KillSwitch {
        &self.limits.kill_switch
    }

    /// The limits.
    pub fn limits(&self) -> &RiskLimits {
        &self.limits
    }

    /// Checks a new order (`order.strategy` selects the rate window) at event time `now`.
    /// On success the order counts against the rate limit.
    pub fn check(
        &mut self,
        order: &Order,
        exposure: &Exposure,
        now: u64,
    ) -> Result<(), RejectReason> {
        let l = &self.limits;
        if l.kill_switch.is_on() {
            return Err(RejectReason::KillSwitch);
        }
        let side = Side::from_code(order.side);
        let kind = OrderType::from_code(order.order_type);
        if order.size == 0
            || order.price <= 0
            || side == Side::None
            || !matches!(kind, Some(OrderType::Limit | OrderType::Ioc))
        {
            return Err(RejectReason::InvalidOrder);
        }
        if order.size > l.max_order_size {
            return Err(RejectReason::MaxOrderSize);
        }
        if i128::from(order.price) * i128::from(order.size) > l.max_notional {
            return Err(RejectReason::MaxNotional);
        }
        let Some(mid) = exposure.mid.filter(|m| *m > 0) else {
            return Err(RejectReason::NoMarket);
        };
        // |price - mid| * 10_000 > collar_bps * mid, in i128 so nothing overflows.
        let distance = (i128::from(order.price) - i128::from(mid)).abs() * 10_000;
        if distance > i128::from(l.collar_bps) * i128::from(mid) {
            return Err(RejectReason::PriceCollar);
        }
        let max = i128::from(l.max_position);
        let position = i128::from(exposure.position);
        let size = i128::from(order.size);
        let worst = match side {
            Side::Bid => position + i128::from(exposure.open_buy) + size,
            _ => -(position - i128::from(exposure.open_sell) - size),
        };
        if worst > max {
            return Err(RejectReason::MaxPosition);
        }
        if l.max_orders > 0 {
            let i = order.strategy as usize;
            if i >= self.windows.len() {
                let cap = l.max_orders;
                self.windows
                    .resize_with(i + 1, || VecDeque::with_capacity(cap));
            }
            let window = &mut self.windows[i];
            let span = l.rate_window_ns;
            while window
                .front()
                .is_some_and(|t| t.saturating_add(span) <= now)
            {
                window.pop_front();
            }
            if window.len() >= l.max_orders {
                return Err(RejectReason::RateLimit);
            }
            window.push_back(now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_engine::event::{PRICE_SCALE as P, SIZE_SCALE as S};

    fn order(side: Side, price: i64, size: u64) -> Order {
        Order {
            order_id: 1,
            price,
            size,
            side: side as u8,
            order_type: OrderType::Limit as u8,
            ..Order::default()
        }
    }

    fn at_100() -> Exposure {
        Exposure {
            mid: Some(100 * P),
            ..Exposure::default()
        }
    }

    fn checker(config: RiskConfig) -> RiskChecker {
        RiskChecker::new(config.limits())
    }

    #[test]
    fn order_size_limit_is_inclusive() {
        let mut r = checker(RiskConfig::default()); // 1.0
        assert_eq!(r.check(&order(Side::Bid, 100 * P, S), &at_100(), 0), Ok(()));
        assert_eq!(
            r.check(&order(Side::Bid, 100 * P, S + 1), &at_100(), 0),
            Err(RejectReason::MaxOrderSize)
        );
    }

    #[test]
    fn notional_limit() {
        let mut r = checker(RiskConfig {
            max_notional: 150.0,
            max_order_size: 10.0,
            ..RiskConfig::default()
        });
        assert_eq!(r.check(&order(Side::Bid, 100 * P, S), &at_100(), 0), Ok(()));
        assert_eq!(
            r.check(&order(Side::Bid, 100 * P, S + S / 2 + 1), &at_100(), 0),
            Err(RejectReason::MaxNotional)
        );
        assert_eq!(
            r.check(&order(Side::Ask, 100 * P, S + S / 2), &at_100(), 0),
            Ok(())
        );
    }

    #[test]
    fn price_collar_around_the_mid_and_no_market() {
        let mut r = checker(RiskConfig::default()); // 100 bps
        assert_eq!(r.check(&order(Side::Bid, 101 * P, S), &at_100(), 0), Ok(()));
        assert_eq!(r.check(&order(Side::Ask, 99 * P, S), &at_100(), 0), Ok(()));
        assert_eq!(
            r.check(&order(Side::Bid, 101 * P + 1, S), &at_100(), 0),
            Err(RejectReason::PriceCollar)
        );
        assert_eq!(
            r.check(&order(Side::Ask, 99 * P - 1, S), &at_100(), 0),
            Err(RejectReason::PriceCollar)
        );
        assert_eq!(
            r.check(&order(Side::Bid, 100 * P, S), &Exposure::default(), 0),
            Err(RejectReason::NoMarket)
        );
    }

    #[test]
    fn position_limit_counts_open_orders_on_the_same_side() {
        let mut r = checker(RiskConfig {
            max_position: 3.0,
            ..RiskConfig::default()
        });
        let long2 = Exposure {
            position: 2 * S as i64,
            ..at_100()
        };
        assert_eq!(r.check(&order(Side::Bid, 100 * P, S), &long2, 0), Ok(()));
        let long2_open1 = Exposure {
            open_buy: S,
            ..long2
        };
        assert_eq!(
            r.check(&order(Side::Bid, 100 * P, S), &long2_open1, 0),
            Err(RejectReason::MaxPosition)
        );
        // Selling reduces a long: allowed up to a short of 3.
        assert_eq!(
            r.check(&order(Side::Ask, 100 * P, S), &long2_open1, 0),
            Ok(())
        );
        let short3 = Exposure {
            position: -3 * S as i64,
            ..at_100()
        };
        assert_eq!(
            r.check(&order(Side::Ask, 100 * P, 1), &short3, 0),
            Err(RejectReason::MaxPosition)
        );
        assert_eq!(r.check(&order(Side::Bid, 100 * P, S), &short3, 0), Ok(()));
    }

    #[test]
    fn rate_limit_runs_on_event_time_per_strategy() {
        let mut r = checker(RiskConfig {
            max_orders: 2,
            rate_window_ms: 1000,
            ..RiskConfig::default()
        });
        let t0 = 1_700_000_000_000_000_000u64;
        let ms = 1_000_000;
        assert_eq!(
            r.check(&order(Side::Bid, 100 * P, S / 10), &at_100(), t0),
            Ok(())
        );
        assert_eq!(
            r.check(&order(Side::Bid, 100 * P, S / 10), &at_100(), t0 + 500 * ms),
            Ok(())
        );
        assert_eq!(
            r.check(&order(Side::Bid, 100 * P, S / 10), &at_100(), t0 + 999 * ms),
            Err(RejectReason::RateLimit)
        );
        let mut other = order(Side::Bid, 100 * P, S / 10);
        other.strategy = 1;
        assert_eq!(
            r.check(&other, &at_100(), t0 + 999 * ms),
            Ok(()),
            "own window"
        );
        // The first order leaves the window after exactly 1 s.
        assert_eq!(
            r.check(
                &order(Side::Bid, 100 * P, S / 10),
                &at_100(),
                t0 + 1000 * ms
            ),
            Ok(())
        );
        // A rejected order does not use up the budget.
        assert_eq!(
            r.check(&order(Side::Bid, 100 * P, 0), &at_100(), t0 + 1001 * ms),
            Err(RejectReason::InvalidOrder)
        );
    }

    #[test]
    fn kill_switch_rejects_everything_until_released() {
        let mut r = checker(RiskConfig {
            kill_switch: true,
            ..RiskConfig::default()
        });
        assert_eq!(
            r.check(&order(Side::Bid, 100 * P, 1), &at_100(), 0),
            Err(RejectReason::KillSwitch)
        );
        r.kill_switch().set(false);
        assert_eq!(r.check(&order(Side::Bid, 100 * P, 1), &at_100(), 0), Ok(()));
        r.kill_switch().set(true);
        assert_eq!(
            r.check(&order(Side::Ask, 100 * P, 1), &at_100(), 0),
            Err(RejectReason::KillSwitch)
        );
    }

    #[test]
    fn invalid_orders_and_codes_round_trip() {
        let mut r = checker(RiskConfig::default());
        for bad in [
            order(Side::Bid, 0, 1),
            order(Side::None, P, 1),
            order(Side::Bid, P, 0),
        ] {
            assert_eq!(r.check(&bad, &at_100(), 0), Err(RejectReason::InvalidOrder));
        }
        for reason in RejectReason::ALL {
            assert_eq!(RejectReason::from_code(reason.code()), Some(reason));
        }
    }
}
