//! Positions and profit and loss, in exact integers.
//!
//! **Units.** Quantities are signed `i64` in 10⁻⁸ (the event model's size unit; long is
//! positive). Prices are `i64` in 10⁻⁹. Money — cost, realized and unrealized PnL — is
//! `i128` in 10⁻¹⁷ of the quote currency ([`MONEY_SCALE`] per unit): a price times a
//! quantity, with no rounding. `i128` holds ±1.7·10³⁸, that is ±1.7·10²¹ currency units.
//!
//! **Method: average cost.** A position keeps its cost (the sum of price × quantity of
//! what is open, signed like the quantity). Adding to it adds to the cost; reducing it
//! releases cost in proportion (`cost × closed / open`, truncated toward zero: at most
//! 10⁻¹⁷ per fill, and exact when the position goes flat) and realizes the difference
//! to the fill price. A fill that crosses zero closes the old position and opens the rest
//! at the fill price. Fees are not modelled.
//!
//! ```
//! use tickwire_engine::event::{Side, PRICE_SCALE, SIZE_SCALE};
//! use tickwire_strategies::position::{Position, MONEY_SCALE};
//!
//! let mut p = Position::default();
//! p.apply_fill(Side::Bid, 100 * PRICE_SCALE, 2 * SIZE_SCALE); // buy 2 @ 100
//! p.apply_fill(Side::Ask, 105 * PRICE_SCALE, SIZE_SCALE);     // sell 1 @ 105
//! assert_eq!(p.realized, 5 * MONEY_SCALE);                    // +5
//! assert_eq!(p.unrealized(99 * PRICE_SCALE), -MONEY_SCALE);  // 1 left, marked at 99: -1
//! ```

use tickwire_engine::event::Side;

/// Money units per 1.0 of the quote currency: price (10⁻⁹) × size (10⁻⁸).
pub const MONEY_SCALE: i128 = 100_000_000_000_000_000;

/// Money in quote-currency units as a float, for display only.
pub fn money_to_f64(money: i128) -> f64 {
    money as f64 / MONEY_SCALE as f64
}

/// One position: quantity, cost of what is open, realized PnL, and traded volume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    /// Signed quantity, 10⁻⁸ units (long > 0).
    pub qty: i64,
    /// Cost of the open quantity, money units (10⁻¹⁷), signed like `qty`.
    pub cost: i128,
    /// Realized PnL, money units (10⁻¹⁷).
    pub realized: i128,
    /// Quantity bought, 10⁻⁸ units.
    pub bought: u64,
    /// Quantity sold, 10⁻⁸ units.
    pub sold: u64,
    /// Number of fills.
    pub fills: u64,
}

impl Position {
    /// Applies a fill of `size` at `price` on `side` (`Bid` buys, `Ask` sells; `None` is
    /// ignored).
    pub fn apply_fill(&mut self, side: Side, price: i64, size: u64) {
        let sign: i64 = match side {
            Side::Bid => 1,
            Side::Ask => -1,
            Side::None => return,
        };
        let size = size.min(i64::MAX as u64) as i64;
        self.fills += 1;
        if sign > 0 {
            self.bought += size as u64;
        } else {
            self.sold += size as u64;
        }
        let price = i128::from(price);
        let mut remaining = size;
        if self.qty != 0 && self.qty.signum() != sign {
            let open = i128::from(self.qty.abs());
            let closing = remaining.min(self.qty.abs());
            let closed_cost = self.cost * i128::from(closing) / open;
            // Long: proceeds minus cost. Short: cost (negative) back minus what we pay.
            self.realized +=
                i128::from(self.qty.signum()) * price * i128::from(closing) - closed_cost;
            self.cost -= closed_cost;
            self.qty += sign * closing;
            remaining -= closing;
            if self.qty == 0 {
                self.cost = 0;
            }
        }
        if remaining > 0 {
            self.qty += sign * remaining;
            self.cost += price * i128::from(sign * remaining);
        }
    }

    /// Average entry price of the open quantity, 10⁻⁹ units (0 when flat).
    pub fn avg_price(&self) -> i64 {
        if self.qty == 0 {
            0
        } else {
            (self.cost / i128::from(self.qty)) as i64
        }
    }

    /// Unrealized PnL marked at `mark` (10⁻⁹), money units.
    pub fn unrealized(&self, mark: i64) -> i128 {
        i128::from(mark) * i128::from(self.qty) - self.cost
    }

    /// Realized plus unrealized at `mark`, money units.
    pub fn total(&self, mark: i64) -> i128 {
        self.realized + self.unrealized(mark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: i64 = tickwire_engine::event::PRICE_SCALE;
    const S: u64 = tickwire_engine::event::SIZE_SCALE;
    const M: i128 = MONEY_SCALE;

    #[test]
    fn hand_computed_long_short_and_flip() {
        let mut p = Position::default();
        p.apply_fill(Side::Bid, 100 * P, 2 * S);
        p.apply_fill(Side::Bid, 103 * P, S);
        assert_eq!((p.qty, p.avg_price()), (3 * S as i64, 101 * P));
        p.apply_fill(Side::Ask, 105 * P, 2 * S); // closes 2 of avg 101 at 105: +8
        assert_eq!(p.realized, 8 * M);
        assert_eq!(p.unrealized(99 * P), -2 * M);
        p.apply_fill(Side::Ask, 98 * P, 3 * S); // closes 1 at 98 (-3), opens short 2 @ 98
        assert_eq!(p.realized, 5 * M);
        assert_eq!((p.qty, p.avg_price()), (-2 * S as i64, 98 * P));
        assert_eq!(p.unrealized(100 * P), -4 * M);
        p.apply_fill(Side::Bid, 95 * P, 2 * S); // covers 2 at 95: +6
        assert_eq!((p.qty, p.cost, p.realized), (0, 0, 11 * M));
        assert_eq!((p.bought, p.sold, p.fills), (5 * S, 5 * S, 5));
    }

    #[test]
    fn fractional_sizes_and_prices_stay_exact() {
        // Buy 0.001 BTC at 61837.63, sell it at 61837.64: +0.00001 USDT.
        let mut p = Position::default();
        p.apply_fill(Side::Bid, 61_837_630_000_000, 100_000);
        p.apply_fill(Side::Ask, 61_837_640_000_000, 100_000);
        assert_eq!(p.realized, M / 100_000);
        assert_eq!(p.qty, 0);
    }
}
