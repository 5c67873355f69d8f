//! The order table of [`OrderBooks`](super::OrderBooks): resting orders by the venue's
//! order id.
//!
//! ITCH order reference numbers are handed out in increasing order through the day with
//! few gaps, and most orders live briefly. So the table is mainly a **window** over the most
//! recent ids: a ring of 8-byte slots, id `i` in slot `i mod len`. Finding an order is
//! one load (no hashing, no probing, one cache line where a hash table touches its control
//! bytes and its bucket), and new orders land next to each other. A hash map (the
//! **spill**) holds everything else: ids below the window or far past its end (sparse id
//! schemes end up there entirely, and cost what a hash map costs), orders the window
//! evicted as it slid on, and orders without an exact compact form.
//!
//! A slot packs an order into a `u64`: its price and size in whole [`OrderTable::new`]
//! units (31 and 18 bits), its instrument (14 bits) and its side. An order that does not
//! fit — a price or size that is not a whole number of units or has too many, a negative
//! price, an instrument past 16 383 — is kept in the spill. With ITCH's units (10⁻⁴
//! dollars, whole shares) nearly every ITCH order fits: prices are at most 2·10⁹ units,
//! orders of more than 262 143 shares are rare, and a day names about 12 000 stocks.
//! 8 bytes rather than 16 (an `i64` price and `u32` size and tag) halve the window: the
//! deletes and executes of old orders wait on it, and on the benchmark day a 16-byte window
//! was larger than L2 (callgrind's cache simulation with a 512 KiB L2: 1.67 misses a
//! message with 16-byte slots, 1.19 with 8-byte slots in a ring; the file's bytes stream
//! through for about 0.5 of those).
//!
//! The window slides on as ids arrive, without moving any slot: the ring's length is a
//! power of two, and once it is full, the next id takes the slot of the oldest, whose order
//! (if still resting) moves to the spill. The ring is sized by the orders resting in it:
//! rather than evict one, a ring with fewer than [`MIN_SLOTS_PER_LIVE`] slots per resting
//! order doubles, and at the end of each lap one with more than [`MAX_SLOTS_PER_LIVE`]
//! halves (never below [`MIN_WINDOW`]), so it stays bounded by the orders resting. Each
//! resize copies the window once and comes after at least half as many appends (a lap, or
//! the growth that filled the ring), so appends stay O(1) amortized. (An earlier window,
//! a `Vec` that dropped its oldest part when full, moved about a megabyte per cut on the
//! benchmark day.)

use rustc_hash::FxHashMap;
use tickwire_engine::event::Side;

use super::RestingOrder;

/// The smallest ring, in slots: 16 384 slots, 192 KiB (64 in unit tests, so that short
/// random runs slide the window too).
const MIN_WINDOW: usize = if cfg!(test) { 64 } else { 1 << 14 };

/// A full ring that would move a resting order to the spill doubles instead while it has
/// fewer than this many slots per order resting in it. Orders in the generated benchmark
/// day die at random (mean lifetime about as many ids as there are resting orders), so a
/// ring of 4 slots per order moves about 2% of them to the spill (e⁻⁴); real ITCH orders
/// mostly die younger.
const MIN_SLOTS_PER_LIVE: usize = 4;

/// A full ring (longer than [`MIN_WINDOW`]) halves at the end of a lap when it has more
/// than this many slots per order resting in it: a ring sized for a busy hour does not stay
/// that large, and halved it still has [`MIN_SLOTS_PER_LIVE`] slots per order.
const MAX_SLOTS_PER_LIVE: usize = 2 * MIN_SLOTS_PER_LIVE;

/// An id at most this far past the window's end extends it (the ids skipped become empty
/// slots); ids farther on go to the spill. Nasdaq skips reference numbers for orders it does
/// not disseminate, a few at a time.
const MAX_GAP: u64 = 64;

/// A window with at most this many resting orders moves them to the spill and restarts at
/// an id far from it, instead of sending that id (and the ones after it) to the spill...
const REBASE_MAX_LIVE: usize = 64;

/// ...provided the window has been used for at least this many slots (or is empty): sparse
/// ids (a venue whose order ids jump by more than [`MAX_GAP`]) would otherwise restart the
/// window at every add, each time moving the previous add's order to the spill.
const REBASE_MIN_SLOTS: usize = 4 * REBASE_MAX_LIVE;

