//! Where orders go after the risk checks: the [`Venue`] trait, and the [`PaperVenue`]
//! that fills against the market data the pipeline carries.
//!
//! A real exchange gateway implements [`Venue`] in the paper venue's place: it sends the
//! order and later reports what the exchange answered through the same `reports` output.
//!
//! # The paper venue's rules
//!
//! * **Incoming orders** (limit and IOC) take liquidity from the opposite side, best price
//!   first, at each level's price, while the level's price is within the limit: the top of
//!   book first, then the depth book behind it where the feed has depth. Liquidity taken is
//!   remembered until that instrument's market next changes, so two orders on one tick do
//!   not take the same size twice. Each level taken is one fill report
//!   (`PartiallyFilled`, or `Filled` for the last).
//! * What is left of an IOC is cancelled (`Cancelled`, `leaves` 0). What is left of a
//!   limit order rests (`New` if nothing filled).
//! * **Resting orders** fill at their own price when the market crosses them: a buy at `p`
//!   fills against asks at or below `p` (up to their size), or against a trade printed
//!   below `p` (up to its size); sells alike. A trade exactly at `p` does not fill (queue
//!   position is unknown, so the venue is conservative).
//! * **Cancels** of a resting order report `Cancelled`; a cancel of an order that is not
//!   resting is rejected with [`RejectReason::UnknownOrder`].
//! * A new order whose id is still resting for that strategy is rejected
//!   ([`RejectReason::DuplicateOrderId`]).

use tickwire_engine::event::{Event, ExecStatus, ExecutionReport, Order, OrderType, Side};

use crate::market::MarketState;
use crate::risk::RejectReason;

/// One execution report for an instrument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VenueReport {
    /// The instrument.
    pub instrument: u32,
    /// The report.
    pub report: ExecutionReport,
}

/// An execution venue: the paper venue, or a gateway to a real exchange.
pub trait Venue: Send {
    /// A name for the report.
    fn name(&self) -> &str;

    /// A new order that passed the risk checks. Reports go to `reports`.
    fn submit(
        &mut self,
        instrument: u32,
        order: &Order,
        market: &MarketState,
        reports: &mut Vec<VenueReport>,
    );

    /// A cancel (`order.order_id` names the order to cancel).
    fn cancel(&mut self, instrument: u32, order: &Order, reports: &mut Vec<VenueReport>);

    /// The market changed (`market` already includes `event`): resting orders may fill.
    fn on_market(&mut self, event: &Event, market: &MarketState, reports: &mut Vec<VenueReport>);

    /// Orders resting now.
    fn resting(&self) -> usize;
}

impl<V: Venue + ?Sized> Venue for Box<V> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn submit(&mut self, i: u32, o: &Order, m: &MarketState, r: &mut Vec<VenueReport>) {
        (**self).submit(i, o, m, r)
    }
    fn cancel(&mut self, i: u32, o: &Order, r: &mut Vec<VenueReport>) {
        (**self).cancel(i, o, r)
    }
    fn on_market(&mut self, e: &Event, m: &MarketState, r: &mut Vec<VenueReport>) {
        (**self).on_market(e, m, r)
    }
    fn resting(&self) -> usize {
        (**self).resting()
    }
}

#[derive(Debug, Clone, Copy)]
struct Resting {
    instrument: u32,
    strategy: u32,
    order_id: u64,
    side: Side,
    price: i64,
    leaves: u64,
}

#[derive(Debug, Clone, Copy)]
struct Taken {
    instrument: u32,
    /// Book side the liquidity was on.
    side: Side,
    price: i64,
    size: u64,
}

/// The paper venue (see the module docs for its rules).
#[derive(Debug)]
pub struct PaperVenue {
    resting: Vec<Resting>,
    taken: Vec<Taken>,
}

impl Default for PaperVenue {
    fn default() -> Self {
        Self::new()
    }
}

fn report(
    order: &Order,
    status: ExecStatus,
    price: i64,
    filled: u64,
    leaves: u64,
) -> ExecutionReport {
    ExecutionReport {
        order_id: order.order_id,
        price,
        filled,
        leaves,
        strategy: order.strategy,
        side: order.side,
        status: status as u8,
        reason: 0,
        _reserved: 0,
    }
}

/// A `Rejected` report for `order` with `reason`.
pub fn reject(order: &Order, reason: RejectReason) -> ExecutionReport {
    ExecutionReport {
        reason: reason.code(),
        ..report(order, ExecStatus::Rejected, order.price, 0, 0)
    }
}

