//! Order books: price levels per side ([`Levels`]), a two-sided book ([`OrderBook`]) that
//! L2 feeds (Binance depth) set level by level, and an order-by-order book ([`OrderBooks`])
//! that L3 feeds (ITCH, Databento MBO) drive with add / execute / cancel / delete /
//! replace, keeping the per-level totals in an [`OrderBook`] per instrument.
//!
//! Levels are a `Vec` sorted so that the best price is **last**: nearly all activity is at
//! or near the top of the book, so inserts and removals move few elements and the top is
//! one load. (A `BTreeMap` costs a pointer chase per level and measured slower for this
//! access pattern in every public order-book benchmark we know of; the sorted vector is
//! what most HFT books use.) Only the best 128 levels or fewer live in the vector, though:
//! deep L2 books (Binance sends thousands of levels a side and updates all through them)
//! keep the rest in a `BTreeMap`, so an update far from the top costs a tree search
//! instead of moving most of the side (40% of Binance decoding time before the split).
//!
//! [`OrderBooks`] finds resting orders through a window of 8-byte slots indexed by order
//! id, since ITCH reference numbers mostly increase with few gaps, with a hash map for the
//! ids and orders that do not fit it (`book/orders.rs` explains the policy). Feeds call
//! [`OrderBooks::prefetch_order`] and [`OrderBooks::prefetch_book`] for the next message
//! before applying the current one, so its cache misses overlap with useful work.
//!
//! ```
//! use tickwire_engine::event::Side;
//! use tickwire_feeds::book::OrderBooks;
//!
//! let mut books = OrderBooks::default();
//! books.add(0, 1, Side::Bid, 100, 5).expect("new order");
//! books.add(0, 2, Side::Ask, 101, 7).expect("new order");
//! books.add(0, 3, Side::Bid, 100, 1).expect("new order");
//! assert_eq!(books.book(0).map(|b| b.top().bid_size), Some(6));
//! books.execute(1, 5).expect("known order"); // order 1 is now empty and leaves the book
//! assert_eq!(books.book(0).map(|b| b.top().bid_size), Some(1));
//! assert!(books.execute(1, 1).is_err(), "order 1 is gone");
//! ```

mod orders;

use std::collections::{BTreeMap, btree_map};

use tickwire_engine::event::{Quote, SIZE_SCALE, Side};

use orders::{OrderTable, ReduceError};

/// Why a book update could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BookError {
    /// The order id is not in the book (executed, cancelled or deleted before, or never
    /// added).
    #[error("unknown order {0}")]
    UnknownOrder(u64),
    /// An add used an id that is already resting.
    #[error("duplicate order id {0}")]
    DuplicateOrder(u64),
    /// More was executed or cancelled than the order had.
    #[error("order {order_id}: {requested} removed but only {remaining} left")]
    Overfill {
        /// The order.
        order_id: u64,
        /// Size asked to remove.
        requested: u64,
        /// Size it had.
        remaining: u64,
    },
    /// The side was neither bid nor ask.
    #[error("order {0} has no side")]
    NoSide(u64),
}

/// One price level: total size and number of orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    /// Price, 10⁻⁹ units.
    pub price: i64,
    /// Total size, 10⁻⁸ units.
    pub size: u64,
    /// Orders at this level (0 for L2 books, which do not know).
    pub orders: u32,
}

/// Levels kept in the sorted vector at most: one more moves the worst
/// [`HOT_SPILL`] of them to the map. 128 levels are 3 KiB, so an insert or removal moves at
/// most that much; the ITCH generator's books (a dozen levels a side) never spill, while the
/// Binance BTCUSDT recording's (about 1 200 bids and 2 200 asks) keep their top 64 to 128 in
/// the vector.
const HOT_MAX: usize = 128;

/// Levels moved from the vector to the map when it outgrows [`HOT_MAX`].
const HOT_SPILL: usize = HOT_MAX / 2;