/// Bits of a slot's size, in the table's size units: sizes of 1 to 262 143 units fit.
const SIZE_BITS: u32 = 18;
/// Bits of a slot's instrument: instruments 0 to 16 383 fit (a day of ITCH names about
/// 12 000 stocks).
const INSTRUMENT_BITS: u32 = 14;
/// Bits of a slot's price, in the table's price units: 0 to 2³¹ - 1 fit (ITCH prices are at
/// most 200 000.0000, 2·10⁹ of its 10⁻⁴ units, §3).
const PRICE_BITS: u32 = 31;

const INSTRUMENT_SHIFT: u32 = SIZE_BITS;
const PRICE_SHIFT: u32 = SIZE_BITS + INSTRUMENT_BITS;
const ASK_SHIFT: u32 = PRICE_SHIFT + PRICE_BITS;
const SIZE_MASK: u64 = (1 << SIZE_BITS) - 1;
const MAX_SLOT_SIZE: u64 = SIZE_MASK;
const MAX_SLOT_INSTRUMENT: u32 = (1 << INSTRUMENT_BITS) - 1;
const MAX_SLOT_PRICE: u64 = (1 << PRICE_BITS) - 1;
const _: () = assert!(ASK_SHIFT == 63);

/// A resting order in the window, 8 bytes (eight to a cache line): from the low bits, its
/// remaining size in the table's size units ([`SIZE_BITS`]), its instrument
/// ([`INSTRUMENT_BITS`]), its price in the table's price units ([`PRICE_BITS`]) and its
/// side (1 for ask). A resting order's size is at least one unit, so 0 marks an empty
/// slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot(u64);

impl Slot {
    const EMPTY: Slot = Slot(0);

    #[inline(always)]
    fn is_live(self) -> bool {
        self.0 != 0
    }

    #[inline(always)]
    fn units(self) -> u64 {
        self.0 & SIZE_MASK
    }

    #[inline(always)]
    fn instrument(self) -> u32 {
        (self.0 >> INSTRUMENT_SHIFT) as u32 & MAX_SLOT_INSTRUMENT
    }

    /// The same order with `units` of size (at most its size now).
    #[inline(always)]
    fn with_units(self, units: u64) -> Slot {
        debug_assert!(units <= self.units());
        Slot(self.0 & !SIZE_MASK | units)
    }
}

/// Exact division by a constant without a divide instruction: `x / d` when `d` divides `x`
/// and the quotient fits a `u32`, else `None` (Granlund and Montgomery, "Division by
/// Invariant Integers using Multiplication", 1994, §9: exact division by the odd part's
/// inverse modulo 2⁶⁴ after shifting out the power of two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ExactDivisor {
    divisor: u64,
    shift: u32,
    /// `2^shift - 1`: the bits a multiple of the divisor has clear.
    low_mask: u64,
    /// The odd part's inverse modulo 2⁶⁴.
    inverse: u64,
    /// The largest quotient wanted (at most the `max` given) that is an exact result
    /// (`odd * q` does not wrap).
    max_quotient: u64,
}

impl ExactDivisor {
    /// Exact division by `divisor` (not 0) with quotients up to `max`.
    fn new(divisor: u64, max: u64) -> Self {
        assert_ne!(divisor, 0, "a unit of 0");
        let shift = divisor.trailing_zeros();
        let odd = divisor >> shift;
        // Newton's iteration doubles the correct low bits: odd * odd = 1 mod 8 (3 bits),
        // then 6, 12, 24, 48, 96 >= 64.
        let mut inverse = odd;
        for _ in 0..5 {
            inverse = inverse.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inverse)));
        }
        debug_assert_eq!(odd.wrapping_mul(inverse), 1);
        Self {
            divisor,
            shift,
            low_mask: (1u64 << shift) - 1,
            inverse,
            max_quotient: (u64::MAX / odd).min(max),
        }
    }

    /// `x / divisor` if it is exact and at most the `max` of [`new`](Self::new).
    #[inline(always)]
    fn divide(&self, x: u64) -> Option<u64> {
        if x & self.low_mask != 0 {
            return None;
        }
        // q * odd = x >> shift (mod 2^64) by construction; it is the true quotient exactly
        // when the product does not wrap, i.e. q <= u64::MAX / odd.
        let q = (x >> self.shift).wrapping_mul(self.inverse);
        if q <= self.max_quotient {
            Some(q)
        } else {
            None
        }
    }
}