impl PaperVenue {
    /// An empty venue (room for 1024 resting orders before anything grows).
    pub fn new() -> Self {
        Self {
            resting: Vec::with_capacity(1024),
            taken: Vec::with_capacity(64),
        }
    }

    fn taken(&self, instrument: u32, side: Side, price: i64) -> u64 {
        self.taken
            .iter()
            .filter(|t| t.instrument == instrument && t.side == side && t.price == price)
            .map(|t| t.size)
            .sum()
    }

    fn take(&mut self, instrument: u32, side: Side, price: i64, size: u64) {
        self.taken.push(Taken {
            instrument,
            side,
            price,
            size,
        });
    }
}

/// Whether a price `level` on the book is within an order's `limit` on `side`.
fn within(side: Side, level: i64, limit: i64) -> bool {
    match side {
        Side::Bid => level <= limit,
        _ => level >= limit,
    }
}

impl Venue for PaperVenue {
    fn name(&self) -> &str {
        "paper"
    }

    fn submit(
        &mut self,
        instrument: u32,
        order: &Order,
        market: &MarketState,
        reports: &mut Vec<VenueReport>,
    ) {
        let side = Side::from_code(order.side);
        let mut out = |r: ExecutionReport| {
            reports.push(VenueReport {
                instrument,
                report: r,
            })
        };
        if self
            .resting
            .iter()
            .any(|r| r.strategy == order.strategy && r.order_id == order.order_id)
        {
            out(reject(order, RejectReason::DuplicateOrderId));
            return;
        }
        let book_side = side.opposite();
        let mut leaves = order.size;
        // Walk the opposite side, best first. Collect fills first: `market` is borrowed
        // by the iterator while `self.taken` changes.
        let mut fills = [(0i64, 0u64); 16];
        let mut n = 0;
        for (price, size) in market.liquidity(instrument, book_side) {
            if leaves == 0 || n == fills.len() || !within(side, price, order.price) {
                break;
            }
            let free = size.saturating_sub(self.taken(instrument, book_side, price));
            let qty = free.min(leaves);
            if qty > 0 {
                fills[n] = (price, qty);
                n += 1;
                leaves -= qty;
            }
        }
        let mut remaining = order.size;
        for &(price, qty) in &fills[..n] {
            self.take(instrument, book_side, price, qty);
            remaining -= qty;
            let status = if remaining == 0 {
                ExecStatus::Filled
            } else {
                ExecStatus::PartiallyFilled
            };
            out(report(order, status, price, qty, remaining));
        }
        if remaining == 0 {
            return;
        }
        if order.order_type == OrderType::Ioc as u8 {
            out(report(order, ExecStatus::Cancelled, order.price, 0, 0));
            return;
        }
        if n == 0 {
            out(report(order, ExecStatus::New, order.price, 0, remaining));
        }
        self.resting.push(Resting {
            instrument,
            strategy: order.strategy,
            order_id: order.order_id,
            side,
            price: order.price,
            leaves: remaining,
        });
    }

    fn cancel(&mut self, instrument: u32, order: &Order, reports: &mut Vec<VenueReport>) {
        match self
            .resting
            .iter()
            .position(|r| r.strategy == order.strategy && r.order_id == order.order_id)
        {
            Some(i) => {
                // `remove`, not `swap_remove`: resting order keeps arrival order (priority).
                let r = self.resting.remove(i);
                let mut rep = report(order, ExecStatus::Cancelled, r.price, 0, 0);
                rep.side = r.side as u8;
                reports.push(VenueReport {
                    instrument: r.instrument,
                    report: rep,
                });
            }
            None => reports.push(VenueReport {
                instrument,
                report: reject(order, RejectReason::UnknownOrder),
            }),
        }
    }