/// Below this many levels in the vector, the best levels of the map are moved back (up to
/// [`HOT_REFILL`] of them), so the vector never runs empty while the map holds levels.
const HOT_MIN: usize = 8;

/// Levels of the vector that [`Levels::find`] scans linearly from the best before it
/// binary-searches the rest: most updates of an L3 book land within a few levels of the top
/// (the generated ITCH day's books are about a dozen levels a side).
const LINEAR_SCAN: usize = 8;

/// Levels moved from the map back to the vector when it falls under [`HOT_MIN`].
const HOT_REFILL: usize = 32;

/// The levels of one side, best last.
///
/// The best 128 levels or fewer are a `Vec` sorted so the best is last (most
/// updates touch the top, which is one load and moves few elements); the levels behind them
/// are in a `BTreeMap`, so a deep book (thousands of levels, as Binance sends) does not
/// pay a memmove of the whole side for an update far from the top. Every level in the map
/// is worse than every level in the vector, and the map is empty whenever the vector is.
#[derive(Debug, Clone)]
pub struct Levels {
    side: Side,
    /// XOR-ed into a price to make its sort key: 0 for bids, all ones for asks.
    key_mask: i64,
    /// The best levels, sorted by key ascending: the best is last.
    hot: Vec<Level>,
    /// The levels worse than all of `hot`, by key (larger is better).
    cold: BTreeMap<i64, Level>,
}

/// Where a price is, or would go.
enum Slot {
    /// In the vector: `Ok(index)` or `Err(insertion index)`.
    Hot(Result<usize, usize>),
    /// In the map's range (present or not).
    Cold,
}