/// Why [`OrderTable::reduce`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReduceError {
    /// No such order.
    Unknown,
    /// The order has less than the size asked; its size.
    Overfill(u64),
}

/// Resting orders by id (see the module docs).
#[derive(Debug, Clone)]
pub(super) struct OrderTable {
    size_unit: ExactDivisor,
    price_unit: ExactDivisor,
    /// The oldest id the window covers.
    base: u64,
    /// The window covers ids `base..base + span`; at most `slots.len()`.
    span: u64,
    /// The ring: id `i` (in the window) is `slots[i & mask]`. Its length is a power of
    /// two (0 before the first order), and slots of ids outside the window are empty.
    slots: Vec<Slot>,
    /// `slots.len() - 1` (0 while `slots` is empty).
    mask: u64,
    /// Live slots in `slots`.
    in_window: usize,
    spill: FxHashMap<u64, RestingOrder>,
    /// No id above this is in the spill: ids past the window's end (every add) and most in
    /// it skip the hash lookup, as the spill holds mostly evicted old ids.
    spill_max: u64,
}

impl OrderTable {
    /// An empty table whose slots keep sizes in whole multiples of `size_unit` (10⁻⁸ units;
    /// not 0) and prices in whole multiples of `price_unit` (10⁻⁹ units; not 0).
    pub(super) fn new(size_unit: u64, price_unit: u64) -> Self {
        Self {
            size_unit: ExactDivisor::new(size_unit, MAX_SLOT_SIZE),
            price_unit: ExactDivisor::new(price_unit, MAX_SLOT_PRICE),
            base: 0,
            span: 0,
            slots: Vec::new(),
            mask: 0,
            in_window: 0,
            spill: FxHashMap::default(),
            spill_max: 0,
        }
    }

    /// Number of resting orders.
    pub(super) fn len(&self) -> usize {
        self.in_window + self.spill.len()
    }

    /// The ring index of `id`, if the window covers it.
    #[inline(always)]
    fn index(&self, id: u64) -> Option<usize> {
        let offset = id.wrapping_sub(self.base);
        (offset < self.span).then_some((id & self.mask) as usize)
    }

    #[inline(always)]
    fn expand(&self, slot: Slot) -> RestingOrder {
        let price = (slot.0 >> PRICE_SHIFT) & MAX_SLOT_PRICE;
        RestingOrder {
            instrument: slot.instrument(),
            side: if slot.0 >> ASK_SHIFT != 0 {
                Side::Ask
            } else {
                Side::Bid
            },
            // At most `i64::MAX`: the price was a multiple of the unit that fit an `i64`.
            price: (price * self.price_unit.divisor) as i64,
            size: slot.units() * self.size_unit.divisor,
        }
    }

    /// The slot for `order`, if it has an exact one.
    #[inline(always)]
    fn compact(&self, order: &RestingOrder) -> Option<Slot> {
        let ask = match order.side {
            Side::Bid => 0,
            Side::Ask => 1,
            Side::None => return None,
        };
        // The divisors return only quotients that fit their fields.
        let price = self.price_unit.divide(u64::try_from(order.price).ok()?)?;
        let units = self.size_unit.divide(order.size)?;
        if order.instrument > MAX_SLOT_INSTRUMENT || units == 0 {
            return None;
        }
        Some(Slot(
            ask << ASK_SHIFT
                | price << PRICE_SHIFT
                | u64::from(order.instrument) << INSTRUMENT_SHIFT
                | units,
        ))
    }

    /// The order `id`, if resting.
    #[inline]
    pub(super) fn get(&self, id: u64) -> Option<RestingOrder> {
        if let Some(i) = self.index(id) {
            let slot = self.slots[i];
            if slot.is_live() {
                return Some(self.expand(slot));
            }
        }
        if self.may_be_spilled(id) {
            self.spill.get(&id).copied()
        } else {
            None
        }
    }

    /// Asks the CPU to start loading the ring slot of `id`, so a lookup of `id` a little
    /// later does not wait for memory, nor an add of `id` just past the window's end (it
    /// reads the slot to see whether the oldest order there must move to the spill: unlike
    /// a push onto a `Vec`, which the store buffer absorbs, that read stalls on a miss).
    #[inline(always)]
    pub(super) fn prefetch(&self, id: u64) {
        if let Some(slot) = self.slots.get((id & self.mask) as usize) {
            prefetch_read(slot);
        }
    }

    /// Whether `id` may be in the spill (false means it is not).
    #[inline(always)]
    fn may_be_spilled(&self, id: u64) -> bool {
        id <= self.spill_max && !self.spill.is_empty()
    }