    fn on_market(&mut self, event: &Event, market: &MarketState, reports: &mut Vec<VenueReport>) {
        let instrument = event.instrument;
        if event.quote().is_some() || event.book_delta().is_some() {
            // New market state: liquidity taken on the old one is replenished.
            self.taken.retain(|t| t.instrument != instrument);
        }
        // A trade's size is shared by the resting orders it goes through, in arrival order.
        let mut trade_left = 0u64;
        let trade = event.trade();
        if let Some(t) = trade {
            trade_left = t.size;
        }
        let mut i = 0;
        while i < self.resting.len() {
            let r = self.resting[i];
            if r.instrument != instrument {
                i += 1;
                continue;
            }
            let mut qty = 0u64;
            if let Some(t) = trade {
                let through = match r.side {
                    Side::Bid => t.price < r.price,
                    _ => t.price > r.price,
                };
                if through {
                    qty = trade_left.min(r.leaves);
                    trade_left -= qty;
                }
            } else {
                let book_side = r.side.opposite();
                let mut takes = [(0i64, 0u64); 16];
                let mut n = 0;
                for (price, size) in market.liquidity(instrument, book_side) {
                    if !within(r.side, price, r.price) || qty >= r.leaves || n == takes.len() {
                        break;
                    }
                    let free = size.saturating_sub(self.taken(instrument, book_side, price));
                    let q = free.min(r.leaves - qty);
                    if q > 0 {
                        takes[n] = (price, q);
                        n += 1;
                        qty += q;
                    }
                }
                for &(price, q) in &takes[..n] {
                    self.take(instrument, book_side, price, q);
                }
            }
            if qty == 0 {
                i += 1;
                continue;
            }
            let leaves = r.leaves - qty;
            let status = if leaves == 0 {
                ExecStatus::Filled
            } else {
                ExecStatus::PartiallyFilled
            };
            reports.push(VenueReport {
                instrument,
                report: ExecutionReport {
                    order_id: r.order_id,
                    price: r.price,
                    filled: qty,
                    leaves,
                    strategy: r.strategy,
                    side: r.side as u8,
                    status: status as u8,
                    reason: 0,
                    _reserved: 0,
                },
            });
            if leaves == 0 {
                self.resting.remove(i);
            } else {
                self.resting[i].leaves = leaves;
                i += 1;
            }
        }
    }