impl PartialEq for Levels {
    /// Same side and same levels, however they are split between the vector and the map.
    fn eq(&self, other: &Self) -> bool {
        self.side == other.side && self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Levels {}

impl Levels {
    /// An empty side.
    pub fn new(side: Side) -> Self {
        Self {
            side,
            key_mask: if side == Side::Ask { !0 } else { 0 },
            hot: Vec::new(),
            cold: BTreeMap::new(),
        }
    }

    /// Sort key: larger is better on this side. (Bitwise not, not negation, reverses the
    /// order of asks without overflowing at `i64::MIN`.)
    #[inline(always)]
    fn key(&self, price: i64) -> i64 {
        price ^ self.key_mask
    }

    /// Where `price` is, or where it would be inserted.
    #[inline]
    fn find(&self, price: i64) -> Slot {
        let key = self.key(price);
        // Most updates touch the top: look at it before searching.
        let n = self.hot.len();
        if n > 0 {
            let top = self.key(self.hot[n - 1].price);
            if key == top {
                return Slot::Hot(Ok(n - 1));
            }
            if key > top {
                return Slot::Hot(Err(n));
            }
            if !self.cold.is_empty() && key < self.key(self.hot[0].price) {
                return Slot::Cold;
            }
            // Then a linear scan down from the best, over at most LINEAR_SCAN levels: the
            // loads do not depend on each other (a binary search's each wait for the
            // previous), and most updates land within a few levels of the top.
            let stop = n.saturating_sub(LINEAR_SCAN);
            let mut i = n - 1;
            while i > stop {
                i -= 1;
                let k = self.key(self.hot[i].price);
                if k <= key {
                    return Slot::Hot(if k == key { Ok(i) } else { Err(i + 1) });
                }
            }
            if stop == 0 {
                return Slot::Hot(Err(0));
            }
            // Deeper (L2 books with many levels): binary search the rest.
            let rest = &self.hot[..stop];
            return Slot::Hot(rest.binary_search_by(|l| self.key(l.price).cmp(&key)));
        }
        Slot::Hot(Err(0))
    }

    /// Inserts a new level at index `i` of the vector, spilling its worst levels to the map
    /// when it outgrows [`HOT_MAX`].
    #[inline]
    fn insert_hot(&mut self, i: usize, level: Level) {
        self.hot.insert(i, level);
        if self.hot.len() > HOT_MAX {
            self.spill();
        }
    }

    #[cold]
    fn spill(&mut self) {
        let mask = self.key_mask;
        for level in self.hot.drain(..HOT_SPILL) {
            self.cold.insert(level.price ^ mask, level);
        }
    }

    /// Removes index `i` of the vector, refilling it from the map when it runs low.
    #[inline]
    fn remove_hot(&mut self, i: usize) -> Level {
        let level = self.hot.remove(i);
        if self.hot.len() < HOT_MIN && !self.cold.is_empty() {
            self.refill();
        }
        level
    }

    #[cold]
    fn refill(&mut self) {
        // The map's best levels, best first; they go in front of the vector's worst.
        let mut moved = Vec::with_capacity(HOT_REFILL);
        while moved.len() < HOT_REFILL {
            match self.cold.pop_last() {
                Some((_, level)) => moved.push(level),
                None => break,
            }
        }
        self.hot.splice(0..0, moved.into_iter().rev());
    }

    /// Adds `size` (and `orders`) at `price`.
    #[inline]
    pub fn add(&mut self, price: i64, size: u64, orders: u32) {
        match self.find(price) {
            Slot::Hot(Ok(i)) => {
                let level = &mut self.hot[i];
                level.size += size;
                level.orders += orders;
            }
            Slot::Hot(Err(i)) => self.insert_hot(
                i,
                Level {
                    price,
                    size,
                    orders,
                },
            ),
            Slot::Cold => self.add_cold(price, size, orders),
        }
    }

    /// [`add`](Self::add) in the map.
    #[cold]
    #[inline(never)]
    fn add_cold(&mut self, price: i64, size: u64, orders: u32) {
        let level = self.cold.entry(self.key(price)).or_insert(Level {
            price,
            size: 0,
            orders: 0,
        });
        level.size += size;
        level.orders += orders;
    }

    /// Removes `size` (and `orders`) at `price`; the level goes when its size reaches 0.
    /// Returns false if there is no such level (the caller's book is out of sync).
    #[inline]
    pub fn remove(&mut self, price: i64, size: u64, orders: u32) -> bool {
        match self.find(price) {
            Slot::Hot(Ok(i)) => {
                let level = &mut self.hot[i];
                level.size = level.size.saturating_sub(size);
                level.orders = level.orders.saturating_sub(orders);
                if level.size == 0 {
                    self.remove_hot(i);
                }
                true
            }
            Slot::Hot(Err(_)) => false,
            Slot::Cold => self.remove_cold(price, size, orders),
        }
    }

    /// [`remove`](Self::remove) in the map.
    #[cold]
    #[inline(never)]
    fn remove_cold(&mut self, price: i64, size: u64, orders: u32) -> bool {
        let key = self.key(price);
        let Some(level) = self.cold.get_mut(&key) else {
            return false;
        };
        level.size = level.size.saturating_sub(size);
        level.orders = level.orders.saturating_sub(orders);
        if level.size == 0 {
            self.cold.remove(&key);
        }
        true
    }

    /// Sets the level at `price` to `size` (L2 feeds); `size == 0` removes it.
    #[inline]
    pub fn set(&mut self, price: i64, size: u64) {
        self.replace(price, size);
    }

    /// Sets the level at `price` to `size` like [`set`](Self::set), and returns the size it
    /// had (`None` if there was no level): one search where a lookup and a set take two.
    #[inline]
    pub fn replace(&mut self, price: i64, size: u64) -> Option<u64> {
        match (self.find(price), size) {
            (Slot::Hot(Ok(i)), 0) => Some(self.remove_hot(i).size),
            (Slot::Hot(Ok(i)), _) => Some(std::mem::replace(&mut self.hot[i].size, size)),
            (Slot::Hot(Err(_)), 0) => None,
            (Slot::Hot(Err(i)), _) => {
                self.insert_hot(
                    i,
                    Level {
                        price,
                        size,
                        orders: 0,
                    },
                );
                None
            }
            (Slot::Cold, 0) => self.cold.remove(&self.key(price)).map(|l| l.size),
            (Slot::Cold, _) => match self.cold.entry(self.key(price)) {
                btree_map::Entry::Occupied(mut e) => {
                    Some(std::mem::replace(&mut e.get_mut().size, size))
                }
                btree_map::Entry::Vacant(e) => {
                    e.insert(Level {
                        price,
                        size,
                        orders: 0,
                    });
                    None
                }
            },
        }
    }

    /// The level at `price`, if there is one.
    #[inline]
    pub fn level(&self, price: i64) -> Option<&Level> {
        match self.find(price) {
            Slot::Hot(found) => found.ok().map(|i| &self.hot[i]),
            Slot::Cold => self.cold.get(&self.key(price)),
        }
    }

    /// The best level.
    #[inline]
    pub fn best(&self) -> Option<&Level> {
        self.hot.last()
    }

    /// Whether the side has a level strictly better than `price`: then a change at `price`
    /// left the best level as it was.
    #[inline]
    pub fn is_behind_best(&self, price: i64) -> bool {
        self.hot
            .last()
            .is_some_and(|best| self.key(price) < self.key(best.price))
    }

    /// Asks the CPU to start loading the best levels (a hint; see
    /// [`OrderBooks::prefetch_book`]).
    #[inline(always)]
    fn prefetch_top(&self) {
        // The best level and the one three behind it: the 96 bytes where the linear scan of
        // `find` ends for most updates. Two hints and no loop: a loop over the best 8 levels
        // cost ~50 instructions per ITCH message (callgrind) for lines that are mostly
        // cached anyway.
        let n = self.hot.len();
        if n > 0 {
            orders::prefetch_read(&self.hot[n - 1]);
            orders::prefetch_read(&self.hot[n.saturating_sub(4)]);
        }
    }

    /// Levels from the best outwards.
    pub fn iter(&self) -> impl Iterator<Item = &Level> {
        self.hot.iter().rev().chain(self.cold.values().rev())
    }

    /// Number of levels.
    pub fn len(&self) -> usize {
        self.hot.len() + self.cold.len()
    }

    /// Whether the side is empty.
    pub fn is_empty(&self) -> bool {
        self.hot.is_empty()
    }

    /// Removes every level.
    pub fn clear(&mut self) {
        self.hot.clear();
        self.cold.clear();
    }
}

/// A two-sided book of price levels for one instrument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBook {
    /// Bids, best (highest) last.
    pub bids: Levels,
    /// Asks, best (lowest) last.
    pub asks: Levels,
}

impl Default for OrderBook {
    fn default() -> Self {
        Self {
            bids: Levels::new(Side::Bid),
            asks: Levels::new(Side::Ask),
        }
    }
}

impl OrderBook {
    /// The side's levels (`Side::None` reads as the bids).
    #[inline]
    pub fn side_mut(&mut self, side: Side) -> &mut Levels {
        match side {
            Side::Ask => &mut self.asks,
            _ => &mut self.bids,
        }
    }