    /// Whether `id` is in the spill (only asked when the window does not hold it).
    #[inline(always)]
    fn spilled(&self, id: u64) -> bool {
        self.may_be_spilled(id) && self.spill.contains_key(&id)
    }

    /// Puts an order in the spill.
    fn spill_insert(&mut self, id: u64, order: RestingOrder) {
        self.spill_max = self.spill_max.max(id);
        self.spill.insert(id, order);
    }

    /// Takes an order out of the spill.
    fn spill_remove(&mut self, id: u64) -> Option<RestingOrder> {
        let order = self.spill.remove(&id);
        if self.spill.is_empty() {
            self.spill_max = 0;
        }
        order
    }

    /// Adds `order` as `id`; false (and nothing changes) if `id` is resting already.
    #[inline]
    pub(super) fn insert(&mut self, id: u64, order: RestingOrder) -> bool {
        let compact = self.compact(&order);
        let offset = id.wrapping_sub(self.base);
        if offset < self.span {
            let i = (id & self.mask) as usize;
            if self.slots[i].is_live() || self.spilled(id) {
                return false;
            }
            match compact {
                Some(slot) => {
                    self.slots[i] = slot;
                    self.in_window += 1;
                }
                None => {
                    self.spill_insert(id, order);
                }
            }
            return true;
        }
        // The common case: the next id, just past the window's end, whose slot is free (the
        // ring is not full, or its oldest id, which shares the slot, is not resting).
        if let Some(slot) = compact {
            if offset == self.span && !self.spilled(id) {
                let i = (id & self.mask) as usize;
                if let Some(free) = self.slots.get_mut(i).filter(|s| !s.is_live()) {
                    *free = slot;
                    self.in_window += 1;
                    if self.span == self.mask + 1 {
                        self.base += 1;
                        if i == 0 {
                            self.lap();
                        }
                    } else {
                        self.span += 1;
                    }
                    return true;
                }
            }
        }
        self.insert_slow(id, order, compact)
    }

    #[cold]
    #[inline(never)]
    fn insert_slow(&mut self, id: u64, order: RestingOrder, compact: Option<Slot>) -> bool {
        if self.get(id).is_some() {
            return false;
        }
        let Some(slot) = compact else {
            self.spill_insert(id, order);
            return true;
        };
        let offset = id.wrapping_sub(self.base);
        if !self.slots.is_empty() && offset >= self.span && offset - self.span <= MAX_GAP {
            // Just past the end, over a gap or onto a live oldest slot: slide the window on.
            self.extend_to(id);
            self.slots[(id & self.mask) as usize] = slot;
            self.in_window += 1;
            return true;
        }
        if self.in_window == 0
            || (self.in_window <= REBASE_MAX_LIVE && self.span >= REBASE_MIN_SLOTS as u64)
        {
            // Few orders in the window and an id far from it: start the window over there.
            self.evict_all();
            if self.slots.is_empty() {
                self.slots = vec![Slot::EMPTY; MIN_WINDOW];
                self.mask = MIN_WINDOW as u64 - 1;
            }
            self.base = id;
            self.span = 1;
            self.slots[(id & self.mask) as usize] = slot;
            self.in_window = 1;
            return true;
        }
        self.spill_insert(id, order);
        true
    }

    /// Slides the window on until it covers `id` (past its end): each id it passes gets an
    /// empty slot, and when the ring is full the oldest id gives up its slot (its order, if
    /// resting, moves to the spill), unless the ring is dense enough to grow instead.
    fn extend_to(&mut self, id: u64) {
        while id.wrapping_sub(self.base) >= self.span {
            if self.span < self.mask + 1 {
                self.span += 1;
                continue;
            }
            let i = (self.base & self.mask) as usize;
            if self.slots[i].is_live() && self.in_window * MIN_SLOTS_PER_LIVE > self.slots.len() {
                self.resize(self.slots.len() * 2);
                continue;
            }
            self.evict(self.base);
            self.base += 1;
            if i == 0 {
                self.lap();
            }
        }
    }

    /// At the end of each lap of a full ring: halves a sparse one (see the module docs).
    #[cold]
    #[inline(never)]
    fn lap(&mut self) {
        let len = self.slots.len();
        if len > MIN_WINDOW && self.in_window * MAX_SLOTS_PER_LIVE < len {
            self.resize(len / 2);
        }
    }