    fn resting(&self) -> usize {
        self.resting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_engine::event::{BookAction, BookDelta, Quote, Trade, flags};

    const P: i64 = tickwire_engine::event::PRICE_SCALE;
    const S: u64 = tickwire_engine::event::SIZE_SCALE;

    fn quote(bid: i64, ask: i64, bid_size: u64, ask_size: u64) -> Event {
        let mut e = Event::new(0, 0, 1, 1);
        e.set_quote(Quote {
            bid_px: bid,
            ask_px: ask,
            bid_size,
            ask_size,
            seq: 0,
        });
        e
    }

    fn ask_level(price: i64, size: u64) -> Event {
        let mut e = Event::new(0, 0, 1, 1);
        e.flags = flags::LAST;
        e.set_book_delta(BookDelta {
            price,
            size,
            side: Side::Ask as u8,
            action: BookAction::Add as u8,
            ..BookDelta::default()
        });
        e
    }

    fn trade(price: i64, size: u64) -> Event {
        let mut e = Event::new(0, 0, 1, 1);
        e.set_trade(Trade {
            price,
            size,
            ..Trade::default()
        });
        e
    }

    fn order(id: u64, side: Side, kind: OrderType, price: i64, size: u64) -> Order {
        Order {
            order_id: id,
            price,
            size,
            side: side as u8,
            order_type: kind as u8,
            ..Order::default()
        }
    }

    fn statuses(reports: &[VenueReport]) -> Vec<(u8, i64, u64, u64)> {
        reports
            .iter()
            .map(|r| {
                (
                    r.report.status,
                    r.report.price,
                    r.report.filled,
                    r.report.leaves,
                )
            })
            .collect()
    }

    const NEW: u8 = ExecStatus::New as u8;
    const PART: u8 = ExecStatus::PartiallyFilled as u8;
    const FILLED: u8 = ExecStatus::Filled as u8;
    const CANCELLED: u8 = ExecStatus::Cancelled as u8;

    /// A market with the top at 100/101 (2 each) and depth 102 x 3, 103 x 4 behind it.
    fn market() -> (MarketState, PaperVenue) {
        let mut m = MarketState::default();
        let mut v = PaperVenue::new();
        let mut out = Vec::new();
        for e in [
            quote(100 * P, 101 * P, 2 * S, 2 * S),
            ask_level(101 * P, 9 * S),
            ask_level(102 * P, 3 * S),
            ask_level(103 * P, 4 * S),
        ] {
            m.apply(&e);
            v.on_market(&e, &m, &mut out);
        }
        assert!(out.is_empty());
        (m, v)
    }

    #[test]
    fn ioc_walks_the_book_then_cancels_the_rest() {
        let (m, mut v) = market();
        let mut out = Vec::new();
        v.submit(
            0,
            &order(1, Side::Bid, OrderType::Ioc, 102 * P, 6 * S),
            &m,
            &mut out,
        );
        // 2 at the top (101, from the quote), 3 at 102 from depth, the last 1 cancelled.
        assert_eq!(
            statuses(&out),
            [
                (PART, 101 * P, 2 * S, 4 * S),
                (PART, 102 * P, 3 * S, S),
                (CANCELLED, 102 * P, 0, 0)
            ]
        );
        assert_eq!(v.resting(), 0);
        // Liquidity taken is gone until the market changes.
        out.clear();
        v.submit(
            0,
            &order(2, Side::Bid, OrderType::Ioc, 101 * P, S),
            &m,
            &mut out,
        );
        assert_eq!(statuses(&out), [(CANCELLED, 101 * P, 0, 0)]);
    }

    #[test]
    fn marketable_limit_fills_fully_at_the_touch() {
        let (m, mut v) = market();
        let mut out = Vec::new();
        v.submit(
            0,
            &order(1, Side::Bid, OrderType::Limit, 101 * P, S),
            &m,
            &mut out,
        );
        assert_eq!(statuses(&out), [(FILLED, 101 * P, S, 0)]);
    }

    #[test]
    fn limit_partially_fills_then_rests_then_fills_when_the_market_crosses() {
        // Top of book only (no depth), 100/101 with 2 each.
        let mut m = MarketState::default();
        let mut v = PaperVenue::new();
        let mut out = Vec::new();
        let e = quote(100 * P, 101 * P, 2 * S, 2 * S);
        m.apply(&e);
        v.on_market(&e, &m, &mut out);
        v.submit(
            0,
            &order(1, Side::Bid, OrderType::Limit, 101 * P, 5 * S),
            &m,
            &mut out,
        );
        assert_eq!(statuses(&out), [(PART, 101 * P, 2 * S, 3 * S)]);
        assert_eq!(v.resting(), 1);
        out.clear();
        // The ask drops to 100.5 with 1 available: we fill 1 at our price, 101.
        let e = quote(100 * P, 100 * P + P / 2, S, S);
        m.apply(&e);
        v.on_market(&e, &m, &mut out);
        assert_eq!(statuses(&out), [(PART, 101 * P, S, 2 * S)]);
        out.clear();
        // A trade at our price does not fill us; a trade through it does.
        v.on_market(&trade(101 * P, 5 * S), &m, &mut out);
        assert!(out.is_empty());
        v.on_market(&trade(100 * P, 5 * S), &m, &mut out);
        assert_eq!(statuses(&out), [(FILLED, 101 * P, 2 * S, 0)]);
        assert_eq!(v.resting(), 0);
    }

    #[test]
    fn resting_sell_and_cancel() {
        let (m, mut v) = market();
        let mut out = Vec::new();
        v.submit(
            0,
            &order(7, Side::Ask, OrderType::Limit, 105 * P, S),
            &m,
            &mut out,
        );
        assert_eq!(statuses(&out), [(NEW, 105 * P, 0, S)]);
        out.clear();
        v.submit(
            0,
            &order(7, Side::Ask, OrderType::Limit, 106 * P, S),
            &m,
            &mut out,
        );
        assert_eq!(out[0].report.reason, RejectReason::DuplicateOrderId.code());
        out.clear();
        v.cancel(0, &order(7, Side::Ask, OrderType::Cancel, 0, 0), &mut out);
        assert_eq!(statuses(&out), [(CANCELLED, 105 * P, 0, 0)]);
        out.clear();
        v.cancel(0, &order(7, Side::Ask, OrderType::Cancel, 0, 0), &mut out);
        assert_eq!(out[0].report.status, ExecStatus::Rejected as u8);
        assert_eq!(out[0].report.reason, RejectReason::UnknownOrder.code());
        assert_eq!(v.resting(), 0);
    }

    #[test]
    fn two_resting_orders_share_one_trade() {
        let (m, mut v) = market();
        let mut out = Vec::new();
        v.submit(
            0,
            &order(1, Side::Bid, OrderType::Limit, 99 * P, 2 * S),
            &m,
            &mut out,
        );
        v.submit(
            0,
            &order(2, Side::Bid, OrderType::Limit, 99 * P, 2 * S),
            &m,
            &mut out,
        );
        out.clear();
        v.on_market(&trade(98 * P, 3 * S), &m, &mut out);
        assert_eq!(
            statuses(&out),
            [(FILLED, 99 * P, 2 * S, 0), (PART, 99 * P, S, S)]
        );
    }
}