    /// The side's levels (`Side::None` reads as the bids).
    #[inline]
    pub fn side(&self, side: Side) -> &Levels {
        match side {
            Side::Ask => &self.asks,
            _ => &self.bids,
        }
    }

    /// Top of book as a [`Quote`] (empty sides are price 0, size 0; `seq` is 0).
    #[inline]
    pub fn top(&self) -> Quote {
        let (bid_px, bid_size) = self.bids.best().map_or((0, 0), |l| (l.price, l.size));
        let (ask_px, ask_size) = self.asks.best().map_or((0, 0), |l| (l.price, l.size));
        Quote {
            bid_px,
            ask_px,
            bid_size,
            ask_size,
            seq: 0,
        }
    }

    /// Whether the best bid is at or above the best ask.
    pub fn is_crossed(&self) -> bool {
        matches!((self.bids.best(), self.asks.best()), (Some(b), Some(a)) if b.price >= a.price)
    }

    /// Empties both sides.
    pub fn clear(&mut self) {
        self.bids.clear();
        self.asks.clear();
    }
}

/// An order resting in an [`OrderBooks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestingOrder {
    /// Instrument id.
    pub instrument: u32,
    /// Side.
    pub side: Side,
    /// Price, 10⁻⁹ units.
    pub price: i64,
    /// Remaining size, 10⁻⁸ units.
    pub size: u64,
}