    /// Moves the window into a ring of `len` slots (a power of two). When it is shorter
    /// than the window, the window keeps its newest `len` ids and the older ones' orders
    /// move to the spill.
    fn resize(&mut self, len: usize) {
        debug_assert!(len.is_power_of_two());
        let keep = self.span.min(len as u64);
        let dropped = self.span - keep;
        for n in 0..dropped {
            self.evict(self.base + n);
        }
        let mask = len as u64 - 1;
        let mut slots = vec![Slot::EMPTY; len];
        for n in dropped..self.span {
            let id = self.base + n;
            slots[(id & mask) as usize] = self.slots[(id & self.mask) as usize];
        }
        self.slots = slots;
        self.mask = mask;
        self.base += dropped;
        self.span = keep;
    }

    /// Moves every order of the window to the spill and empties it.
    fn evict_all(&mut self) {
        if self.in_window > 0 {
            for n in 0..self.span {
                self.evict(self.base + n);
            }
            debug_assert_eq!(self.in_window, 0, "every resting order is in the span");
        }
        self.span = 0;
    }

    /// Moves the order resting in the slot of `id` (an id the window covers), if any, to
    /// the spill, and empties the slot.
    fn evict(&mut self, id: u64) {
        let i = (id & self.mask) as usize;
        let slot = self.slots[i];
        if slot.is_live() {
            let order = self.expand(slot);
            self.spill_insert(id, order);
            self.slots[i] = Slot::EMPTY;
            self.in_window -= 1;
        }
    }

    /// Removes `size` from order `id` (removing the order when nothing remains); returns the
    /// order as it was.
    #[inline]
    pub(super) fn reduce(&mut self, id: u64, size: u64) -> Result<RestingOrder, ReduceError> {
        if let Some(i) = self.index(id) {
            let slot = self.slots[i];
            if slot.is_live() {
                let before = self.expand(slot);
                if size > before.size {
                    return Err(ReduceError::Overfill(before.size));
                }
                let remaining = before.size - size;
                if remaining == 0 {
                    self.slots[i] = Slot::EMPTY;
                    self.in_window -= 1;
                } else if let Some(units) = self.size_unit.divide(remaining) {
                    self.slots[i] = slot.with_units(units);
                } else {
                    // Not a whole number of units any more: the spill keeps it exactly.
                    self.slots[i] = Slot::EMPTY;
                    self.in_window -= 1;
                    self.spill_insert(
                        id,
                        RestingOrder {
                            size: remaining,
                            ..before
                        },
                    );
                }
                return Ok(before);
            }
        }
        self.reduce_spilled(id, size)
    }

    fn reduce_spilled(&mut self, id: u64, size: u64) -> Result<RestingOrder, ReduceError> {
        if !self.may_be_spilled(id) {
            return Err(ReduceError::Unknown);
        }
        let Some(order) = self.spill.get_mut(&id) else {
            return Err(ReduceError::Unknown);
        };
        let before = *order;
        if size > before.size {
            return Err(ReduceError::Overfill(before.size));
        }
        order.size -= size;
        if order.size == 0 {
            self.spill_remove(id);
        }
        Ok(before)
    }

    /// Removes order `id`; returns it.
    #[inline]
    pub(super) fn remove(&mut self, id: u64) -> Option<RestingOrder> {
        if let Some(i) = self.index(id) {
            let slot = self.slots[i];
            if slot.is_live() {
                self.slots[i] = Slot::EMPTY;
                self.in_window -= 1;
                return Some(self.expand(slot));
            }
        }
        if self.may_be_spilled(id) {
            self.spill_remove(id)
        } else {
            None
        }
    }

    /// Removes every order of `instrument`.
    pub(super) fn remove_instrument(&mut self, instrument: u32) {
        for slot in &mut self.slots {
            if slot.is_live() && slot.instrument() == instrument {
                *slot = Slot::EMPTY;
                self.in_window -= 1;
            }
        }
        self.spill.retain(|_, o| o.instrument != instrument);
        if self.spill.is_empty() {
            self.spill_max = 0;
        }
    }
}

