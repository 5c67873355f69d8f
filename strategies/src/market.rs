//! What a stage knows of the market: per instrument, the latest top of book, the depth book
//! where the feed sends one, the last trade, all built from the market-data events it reads.
//!
//! Every stage that needs market state (each strategy, the execution agent, the notifier)
//! keeps its own [`MarketState`] on its own thread, fed by the same events in the same
//! order, so they all agree without sharing memory.
//!
//! * Quotes ([`Quote`]) set the top of book.
//! * Book deltas ([`BookDelta`]) update the depth book: per level (L2, `order_id == 0`:
//!   `Add`/`Modify` set the level's size, `Cancel`/`Fill` remove `size` from it) or per
//!   order (L3). A feed with depth but no quotes (ITCH, DBN MBO) gets its top of book from
//!   the depth book.
//! * [`event_time`] is the time strategies, timers, rate limits and alert windows run on:
//!   the exchange timestamp, or the receive timestamp when the exchange sent none.

use tickwire_engine::event::{BookAction, Event, Quote, Side};
use tickwire_feeds::book::{OrderBook, OrderBooks};

/// The event's time for deterministic logic: `exchange_ts`, or `receive_ts` when the source
/// has no exchange timestamp (it is then 0). ns since the Unix epoch.
#[inline]
pub fn event_time(event: &Event) -> u64 {
    if event.exchange_ts != 0 {
        event.exchange_ts
    } else {
        event.receive_ts
    }
}

/// A clock that runs on event time and never goes back: sources interleave exchange
/// stamps (trades) and receive stamps (quotes without one), which are not ordered with
/// each other, so the clock is the maximum seen. ns since the Unix epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventClock(u64);

impl EventClock {
    /// Moves the clock to `event`'s time if that is later; returns the clock.
    #[inline]
    pub fn observe(&mut self, event: &Event) -> u64 {
        self.0 = self.0.max(event_time(event));
        self.0
    }

    /// Now, ns since the Unix epoch (0 before the first event).
    #[inline]
    pub fn now(&self) -> u64 {
        self.0
    }
}

/// Market state of one instrument.
#[derive(Debug, Clone, Default)]
pub struct InstrumentMarket {
    /// The latest quote (from quote events), if any came.
    pub quote: Option<Quote>,
    /// Price of the last trade, 10⁻⁹ units (0 before the first).
    pub last_trade_px: i64,
    /// Whether depth (book delta) events were seen for this instrument.
    pub has_depth: bool,
}

/// Market state of every instrument, indexed by instrument id.
#[derive(Debug, Clone, Default)]
pub struct MarketState {
    instruments: Vec<InstrumentMarket>,
    books: OrderBooks,
    /// Book updates that did not apply (an L3 order unknown to us): counted, not fatal.
    book_errors: u64,
}

impl MarketState {
    /// Empty state, with room for `instruments` instruments before anything grows.
    pub fn with_instruments(instruments: usize) -> Self {
        let mut state = Self::default();
        state
            .instruments
            .resize_with(instruments, InstrumentMarket::default);
        state
    }

    fn slot(&mut self, instrument: u32) -> &mut InstrumentMarket {
        let i = instrument as usize;
        if i >= self.instruments.len() {
            self.instruments
                .resize_with(i + 1, InstrumentMarket::default);
        }
        &mut self.instruments[i]
    }

    /// Applies a market-data event; returns whether it changed the top of book of its
    /// instrument (quotes, and the last delta of a depth message).
    pub fn apply(&mut self, event: &Event) -> bool {
        if let Some(quote) = event.quote() {
            self.slot(event.instrument).quote = Some(*quote);
            return true;
        }
        if let Some(trade) = event.trade() {
            self.slot(event.instrument).last_trade_px = trade.price;
            return false;
        }
        if let Some(delta) = event.book_delta() {
            self.slot(event.instrument).has_depth = true;
            let side = Side::from_code(delta.side);
            let action = BookAction::from_code(delta.action);
            if action == Some(BookAction::Clear) {
                self.books.clear_instrument(event.instrument);
            } else if delta.order_id == 0 {
                let book = self.books.book_mut(event.instrument);
                match action {
                    Some(BookAction::Add | BookAction::Modify) => {
                        book.side_mut(side).set(delta.price, delta.size)
                    }
                    Some(BookAction::Cancel | BookAction::Fill) => {
                        book.side_mut(side).remove(delta.price, delta.size, 0);
                    }
                    _ => {}
                }
            } else {
                let result = match action {
                    Some(BookAction::Add) => self.books.add(
                        event.instrument,
                        delta.order_id,
                        side,
                        delta.price,
                        delta.size,
                    ),
                    Some(BookAction::Modify) => self
                        .books
                        .replace(delta.order_id, delta.order_id, delta.price, delta.size)
                        .map(|_| ()),
                    Some(BookAction::Cancel | BookAction::Fill) => {
                        self.books.reduce(delta.order_id, delta.size).map(|_| ())
                    }
                    _ => Ok(()),
                };
                if result.is_err() {
                    self.book_errors += 1;
                }
            }
            return event.flags & tickwire_engine::event::flags::LAST != 0;
        }
        false
    }