/// Order-by-order books for many instruments, keyed by the venue's order id (unique across
/// instruments, as ITCH order reference numbers are for a day).
///
/// The order table is tuned for ids that mostly increase with few gaps (ITCH reference
/// numbers), for sizes in whole units (shares, contracts) and for non-negative prices in
/// whole ticks: such orders sit in a direct-indexed window of 8-byte slots; others in a
/// hash map (see `book/orders.rs`).
#[derive(Debug, Clone)]
pub struct OrderBooks {
    orders: OrderTable,
    books: Vec<OrderBook>,
}

/// The price unit of [`OrderBooks::default`] and [`OrderBooks::with_size_unit`]: 10⁻⁴, in
/// 10⁻⁹ units. It is the unit of ITCH 5.0 prices (§3, `Price (4)`: four implied decimals),
/// so every ITCH price (at most $200 000.0000) has a compact form.
pub const DEFAULT_PRICE_UNIT: u64 = 100_000;

impl Default for OrderBooks {
    /// Sizes kept compactly in whole units of [`SIZE_SCALE`] (one share or contract),
    /// prices in whole [`DEFAULT_PRICE_UNIT`]s.
    fn default() -> Self {
        Self::with_size_unit(SIZE_SCALE)
    }
}

impl OrderBooks {
    /// Empty books whose order table keeps sizes compactly in whole multiples of
    /// `size_unit` (10⁻⁸ units, not 0), and prices in whole [`DEFAULT_PRICE_UNIT`]s; orders
    /// with other sizes or prices are kept exactly too, in the slower part of the table.
    pub fn with_size_unit(size_unit: u64) -> Self {
        Self::with_units(size_unit, DEFAULT_PRICE_UNIT)
    }

    /// Empty books whose order table keeps sizes compactly in whole multiples of
    /// `size_unit` (10⁻⁸ units, not 0) and prices in whole multiples of `price_unit`
    /// (10⁻⁹ units, not 0) up to 2³¹ - 1 units; orders with other sizes or prices
    /// (negative ones included) are kept exactly too, in the slower part of the table.
    pub fn with_units(size_unit: u64, price_unit: u64) -> Self {
        Self {
            orders: OrderTable::new(size_unit, price_unit),
            books: Vec::new(),
        }
    }

    /// The book of `instrument`, if any order was ever added for it.
    pub fn book(&self, instrument: u32) -> Option<&OrderBook> {
        self.books.get(instrument as usize)
    }

    /// The book of `instrument`, created empty if needed.
    #[inline]
    pub fn book_mut(&mut self, instrument: u32) -> &mut OrderBook {
        let i = instrument as usize;
        if i >= self.books.len() {
            self.grow_books(i + 1);
        }
        &mut self.books[i]
    }

    #[cold]
    #[inline(never)]
    fn grow_books(&mut self, len: usize) {
        self.books.resize_with(len, OrderBook::default);
    }

    /// A resting order (a copy: the table stores orders compactly).
    pub fn order(&self, order_id: u64) -> Option<RestingOrder> {
        self.orders.get(order_id)
    }

    /// Asks the CPU to start loading what an add or update of order `order_id` will read:
    /// call it for the next message before applying the current one, so its lookup does
    /// not wait for memory. Only a hint; it changes nothing.
    #[inline(always)]
    pub fn prefetch_order(&self, order_id: u64) {
        self.orders.prefetch(order_id);
    }