/// A hint to load `value`'s cache line (T0: into every cache level).
#[inline(always)]
pub(super) fn prefetch_read<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults, even on an invalid address, and
    // changes no memory; this one is of a live reference anyway. `_mm_prefetch` needs SSE,
    // which every x86_64 CPU has (it is in the target's baseline features).
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(value).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn exact_division_without_dividing() {
        for d in [1u64, 2, 3, 10, 100, 100_000_000, 7 << 20, u64::MAX, 1 << 63] {
            let e = ExactDivisor::new(d, u64::from(u32::MAX));
            for q in [
                0u64,
                1,
                2,
                12_345,
                u64::from(u32::MAX) - 1,
                u64::from(u32::MAX),
            ] {
                let Some(x) = q.checked_mul(d) else { continue };
                assert_eq!(e.divide(x), Some(q), "{x} / {d}");
                if d > 1 {
                    if let Some(x1) = x.checked_add(1) {
                        assert_eq!(e.divide(x1), None, "{x1} / {d} is not exact");
                    }
                }
            }
            if let Some(x) = d.checked_mul(u64::from(u32::MAX) + 1) {
                assert_eq!(e.divide(x), None, "quotient past the max");
            }
        }
    }

    fn order(instrument: u32, side: Side, price: i64, size: u64) -> RestingOrder {
        RestingOrder {
            instrument,
            side,
            price,
            size,
        }
    }

    #[test]
    fn window_slides_spills_and_rebases() {
        let unit = 100;
        let mut t = OrderTable::new(unit, 1);
        // Dense ids: all in the window. Keep every 1000th alive while the rest die young.
        for id in 1..200_000u64 {
            assert!(t.insert(id, order(1, Side::Bid, id as i64, unit)));
            if id > 10 && (id - 10) % 1000 != 0 {
                assert_eq!(t.remove(id - 10).map(|o| o.price), Some(id as i64 - 10));
            }
        }
        assert!(
            t.span <= t.slots.len() as u64 && t.slots.len() < 100_000,
            "bounded window"
        );
        assert!(!t.spill.is_empty(), "old survivors went to the spill");
        assert_eq!(t.len(), 199 + 10);
        assert_eq!(t.get(1000).map(|o| o.price), Some(1000));
        assert!(
            !t.insert(1000, order(1, Side::Bid, 1, unit)),
            "duplicate in the spill"
        );
        // A far id: the window (holding few orders) moves its orders to the spill and starts
        // over there.
        assert!(t.insert(1 << 40, order(2, Side::Ask, -5, unit * 3)));
        assert_eq!(t.get(1 << 40), Some(order(2, Side::Ask, -5, unit * 3)));
        // Sizes that are not whole units, and huge instruments, live in the spill exactly.
        assert!(t.insert(300_000, order(1, Side::Bid, 1, unit * 2 + 1)));
        assert!(t.insert(300_001, order(u32::MAX, Side::Bid, 1, unit)));
        assert_eq!(
            t.reduce(300_000, 1),
            Ok(order(1, Side::Bid, 1, unit * 2 + 1))
        );
        assert_eq!(t.get(300_001).map(|o| o.instrument), Some(u32::MAX));
        // So do prices without a slot form: negative, not a whole number of units, or more
        // units than a slot holds; they are found, reduced and removed as any other.
        let mut p = OrderTable::new(1, 100);
        let largest = 100 * MAX_SLOT_PRICE as i64;
        let prices = [-100, 150, largest + 100, i64::MAX, 200, largest];
        for (id, price) in (1..).zip(prices) {
            assert!(p.insert(id, order(1, Side::Ask, price, 10)));
        }
        assert_eq!(
            (p.in_window, p.spill.len()),
            (2, 4),
            "200 and the largest fit a slot"
        );
        assert!(
            !p.insert(2, order(1, Side::Ask, 100, 1)),
            "duplicate in the spill"
        );
        for (id, price) in (1..).zip(prices) {
            assert_eq!(p.get(id), Some(order(1, Side::Ask, price, 10)));
            assert_eq!(p.reduce(id, 4).map(|o| o.price), Ok(price));
            assert_eq!(p.get(id).map(|o| (o.price, o.size)), Some((price, 6)));
            assert_eq!(p.remove(id).map(|o| o.price), Some(price));
            assert_eq!(p.get(id), None);
        }
        assert_eq!(p.len(), 0);
        // And sizes and instruments past a slot's bits.
        let fits = [
            (MAX_SLOT_INSTRUMENT, MAX_SLOT_SIZE, true),
            (MAX_SLOT_INSTRUMENT + 1, 1, false),
            (0, MAX_SLOT_SIZE + 1, false),
            (0, 0, false),
        ];
        for (id, (instrument, size, fits)) in (10..).zip(fits) {
            let o = order(instrument, Side::Bid, 100, size);
            assert!(p.insert(id, o));
            assert_eq!(p.spill.contains_key(&id), !fits, "{o:?}");
            assert_eq!(p.get(id), Some(o));
        }
        p.remove_instrument(MAX_SLOT_INSTRUMENT);
        assert_eq!(p.len(), 3);
        assert_eq!(p.reduce(10, 1), Err(ReduceError::Unknown));
        // A window slot reduced to a fraction of a unit moves to the spill.
        assert_eq!(t.reduce(199_999, 1).map(|o| o.size), Ok(unit));
        assert_eq!(t.get(199_999).map(|o| o.size), Some(unit - 1));
        assert_eq!(
            t.reduce(199_999, unit),
            Err(ReduceError::Overfill(unit - 1))
        );
        t.remove_instrument(1);
        assert_eq!(t.len(), 2);
        // An empty window restarts wherever the next id is.
        let mut t = OrderTable::new(1, 1);
        assert!(t.insert(5_000_000_000, order(0, Side::Ask, 1, 1)));
        assert!(t.spill.is_empty() && t.base == 5_000_000_000);
        // Sparse ids: the window stays put and they go to the spill.
        for i in 1..1_000u64 {
            assert!(t.insert(5_000_000_000 + i * 1_000, order(0, Side::Ask, 1, 1)));
        }
        assert_eq!(
            (t.base, t.in_window, t.spill.len()),
            (5_000_000_000, 1, 999)
        );
        assert_eq!(t.remove(5_000_000_000).map(|o| o.price), Some(1));
        assert!(t.insert(7, order(0, Side::Ask, 1, 1)));
        assert_eq!((t.base, t.in_window), (7, 1), "an empty window rebases");
        // A window used for a while, holding few orders, rebases to a far id.
        for id in 8..1_000u64 {
            assert!(t.insert(id, order(0, Side::Ask, 1, 1)));
            assert!(t.remove(id).is_some());
        }
        assert!(t.insert(1 << 50, order(0, Side::Ask, 1, 1)));
        assert_eq!(t.base, 1 << 50);
        assert_eq!(t.get(7).map(|o| o.price), Some(1), "moved to the spill");
    }

    #[test]
    fn ring_grows_when_dense_and_halves_when_sparse() {
        let mut t = OrderTable::new(1, 1);
        for id in 1..=1000u64 {
            assert!(t.insert(id, order(0, Side::Bid, id as i64, 1)));
        }
        assert_eq!(t.slots.len(), 1024, "grew rather than evict");
        assert_eq!((t.in_window, t.spill.len()), (1000, 0));
        for id in (1..=1000u64).filter(|id| id % 100 != 0) {
            assert!(t.remove(id).is_some());
        }
        // Short-lived orders lap the ring: it halves at each lap down to MIN_WINDOW, moving
        // the old survivors to the spill.
        for id in 1001..=5000u64 {
            assert!(t.insert(id, order(0, Side::Ask, 1, 1)));
            assert!(t.remove(id).is_some());
        }
        assert_eq!(t.slots.len(), MIN_WINDOW);
        assert_eq!((t.in_window, t.spill.len()), (0, 10));
        for id in (100..=1000u64).step_by(100) {
            assert_eq!(t.get(id), Some(order(0, Side::Bid, id as i64, 1)));
        }
        // A gap past the end of a full ring, over live orders: they move to the spill.
        for id in 5001..5001 + MIN_WINDOW as u64 {
            assert!(t.insert(id, order(0, Side::Ask, 1, 1)));
            assert!(t.remove(id).is_some());
        }
        assert!(t.insert(6000, order(0, Side::Ask, 2, 1)));
        assert!(t.insert(6000 + MAX_GAP, order(0, Side::Ask, 3, 1)));
        assert_eq!(t.get(6000).map(|o| o.price), Some(2));
        assert_eq!(t.get(6000 + MAX_GAP).map(|o| o.price), Some(3));
        assert_eq!(t.len(), 12);
    }

    /// An operation of the property test.
    #[derive(Debug, Clone, Copy)]
    enum Op {
        /// Id, instrument (an index into [`INSTRUMENTS`]), ask, price (times the price
        /// unit if the flag is set), size (times the size unit, or 2 if smaller).
        Insert(u64, usize, bool, (i64, bool), u64),
        Reduce(u64, u64),
        Remove(u64),
        RemoveInstrument(usize),
    }

    /// Price units of the property test: every price fits with 1; with 3, most small ones do
    /// not (and go to the spill).
    const PRICE_UNITS: [i64; 3] = [1, 3, 100_000];

    /// Instruments of the property test: some fit a slot, the others go to the spill.
    const INSTRUMENTS: [u32; 5] = [0, 1, MAX_SLOT_INSTRUMENT, MAX_SLOT_INSTRUMENT + 1, u32::MAX];

    fn op() -> impl Strategy<Value = Op> {
        // Ids mostly increasing and dense (relative to a moving cursor), sometimes far.
        let id = prop_oneof![
            8 => 0..200u64,
            1 => any::<u64>(),
        ];
        // Small prices (most not whole units of 3; the negative ones fit no unit), whole
        // units up to a slot's largest and one past it, and `i64` extremes.
        let price = prop_oneof![
            4 => (-5..5i64).prop_map(|p| (p, false)),
            4 => (0..5i64).prop_map(|p| (p, true)),
            1 => prop_oneof![
                Just((MAX_SLOT_PRICE as i64, true)),
                Just((MAX_SLOT_PRICE as i64 + 1, true)),
                Just((i64::MAX, false)),
                Just((i64::MIN, false)),
            ],
        ];
        let size = prop_oneof![
            1..4u64,
            Just(MAX_SLOT_SIZE),
            Just(MAX_SLOT_SIZE + 1),
            Just(1 << 33),
            1..1_000_000u64,
        ];
        let instrument = 0..INSTRUMENTS.len();
        prop_oneof![
            4 => (id.clone(), instrument.clone(), any::<bool>(), price, size)
                .prop_map(|(i, n, a, p, s)| Op::Insert(i, n, a, p, s)),
            2 => (id.clone(), 0..3u64).prop_map(|(i, s)| Op::Reduce(i, s)),
            2 => id.prop_map(Op::Remove),
            1 => instrument.prop_map(Op::RemoveInstrument),
        ]
    }

    proptest! {
        #[test]
        fn table_matches_a_btreemap_model(
            unit in prop_oneof![Just(1u64), Just(2), Just(100_000_000)],
            price_unit in proptest::sample::select(&PRICE_UNITS[..]),
            ops in proptest::collection::vec(op(), 1..2_000),
        ) {
            let mut t = OrderTable::new(unit, price_unit as u64);
            let mut model = BTreeMap::<u64, RestingOrder>::new();
            let mut cursor = 0u64;
            for op in ops {
                // Small ids are relative to a cursor that walks forward, as ITCH ids do.
                let id = |i: u64| if i < 200 { cursor.saturating_sub(100) + i } else { i };
                match op {
                    Op::Insert(i, instrument, ask, price, size) => {
                        let id = id(i);
                        cursor += 1;
                        let side = if ask { Side::Ask } else { Side::Bid };
                        let instrument = INSTRUMENTS[instrument];
                        let price = match price {
                            (units, true) => units * price_unit,
                            (price, false) => price,
                        };
                        let o = order(instrument, side, price, size * unit.min(2));
                        let fresh = !model.contains_key(&id);
                        prop_assert_eq!(t.insert(id, o), fresh);
                        if fresh {
                            model.insert(id, o);
                        }
                    }
                    Op::Reduce(i, s) => {
                        let id = id(i);
                        let s = s * unit.min(2);
                        let expected = match model.get_mut(&id) {
                            None => Err(ReduceError::Unknown),
                            Some(o) if o.size < s => Err(ReduceError::Overfill(o.size)),
                            Some(o) => {
                                let before = *o;
                                o.size -= s;
                                if o.size == 0 {
                                    model.remove(&id);
                                }
                                Ok(before)
                            }
                        };
                        prop_assert_eq!(t.reduce(id, s), expected);
                    }
                    Op::Remove(i) => {
                        let id = id(i);
                        prop_assert_eq!(t.remove(id), model.remove(&id));
                    }
                    Op::RemoveInstrument(n) => {
                        let n = INSTRUMENTS[n];
                        t.remove_instrument(n);
                        model.retain(|_, o| o.instrument != n);
                    }
                }
                prop_assert_eq!(t.len(), model.len());
            }
            for (&id, o) in &model {
                prop_assert_eq!(t.get(id), Some(*o));
            }
            prop_assert_eq!(t.slots.iter().filter(|s| s.is_live()).count(), t.in_window);
        }
    }
}