    /// State of `instrument`, if any event for it was seen.
    pub fn instrument(&self, instrument: u32) -> Option<&InstrumentMarket> {
        self.instruments.get(instrument as usize)
    }

    /// The depth book of `instrument`, where the feed sends depth.
    pub fn book(&self, instrument: u32) -> Option<&OrderBook> {
        if self.instrument(instrument)?.has_depth {
            self.books.book(instrument)
        } else {
            None
        }
    }

    /// Top of book: the latest quote, or the depth book's top for feeds without quotes.
    pub fn top(&self, instrument: u32) -> Option<Quote> {
        let state = self.instrument(instrument)?;
        match state.quote {
            Some(q) => Some(q),
            None if state.has_depth => self.books.book(instrument).map(OrderBook::top),
            None => None,
        }
    }

    /// Mid price of the top of book, 10⁻⁹ units, when both sides are present.
    pub fn mid(&self, instrument: u32) -> Option<i64> {
        self.top(instrument)
            .filter(Quote::is_two_sided)
            .map(|q| q.mid_px())
    }

    /// Liquidity on one side of the book, best first, as `(price, size)`: the top of book
    /// (freshest: quote streams usually lead depth streams), then the depth book's levels
    /// behind it. `side` is the book side: [`Side::Ask`] is what a buyer takes.
    pub fn liquidity(&self, instrument: u32, side: Side) -> impl Iterator<Item = (i64, u64)> + '_ {
        let top = self.top(instrument);
        let top_level = top.and_then(|q| match side {
            Side::Ask if q.ask_size > 0 => Some((q.ask_px, q.ask_size)),
            Side::Bid if q.bid_size > 0 => Some((q.bid_px, q.bid_size)),
            _ => None,
        });
        let depth = self.book(instrument).map(|b| match side {
            Side::Ask => &b.asks,
            _ => &b.bids,
        });
        let behind = move |price: i64| match (top_level, side) {
            (None, _) => true,
            (Some((top_px, _)), Side::Ask) => price > top_px,
            (Some((top_px, _)), _) => price < top_px,
        };
        top_level.into_iter().chain(
            depth
                .into_iter()
                .flat_map(|levels| levels.iter())
                .filter(move |l| behind(l.price))
                .map(|l| (l.price, l.size)),
        )
    }

    /// Book updates that could not be applied (L3 orders unknown to this state).
    pub fn book_errors(&self) -> u64 {
        self.book_errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_engine::event::{BookDelta, flags};

    fn quote(bid: i64, ask: i64, size: u64) -> Event {
        let mut e = Event::new(0, 0, 0, 10);
        e.set_quote(Quote {
            bid_px: bid,
            ask_px: ask,
            bid_size: size,
            ask_size: size,
            seq: 0,
        });
        e
    }

    fn level(side: Side, price: i64, size: u64) -> Event {
        let mut e = Event::new(0, 0, 5, 10);
        e.flags = flags::LAST;
        e.set_book_delta(BookDelta {
            price,
            size,
            side: side as u8,
            action: BookAction::Add as u8,
            ..BookDelta::default()
        });
        e
    }

    #[test]
    fn liquidity_is_the_quote_then_depth_behind_it() {
        let mut m = MarketState::default();
        m.apply(&quote(99, 101, 2));
        for (p, s) in [(100, 9), (101, 5), (102, 3), (103, 4)] {
            m.apply(&level(Side::Ask, p, s));
        }
        let asks: Vec<_> = m.liquidity(0, Side::Ask).collect();
        assert_eq!(asks, [(101, 2), (102, 3), (103, 4)]);
        assert_eq!(m.mid(0), Some(100));
        assert_eq!(event_time(&level(Side::Ask, 1, 1)), 5);
        assert_eq!(event_time(&quote(1, 2, 1)), 10);
    }

    #[test]
    fn depth_only_feeds_take_the_top_from_the_book() {
        let mut m = MarketState::default();
        m.apply(&level(Side::Bid, 99, 1));
        m.apply(&level(Side::Ask, 102, 1));
        assert_eq!(m.mid(0), Some(100));
        assert_eq!(m.liquidity(0, Side::Bid).collect::<Vec<_>>(), [(99, 1)]);
    }
}