    /// Asks the CPU to start loading the best levels of both sides of `instrument`'s book
    /// (reading the book's header to find them). Only a hint.
    #[inline(always)]
    pub fn prefetch_book(&self, instrument: u32) {
        if let Some(book) = self.books.get(instrument as usize) {
            book.bids.prefetch_top();
            book.asks.prefetch_top();
        }
    }

    /// Number of resting orders.
    pub fn order_count(&self) -> usize {
        self.orders.len()
    }

    /// Adds an order.
    #[inline]
    pub fn add(
        &mut self,
        instrument: u32,
        order_id: u64,
        side: Side,
        price: i64,
        size: u64,
    ) -> Result<(), BookError> {
        if side == Side::None {
            return Err(BookError::NoSide(order_id));
        }
        let order = RestingOrder {
            instrument,
            side,
            price,
            size,
        };
        if !self.orders.insert(order_id, order) {
            return Err(BookError::DuplicateOrder(order_id));
        }
        self.book_mut(instrument).side_mut(side).add(price, size, 1);
        Ok(())
    }

    /// Removes `size` from an order (an execution or a partial cancel); the order leaves
    /// the book when nothing remains. Returns the order as it was before.
    #[inline]
    pub fn reduce(&mut self, order_id: u64, size: u64) -> Result<RestingOrder, BookError> {
        let before = self.orders.reduce(order_id, size).map_err(|e| match e {
            ReduceError::Unknown => BookError::UnknownOrder(order_id),
            ReduceError::Overfill(remaining) => BookError::Overfill {
                order_id,
                requested: size,
                remaining,
            },
        })?;
        let gone = size == before.size;
        self.book_mut(before.instrument)
            .side_mut(before.side)
            .remove(before.price, size, u32::from(gone));
        Ok(before)
    }

    /// An execution of `size` against an order (same as [`reduce`](Self::reduce)).
    #[inline]
    pub fn execute(&mut self, order_id: u64, size: u64) -> Result<RestingOrder, BookError> {
        self.reduce(order_id, size)
    }

    /// Removes an order entirely; returns it as it was.
    #[inline(always)]
    pub fn delete(&mut self, order_id: u64) -> Result<RestingOrder, BookError> {
        let order = self
            .orders
            .remove(order_id)
            .ok_or(BookError::UnknownOrder(order_id))?;
        self.book_mut(order.instrument)
            .side_mut(order.side)
            .remove(order.price, order.size, 1);
        Ok(order)
    }

    /// Replaces an order with a new id, price and size on the same side and instrument;
    /// returns the old order.
    #[inline]
    pub fn replace(
        &mut self,
        old_id: u64,
        new_id: u64,
        price: i64,
        size: u64,
    ) -> Result<RestingOrder, BookError> {
        if old_id != new_id && self.orders.get(new_id).is_some() {
            return Err(BookError::DuplicateOrder(new_id));
        }
        let old = self.delete(old_id)?;
        self.add(old.instrument, new_id, old.side, price, size)?;
        Ok(old)
    }

