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