    /// Removes every order of `instrument` and empties its book.
    pub fn clear_instrument(&mut self, instrument: u32) {
        self.orders.remove_instrument(instrument);
        self.book_mut(instrument).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    #[test]
    fn levels_keep_best_last_on_both_sides() {
        let mut book = OrderBook::default();
        for (p, s) in [(100, 1), (102, 2), (101, 3)] {
            book.bids.add(p, s, 1);
            book.asks.add(p + 10, s, 1);
        }
        let bids: Vec<i64> = book.bids.iter().map(|l| l.price).collect();
        let asks: Vec<i64> = book.asks.iter().map(|l| l.price).collect();
        assert_eq!(bids, [102, 101, 100]);
        assert_eq!(asks, [110, 111, 112]);
        assert_eq!(
            book.top(),
            Quote {
                bid_px: 102,
                ask_px: 110,
                bid_size: 2,
                ask_size: 1,
                seq: 0
            }
        );
        assert!(!book.is_crossed());
    }

    #[test]
    fn l2_set_replaces_and_zero_removes() {
        let mut book = OrderBook::default();
        book.bids.set(100, 5);
        book.bids.set(100, 7);
        book.bids.set(99, 1);
        assert_eq!(book.bids.best().map(|l| l.size), Some(7));
        book.bids.set(100, 0);
        assert_eq!(book.bids.best().map(|l| l.price), Some(99));
        book.bids.set(98, 0); // removing an absent level is a no-op
        assert_eq!(book.bids.len(), 1);
        assert_eq!(book.bids.level(99).map(|l| l.size), Some(1));
        assert_eq!(book.bids.replace(99, 4), Some(1));
        assert_eq!(book.bids.replace(97, 2), None);
        assert_eq!(book.bids.replace(99, 0), Some(4));
        assert_eq!(book.bids.level(99), None);
    }

    #[test]
    fn l3_partial_cancel_replace_and_empty_to_zero() {
        let mut books = OrderBooks::default();
        books.add(3, 10, Side::Ask, 200, 100).expect("add");
        books.add(3, 11, Side::Ask, 200, 50).expect("add");
        assert_eq!(
            books.add(3, 10, Side::Ask, 1, 1),
            Err(BookError::DuplicateOrder(10))
        );
        books.reduce(10, 40).expect("partial cancel");
        let best = books.book(3).and_then(|b| b.asks.best().copied());
        assert_eq!(
            best,
            Some(Level {
                price: 200,
                size: 110,
                orders: 2
            })
        );
        assert_eq!(
            books.reduce(10, 61),
            Err(BookError::Overfill {
                order_id: 10,
                requested: 61,
                remaining: 60
            })
        );
        let old = books.replace(11, 12, 199, 20).expect("replace");
        assert_eq!(old.size, 50);
        assert_eq!(books.book(3).map(|b| b.top().ask_px), Some(199));
        books.delete(12).expect("delete");
        books.execute(10, 60).expect("fill the rest");
        assert!(
            books.book(3).is_some_and(|b| b.asks.is_empty()),
            "book emptied to zero"
        );
        assert_eq!(books.order_count(), 0);
        assert_eq!(books.execute(99, 1), Err(BookError::UnknownOrder(99)));
    }

    /// A level operation of the property test.
    #[derive(Debug, Clone, Copy)]
    enum LevelOp {
        Add(i64, u64),
        Remove(i64, u64),
        Replace(i64, u64),
    }

    fn level_op(prices: i64) -> impl Strategy<Value = LevelOp> {
        prop_oneof![
            (0..prices, 1..5u64).prop_map(|(p, s)| LevelOp::Add(p, s)),
            (0..prices, 1..5u64).prop_map(|(p, s)| LevelOp::Remove(p, s)),
            (0..prices, 0..5u64).prop_map(|(p, s)| LevelOp::Replace(p, s)),
        ]
    }

    /// The reference model of one side: price -> (size, orders).
    type Model = BTreeMap<i64, (u64, u32)>;

    fn check_side(levels: &Levels, model: &Model) -> Result<(), TestCaseError> {
        let expected: Vec<(i64, u64, u32)> = match levels.side {
            Side::Ask => model.iter().map(|(&p, &(s, o))| (p, s, o)).collect(),
            _ => model.iter().rev().map(|(&p, &(s, o))| (p, s, o)).collect(),
        };
        let actual: Vec<(i64, u64, u32)> =
            levels.iter().map(|l| (l.price, l.size, l.orders)).collect();
        prop_assert_eq!(&actual, &expected);
        prop_assert_eq!(levels.len(), expected.len());
        prop_assert_eq!(levels.is_empty(), expected.is_empty());
        prop_assert_eq!(
            levels.best().map(|l| l.price),
            expected.first().map(|l| l.0)
        );
        // The split's invariants: the vector is sorted, holds the best levels, never
        // outgrows HOT_MAX, and is empty only with the map.
        prop_assert!(levels.hot.len() <= HOT_MAX);
        prop_assert!(!levels.hot.is_empty() || levels.cold.is_empty());
        let hot_keys: Vec<i64> = levels.hot.iter().map(|l| levels.key(l.price)).collect();
        prop_assert!(hot_keys.windows(2).all(|w| w[0] < w[1]));
        if let (Some(worst_hot), Some((&best_cold, _))) =
            (hot_keys.first(), levels.cold.last_key_value())
        {
            prop_assert!(best_cold < *worst_hot);
        }
        Ok(())
    }

    proptest! {
        /// Random adds, removes and sets over enough prices to spill to the map and refill
        /// from it, against a BTreeMap model.
        #[test]
        fn levels_match_a_btreemap_model(
            ask in any::<bool>(),
            prices in prop_oneof![Just(20i64), Just(400i64)],
            ops in proptest::collection::vec(level_op(400), 1..3_000),
        ) {
            let side = if ask { Side::Ask } else { Side::Bid };
            let mut levels = Levels::new(side);
            let mut model = Model::new();
            for op in ops {
                match op {
                    LevelOp::Add(p, s) => {
                        let p = p % prices;
                        levels.add(p, s, 1);
                        let e = model.entry(p).or_default();
                        e.0 += s;
                        e.1 += 1;
                    }
                    LevelOp::Remove(p, s) => {
                        let p = p % prices;
                        let found = levels.remove(p, s, 1);
                        prop_assert_eq!(found, model.contains_key(&p));
                        if let Some(e) = model.get_mut(&p) {
                            e.0 = e.0.saturating_sub(s);
                            e.1 = e.1.saturating_sub(1);
                            if e.0 == 0 {
                                model.remove(&p);
                            }
                        }
                    }
                    LevelOp::Replace(p, s) => {
                        let p = p % prices;
                        let old = levels.replace(p, s);
                        let expected = if s == 0 {
                            model.remove(&p).map(|e| e.0)
                        } else {
                            let e = model.entry(p).or_insert((0, 0));
                            let old = (e.0 > 0).then_some(e.0);
                            e.0 = s;
                            old
                        };
                        prop_assert_eq!(old, expected);
                    }
                }
                let p = match op {
                    LevelOp::Add(p, _) | LevelOp::Remove(p, _) | LevelOp::Replace(p, _) => p % prices,
                };
                prop_assert_eq!(
                    levels.level(p).map(|l| (l.size, l.orders)),
                    model.get(&p).copied()
                );
            }
            check_side(&levels, &model)?;
            let copy = levels.clone();
            prop_assert_eq!(&copy, &levels);
            levels.clear();
            prop_assert!(levels.is_empty() && levels.cold.is_empty());
        }
    }

    #[test]
    fn deep_books_spill_and_refill_in_order() {
        let mut bids = Levels::new(Side::Bid);
        for p in 0..1_000 {
            bids.set(p, 1);
        }
        assert_eq!(bids.len(), 1_000);
        assert!(bids.hot.len() <= HOT_MAX && !bids.cold.is_empty());
        assert_eq!(bids.best().map(|l| l.price), Some(999));
        // Remove from the top down: the vector refills from the map each time it runs low.
        for p in (0..1_000).rev() {
            assert_eq!(bids.best().map(|l| l.price), Some(p));
            assert_eq!(bids.replace(p, 0), Some(1));
        }
        assert!(bids.is_empty() && bids.cold.is_empty());
        let mut asks = Levels::new(Side::Ask);
        asks.set(i64::MIN, 1);
        asks.set(i64::MAX, 1);
        assert_eq!(asks.best().map(|l| l.price), Some(i64::MIN));
    }
}
