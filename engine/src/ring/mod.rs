//! The single-writer ring: a preallocated, power-of-two array of slots, one [`Publisher`]
//! that claims and publishes sequences, and any number of [`Subscriber`]s that read the
//! published slots in place, by reference, in order.
//!
//! This is the LMAX Disruptor's design reduced to its single-producer case:
//!
//! * The writer owns the **cursor**: the count of events published. It writes a slot, then
//!   stores the cursor with `Release`; a subscriber loads it with `Acquire` and may then read
//!   every slot below it.
//! * Every subscriber owns a **sequence**: the count of events it has finished with, stored
//!   once per batch with `Release`. A subscriber may depend on others (a **barrier**): it
//!   reads only what all of them have finished, which gives pipelines and diamonds.
//! * The writer is **gated** by the subscribers nobody else depends on (the slowest of which
//!   bounds everyone upstream of it). It never laps them: it writes sequence `s` only when
//!   every gating sequence is above `s - capacity`. It caches the minimum, so the gating
//!   sequences are read only when the cached value says the ring may be full.
//!
//! Sequences are `u64` counts, not indices: slot `s & mask` holds sequence `s`, and a `u64`
//! does not wrap in the lifetime of a process (2^64 ns is 584 years, let alone events).
//!
//! The single writer is in the types: [`Publisher`] is `Send` but neither `Sync` nor
//! `Clone`, and claiming takes `&mut self`. A [`Subscriber`] likewise.
//!
//! ```
//! use tickwire_engine::ring::RingBuilder;
//!
//! let mut builder = RingBuilder::<u64>::new(8).expect("power of two");
//! let mut first = builder.subscriber("first");
//! let mut second = builder.subscriber_after("second", &[&first]);
//! let mut publisher = builder.build().expect("has subscribers");
//!
//! for value in 0..5 {
//!     publisher.try_publish(|slot| *slot = value).expect("ring has room");
//! }
//! let mut seen = Vec::new();
//! first.poll(|value, _sequence, _end_of_batch| seen.push(*value));
//! second.poll(|value, _sequence, _end_of_batch| seen.push(*value * 10));
//! assert_eq!(seen, [0, 1, 2, 3, 4, 0, 10, 20, 30, 40]);
//! ```

mod wake;

use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;

use crossbeam_utils::CachePadded;

use crate::idle::{IdleStep, IdleStrategy, Idler};
use crate::sync::{Arc, AtomicBool, AtomicU64, AtomicUsize, Ordering, SlotCell};
pub(crate) use wake::WakeList;

/// A sequence counter on a cache line of its own, so that the writer's cursor and each
/// subscriber's progress never share a line (false sharing would make every store of one
/// invalidate the others' caches).
type Sequence = CachePadded<AtomicU64>;

/// Why a ring could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// The capacity was zero or not a power of two.
    #[error("ring capacity must be a power of two and at least 1, got {0}")]
    Capacity(usize),
    /// `build` was called before any subscriber was added: nothing would gate the writer.
    #[error("ring has no subscribers: nothing would gate the writer")]
    NoSubscribers,
    /// The memory for the slots could not be allocated.
    #[error("cannot allocate a ring of {capacity} slots ({bytes} bytes)")]
    Allocation {
        /// The capacity asked for.
        capacity: usize,
        /// The bytes its slots take.
        bytes: usize,
    },
}

/// Why a claim could not be granted now. Small and `Copy`: this is the hot path's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// The ring has no room for the requested slots until the slowest gating subscriber
    /// moves on. `free` slots are free now.
    #[error("ring full: {free} slots free")]
    Full {
        /// Slots that could be claimed now.
        free: u64,
    },
    /// More slots were asked for than the ring holds.
    #[error("claim larger than the ring's capacity")]
    TooLarge,
    /// A subscriber was dropped before it finished (its thread panicked or it was abandoned):
    /// the writer would wait for it forever, so the ring refuses to wait.
    #[error("ring halted: a subscriber stopped before the end of the stream")]
    Halted,
}

/// State shared by the writer and every subscriber of one ring.
struct Shared<T> {
    /// Count of events published. Written only by the [`Publisher`].
    cursor: Sequence,
    slots: Box<[SlotCell<T>]>,
    mask: u64,
    /// Threads registered with `wake` (see `Subscriber::register_parker`); only grows.
    /// Here, beside `slots` and `mask`, which the writer reads on every publish anyway, its
    /// "does anyone need waking?" check is one load from a line it already holds, at a
    /// fixed offset from `Shared`: it was two dependent loads through `wake`'s `Arc`, about
    /// one cycle of a ~5-cycle publish. Not on the cursor's line: there, with readers that
    /// park, the writer's load and fence fought the readers for the line, and backoff
    /// readers ran at half speed.
    parkers: AtomicUsize,
    /// Set when the publisher is dropped: the cursor is final.
    closed: AtomicBool,
    /// Set when a subscriber is dropped before draining: nobody may wait on the ring.
    halted: AtomicBool,
    /// Threads parked waiting for this ring's writer.
    wake: Arc<WakeList>,
}

impl<T> Shared<T> {
    #[inline(always)]
    fn capacity(&self) -> u64 {
        self.mask + 1
    }

    /// The slot that holds `sequence`.
    #[inline(always)]
    fn slot(&self, sequence: u64) -> &SlotCell<T> {
        let index = (sequence & self.mask) as usize;
        debug_assert!(index < self.slots.len());
        // SAFETY: `slots.len() == mask + 1` (both set in `with_factory`, never changed), so
        // a masked index is in bounds. The compiler cannot see that, and the hot paths are
        // a handful of instructions: the check would be a fifth of them.
        unsafe { self.slots.get_unchecked(index) }
    }
}

// SAFETY: `Shared` hands out `&T` to subscribers on other threads (so `T: Sync`) and lets the
// publisher on another thread write `T` (so `T: Send`). The ring's protocol (cursor and
// sequences, see the module docs) guarantees a slot is never written while it is read.
unsafe impl<T: Send + Sync> Sync for Shared<T> {}
// SAFETY: moving `Shared` moves the `T`s it owns; that is sound when `T: Send`.
unsafe impl<T: Send> Send for Shared<T> {}

/// Builds a ring: add subscribers (with their dependencies), then [`build`](Self::build) the
/// single [`Publisher`].
pub struct RingBuilder<T> {
    shared: Arc<Shared<T>>,
    /// Each subscriber's sequence, its wake list, and whether another subscriber depends
    /// on it.
    subscribers: Vec<(Arc<Sequence>, Arc<WakeList>, bool)>,
    /// Each subscriber's name, in the order of `subscribers` (for [`RingMonitor`]).
    names: Vec<Box<str>>,
}

impl<T> fmt::Debug for RingBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingBuilder")
            .field("capacity", &self.shared.capacity())
            .field("subscribers", &self.subscribers.len())
            .finish()
    }
}

impl<T: Default> RingBuilder<T> {
    /// A ring of `capacity` slots (a power of two), each preallocated with `T::default()`.
    pub fn new(capacity: usize) -> Result<Self, RingError> {
        Self::with_factory(capacity, T::default)
    }
}

impl<T> RingBuilder<T> {
    /// A ring of `capacity` slots (a power of two), each preallocated by `factory`.
    pub fn with_factory(
        capacity: usize,
        mut factory: impl FnMut() -> T,
    ) -> Result<Self, RingError> {
        if capacity == 0 || !capacity.is_power_of_two() {
            return Err(RingError::Capacity(capacity));
        }
        // Reserved first so that a capacity too large for the machine is an error, not an
        // abort of the process.
        let mut slots = Vec::new();
        slots
            .try_reserve_exact(capacity)
            .map_err(|_| RingError::Allocation {
                capacity,
                bytes: capacity.saturating_mul(std::mem::size_of::<SlotCell<T>>()),
            })?;
        slots.extend((0..capacity).map(|_| SlotCell::new(factory())));
        let slots = slots.into_boxed_slice();
        Ok(Self {
            shared: Arc::new(Shared {
                cursor: CachePadded::new(AtomicU64::new(0)),
                slots,
                mask: capacity as u64 - 1,
                parkers: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                halted: AtomicBool::new(false),
                wake: Arc::new(WakeList::default()),
            }),
            subscribers: Vec::new(),
            names: Vec::new(),
        })
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.shared.slots.len()
    }

    /// A subscriber that reads everything the writer publishes.
    pub fn subscriber(&mut self, name: &str) -> Subscriber<T> {
        self.subscriber_after(name, &[])
    }

    /// A subscriber that reads an event only after every one of `upstream` has finished with
    /// it: `a -> b` is a pipeline, `a, b -> c` a diamond. The upstream subscribers must come
    /// from this builder.
    ///
    /// # Panics
    ///
    /// If an upstream subscriber belongs to another ring: that is a wiring bug, not a
    /// run-time condition.
    pub fn subscriber_after(&mut self, name: &str, upstream: &[&Subscriber<T>]) -> Subscriber<T> {
        let waits_on: Box<[Arc<WakeList>]> = if upstream.is_empty() {
            Box::new([Arc::clone(&self.shared.wake)])
        } else {
            upstream.iter().map(|up| Arc::clone(&up.wake)).collect()
        };
        let barrier: Box<[Arc<Sequence>]> = upstream
            .iter()
            .map(|up| {
                assert!(
                    Arc::ptr_eq(&up.shared, &self.shared),
                    "subscriber `{name}` depends on `{}`, which belongs to another ring",
                    up.name
                );
                for (sequence, _, depended_on) in &mut self.subscribers {
                    if Arc::ptr_eq(sequence, &up.sequence) {
                        *depended_on = true;
                    }
                }
                Arc::clone(&up.sequence)
            })
            .collect();
        let sequence = Arc::new(CachePadded::new(AtomicU64::new(0)));
        let wake = Arc::new(WakeList::default());
        self.subscribers
            .push((Arc::clone(&sequence), Arc::clone(&wake), false));
        self.names.push(name.into());
        Subscriber {
            shared: Arc::clone(&self.shared),
            sequence,
            barrier,
            wake,
            waits_on,
            next: 0,
            name: name.into(),
            _not_sync: PhantomData,
        }
    }

    /// A read-only view of the ring for metrics: the writer's cursor and the sequence of
    /// every subscriber added so far. Take it after the last subscriber, before
    /// [`build`](Self::build).
    pub fn monitor(&self, name: &str) -> RingMonitor<T> {
        RingMonitor {
            name: name.into(),
            shared: Arc::clone(&self.shared),
            subscribers: self
                .names
                .iter()
                .zip(&self.subscribers)
                .map(|(name, (sequence, _, _))| (name.clone(), Arc::clone(sequence)))
                .collect(),
        }
    }

    /// The single writer. It is gated by the subscribers that no other subscriber depends
    /// on; since each of those trails everything upstream of it, that bounds them all.
    pub fn build(self) -> Result<Publisher<T>, RingError> {
        if self.subscribers.is_empty() {
            return Err(RingError::NoSubscribers);
        }
        let (gating, gating_wakes): (Vec<_>, Vec<_>) = self
            .subscribers
            .into_iter()
            .filter(|(_, _, depended_on)| !depended_on)
            .map(|(sequence, wake, _)| (sequence, wake))
            .unzip();
        Ok(Publisher {
            limit: self.shared.capacity(),
            wake: Arc::clone(&self.shared.wake),
            shared: self.shared,
            next: 0,
            gating: gating.into(),
            gating_wakes: gating_wakes.into(),
            parks_on: None,
            idle: Idler::new(IdleStrategy::WRITER_DEFAULT),
            _not_sync: PhantomData,
        })
    }
}

/// The ring's single writer. `Send`, not `Sync`, not `Clone`: there is exactly one.
///
/// Aligned to its own cache lines (see [`Subscriber`]).
#[repr(align(128))]
pub struct Publisher<T> {
    shared: Arc<Shared<T>>,
    /// Next sequence to claim; equals the cursor whenever no claim is open.
    next: u64,
    /// The first sequence the writer may not claim yet: the cached minimum of the gating
    /// sequences (a lower bound of the real one) plus the capacity. The Disruptor's
    /// `sequence_clear_of_consumers`: one compare per publish while the ring has room.
    limit: u64,
    /// The ring's wake list (a copy of `shared.wake`, one load nearer); looked at only once
    /// `shared.parkers` says a reader may park.
    wake: Arc<WakeList>,
    gating: Box<[Arc<Sequence>]>,
    /// The gating subscribers' wake lists: a writer parked waiting for room is woken by the
    /// subscriber that frees it.
    gating_wakes: Box<[Arc<WakeList>]>,
    /// The thread registered with `gating_wakes`, once the writer first parked.
    parks_on: Option<std::thread::ThreadId>,
    /// How [`claim`](Self::claim) waits for room.
    idle: Idler,
    _not_sync: PhantomData<Cell<()>>,
}

impl<T> fmt::Debug for Publisher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("capacity", &self.shared.capacity())
            .field("published", &self.next)
            .field("gating", &self.gating.len())
            .finish()
    }
}

impl<T> Publisher<T> {
    /// Sets how [`claim`](Self::claim) and [`publish`](Self::publish) wait when the ring is
    /// full. The default spins briefly, then yields, then parks in growing steps, so a full
    /// ring never burns a core the subscribers need.
    pub fn set_idle_strategy(&mut self, strategy: IdleStrategy) {
        self.idle = Idler::new(strategy);
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.shared.slots.len()
    }

    /// Count of events published so far (the next sequence).
    pub fn published(&self) -> u64 {
        self.next
    }

    /// The sequence of the slowest gating subscriber, read now.
    pub fn min_gating(&self) -> u64 {
        // Acquire pairs with the Release store of each subscriber's sequence at the end of
        // its batch (`Subscriber::finish_batch`): once we see a subscriber past a slot, its
        // reads of that slot happened before, and we may overwrite it.
        self.gating
            .iter()
            .map(|sequence| sequence.load(Ordering::Acquire))
            .min()
            .unwrap_or(self.next)
    }

    /// Whether a subscriber stopped before the end of the stream.
    pub fn is_halted(&self) -> bool {
        // Acquire pairs with the Release store in `Subscriber::drop`.
        self.shared.halted.load(Ordering::Acquire)
    }

    /// Claims `n` consecutive slots without waiting.
    #[inline]
    pub fn try_claim(&mut self, n: usize) -> Result<Claim<'_, T>, ClaimError> {
        let n = n as u64;
        let end = self.next + n;
        if end > self.limit {
            if n > self.shared.capacity() {
                return Err(ClaimError::TooLarge);
            }
            self.refresh_limit();
            if end > self.limit {
                if self.is_halted() {
                    return Err(ClaimError::Halted);
                }
                return Err(ClaimError::Full {
                    free: self.limit - self.next,
                });
            }
        }
        Ok(Claim {
            start: self.next,
            len: n,
            publisher: self,
        })
    }

    /// Claims up to `max` consecutive slots without waiting: as many as are free now, at
    /// least one. Feeds decode into such a claim and commit what they wrote.
    #[inline]
    pub fn try_claim_up_to(&mut self, max: usize) -> Result<Claim<'_, T>, ClaimError> {
        let max = (max as u64).min(self.shared.capacity());
        let mut free = self.limit - self.next;
        if free < max {
            self.refresh_limit();
            free = self.limit - self.next;
            if free == 0 {
                if self.is_halted() {
                    return Err(ClaimError::Halted);
                }
                return Err(ClaimError::Full { free: 0 });
            }
        }
        Ok(Claim {
            start: self.next,
            len: free.min(max),
            publisher: self,
        })
    }

    /// Claims `n` consecutive slots, waiting with the publisher's idle strategy while the
    /// ring is full. Fails only if the ring is halted or `n` exceeds the capacity.
    #[inline]
    pub fn claim(&mut self, n: usize) -> Result<Claim<'_, T>, ClaimError> {
        if self.next + n as u64 > self.limit {
            self.wait_for_room(n)?;
        }
        self.try_claim(n)
    }

    fn wait_for_room(&mut self, n: usize) -> Result<(), ClaimError> {
        let n = n as u64;
        if n > self.shared.capacity() {
            return Err(ClaimError::TooLarge);
        }
        let end = self.next + n;
        self.idle.reset();
        while end > self.limit {
            self.refresh_limit();
            if end <= self.limit {
                break;
            }
            if self.is_halted() {
                return Err(ClaimError::Halted);
            }
            match self.idle.step() {
                IdleStep::Retry => {}
                IdleStep::Spin => core::hint::spin_loop(),
                IdleStep::Yield => std::thread::yield_now(),
                IdleStep::Park(duration) => self.park_for_room(end, duration),
                IdleStep::Sleep(duration) => std::thread::sleep(duration),
            }
        }
        Ok(())
    }

    /// Parks until a gating subscriber frees room (it unparks us at the end of its batch),
    /// or `duration` passes (capped at 1 ms: the safety net for a subscriber that checked
    /// for sleepers before this thread first registered).
    #[cold]
    fn park_for_room(&mut self, end: u64, duration: core::time::Duration) {
        let me = std::thread::current();
        if self.parks_on != Some(me.id()) {
            for list in &self.gating_wakes {
                let _ = list.register(me.clone());
            }
            self.parks_on = Some(me.id());
        }
        for list in &self.gating_wakes {
            list.begin_sleep();
        }
        // The last look after announcing the sleep (see `WakeList::begin_sleep`).
        self.refresh_limit();
        if end > self.limit && !self.is_halted() {
            std::thread::park_timeout(duration.min(core::time::Duration::from_millis(1)));
        }
    }

    /// Writes one event with `write` and publishes it, waiting while the ring is full.
    /// Returns its sequence.
    #[inline]
    pub fn publish(&mut self, write: impl FnOnce(&mut T)) -> Result<u64, ClaimError> {
        if self.next >= self.limit {
            self.wait_for_room(1)?;
        }
        self.write_and_commit_one(write);
        Ok(self.next - 1)
    }

    /// Writes one event with `write` and publishes it, if there is room now.
    #[inline]
    pub fn try_publish(&mut self, write: impl FnOnce(&mut T)) -> Result<u64, ClaimError> {
        if self.next >= self.limit {
            self.refresh_limit();
            if self.next >= self.limit {
                if self.is_halted() {
                    return Err(ClaimError::Halted);
                }
                return Err(ClaimError::Full { free: 0 });
            }
        }
        self.write_and_commit_one(write);
        Ok(self.next - 1)
    }

    /// The caller has checked that slot `self.next` is free.
    #[inline(always)]
    fn write_and_commit_one(&mut self, write: impl FnOnce(&mut T)) {
        let sequence = self.next;
        self.shared.slot(sequence).with_mut(|slot| {
            // SAFETY: `sequence < limit` (checked by the caller), so every gating
            // subscriber has finished with the event this slot held `capacity` sequences
            // ago, and no subscriber reads `sequence` before the cursor passes it below. We
            // are the only writer (`&mut self`). So nobody else accesses the slot now.
            write(unsafe { &mut *slot })
        });
        self.commit_to(sequence + 1);
    }

    /// Publishes every slot below `end`.
    #[inline(always)]
    fn commit_to(&mut self, end: u64) {
        self.next = end;
        // Release pairs with the Acquire load of the cursor in `Subscriber::available`: a
        // subscriber that sees the new cursor also sees the slots written before it.
        self.shared.cursor.store(end, Ordering::Release);
        // Non-zero only once a reader of the cursor registered to park (see
        // `WakeList::notify_if_sleeping` for the protocol).
        if self.shared.parkers.load(Ordering::Relaxed) != 0 {
            self.wake.notify_registered();
        }
    }

    /// Reads the gating sequences again: the writer may claim below the new limit.
    #[inline]
    fn refresh_limit(&mut self) {
        self.limit = self.min_gating() + self.shared.capacity();
    }
}

impl<T> Drop for Publisher<T> {
    fn drop(&mut self) {
        // Release pairs with the Acquire load in `Subscriber::is_drained`: a subscriber that
        // sees `closed` sees the final cursor.
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_all();
    }
}

/// Slots claimed by the [`Publisher`], written in place, then published together by
/// [`commit`](Self::commit). Dropping a claim without committing publishes nothing.
pub struct Claim<'a, T> {
    publisher: &'a mut Publisher<T>,
    start: u64,
    len: u64,
}

impl<T> fmt::Debug for Claim<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claim")
            .field("start", &self.start)
            .field("len", &self.len)
            .finish()
    }
}

impl<T> Claim<'_, T> {
    /// Number of slots claimed.
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the claim holds no slot.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sequence of the first claimed slot.
    #[inline]
    pub fn first_sequence(&self) -> u64 {
        self.start
    }

    /// The `index`th claimed slot, to write in place. It holds whatever the slot held before
    /// (an old event, or the factory's value): overwrite every field you publish.
    ///
    /// # Panics
    ///
    /// If `index >= self.len()`.
    #[inline]
    pub fn slot_mut(&mut self, index: usize) -> &mut T {
        assert!(
            (index as u64) < self.len,
            "claim index {index} out of {}",
            self.len
        );
        let sequence = self.start + index as u64;
        self.publisher.shared.slot(sequence).with_mut(|slot| {
            // SAFETY: the claim covers `sequence` (asserted above), which `try_claim` checked
            // is free of gating subscribers and is not yet published; `&mut self` makes this
            // the only reference to it until the next call.
            unsafe { &mut *slot }
        })
    }

    /// The claimed slots as (at most) two slices, in sequence order: the second is empty
    /// unless the claim wraps around the end of the ring. Writing through slices costs no
    /// index check per slot, unlike [`slot_mut`](Self::slot_mut). Like it, the slots hold
    /// whatever they held before: overwrite every field you publish.
    #[cfg(not(loom))] // loom's cells hand out one checked pointer at a time, never slices
    #[inline]
    pub fn as_mut_slices(&mut self) -> (&mut [T], &mut [T]) {
        let shared = &*self.publisher.shared;
        let index = (self.start & shared.mask) as usize;
        let len = self.len as usize;
        let first = len.min(shared.slots.len() - index);
        let base = shared.slots.as_ptr();
        // SAFETY: `SlotCell<T>` is `repr(transparent)` over `UnsafeCell<T>`, which has the
        // layout of `T`, so the cells from `index` are `T`s laid out as a slice, and
        // `UnsafeCell` permits writing through a pointer derived from a shared reference.
        // `index + first <= slots.len()` and `len - first <= index` (the claim is at most
        // the capacity), so both ranges are in bounds and do not overlap. The claim covers
        // exactly these sequences, which `try_claim` checked are free of gating
        // subscribers and unpublished, and `&mut self` makes these the only references to
        // them until the borrow ends.
        unsafe {
            (
                core::slice::from_raw_parts_mut(base.add(index) as *mut T, first),
                core::slice::from_raw_parts_mut(base as *mut T, len - first),
            )
        }
    }

    /// Publishes every claimed slot.
    #[inline]
    pub fn commit(self) {
        let end = self.start + self.len;
        self.publisher.commit_to(end);
    }

    /// Publishes the first `count` claimed slots and releases the rest unpublished.
    ///
    /// # Panics
    ///
    /// If `count > self.len()`.
    #[inline]
    pub fn commit_first(self, count: usize) {
        assert!(
            count as u64 <= self.len,
            "commit of {count} out of {}",
            self.len
        );
        if count > 0 {
            let end = self.start + count as u64;
            self.publisher.commit_to(end);
        }
    }
}

/// A read-only view of one ring from any thread (metrics, status lines): how far the writer
/// and each subscriber are. Every read is a Relaxed load of a counter the ring keeps anyway;
/// watching a ring costs it nothing.
#[derive(Clone)]
pub struct RingMonitor<T> {
    name: Box<str>,
    shared: Arc<Shared<T>>,
    subscribers: Box<[(Box<str>, Arc<Sequence>)]>,
}

impl<T> fmt::Debug for RingMonitor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingMonitor")
            .field("name", &self.name)
            .field("published", &self.published())
            .field("subscribers", &self.subscribers.len())
            .finish()
    }
}

impl<T> RingMonitor<T> {
    /// The ring's name, as given to [`RingBuilder::monitor`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.shared.slots.len()
    }

    /// Count of events published so far.
    pub fn published(&self) -> u64 {
        self.shared.cursor.load(Ordering::Relaxed)
    }

    /// Each subscriber's name and lag (events published that it has not finished), read
    /// now. The cursor is read first, so a lag is never negative and never overstated by
    /// more than what was published while reading.
    pub fn lags(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        let published = self.published();
        self.subscribers.iter().map(move |(name, sequence)| {
            (
                &**name,
                published.saturating_sub(sequence.load(Ordering::Relaxed)),
            )
        })
    }
}

/// One reader of the ring. It reads published events in place, in sequence order, in
/// batches, and tells the writer (and its downstream subscribers) once per batch how far it
/// got. `Send`, not `Sync`, not `Clone`.
///
/// Dropping a subscriber before the stream ends halts the ring (see [`ClaimError::Halted`]),
/// so a consumer that died never leaves the writer waiting forever.
///
/// Aligned to its own cache lines (128 bytes, the pair the x86 prefetcher fetches
/// together), as is the [`Publisher`]: each writes its position (`next`) on every batch, and
/// wherever the agent holding it is allocated, no other thread's data shares those lines.
#[repr(align(128))]
pub struct Subscriber<T> {
    shared: Arc<Shared<T>>,
    /// Count of events this subscriber has finished with; read by the writer and downstream.
    sequence: Arc<Sequence>,
    /// Upstream subscribers' sequences; empty means "the writer's cursor".
    barrier: Box<[Arc<Sequence>]>,
    /// Threads of downstream subscribers parked waiting for this one to advance.
    wake: Arc<WakeList>,
    /// The wake lists this subscriber's thread parks on: the writer's, or its upstream
    /// subscribers'.
    waits_on: Box<[Arc<WakeList>]>,
    /// Local copy of `sequence` (only we write it).
    next: u64,
    name: Box<str>,
    _not_sync: PhantomData<Cell<()>>,
}

impl<T> fmt::Debug for Subscriber<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("name", &self.name)
            .field("next", &self.next)
            .field("upstream", &self.barrier.len())
            .finish()
    }
}

impl<T> Subscriber<T> {
    /// The name given at creation, for diagnostics.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Count of events this subscriber has finished with (its next sequence).
    pub fn sequence(&self) -> u64 {
        self.next
    }

    /// Events published but not yet finished by this subscriber.
    pub fn lag(&self) -> u64 {
        self.shared
            .cursor
            .load(Ordering::Relaxed)
            .saturating_sub(self.next)
    }

    /// The count of events this subscriber may read: the writer's cursor, or the minimum of
    /// its upstream subscribers' sequences.
    #[inline]
    pub fn available(&self) -> u64 {
        if self.barrier.is_empty() {
            // Acquire pairs with the Release store in `Publisher::commit_to`.
            self.shared.cursor.load(Ordering::Acquire)
        } else {
            // Acquire pairs with the Release store in `Subscriber::finish_batch` of each
            // upstream subscriber: what they finished, the writer published (they read it
            // after their own Acquire of the cursor), and that is transitively visible here.
            self.barrier
                .iter()
                .map(|sequence| sequence.load(Ordering::Acquire))
                .min()
                .unwrap_or(0)
        }
    }

    /// Reads every available event, calling `handler(event, sequence, end_of_batch)` for
    /// each, then stores the sequence once. Returns how many it read.
    #[inline]
    pub fn poll(&mut self, handler: impl FnMut(&T, u64, bool)) -> usize {
        self.poll_up_to(usize::MAX, handler)
    }

    /// As [`poll`](Self::poll), reading at most `max` events.
    #[inline]
    pub fn poll_up_to(&mut self, max: usize, mut handler: impl FnMut(&T, u64, bool)) -> usize {
        let available = self.available();
        let end = available.min(self.next.saturating_add(max as u64));
        if end <= self.next {
            // Nothing yet: ask for the line of the next event now, so that when the writer
            // publishes, fetching it overlaps with fetching the cursor instead of following
            // it (1P-1C latency p50 at 100k events/s: ~160-180 ns without, ~130-150 ns with;
            // ~430 ns against ~360 ns when the two cores are far apart).
            self.shared.slot(self.next).prefetch();
            return 0;
        }
        let start = self.next;
        // Read the slice and mask once, outside the loop: `Shared` holds `UnsafeCell`s, so
        // without this the compiler may have to reload them after every handler call.
        let slots = &self.shared.slots[..];
        let mask = self.shared.mask;
        // The batch is at most two runs of consecutive slots (it may wrap once): walk each
        // as a slice, with no masking or bounds check per event.
        let mut sequence = start;
        while sequence < end {
            let index = (sequence & mask) as usize;
            let run = ((end - sequence) as usize).min(slots.len() - index);
            for cell in &slots[index..index + run] {
                cell.with(|slot| {
                    // SAFETY: `sequence < available`, so the writer published it (or every
                    // upstream subscriber finished it, which implies the same) and will not
                    // overwrite it until our sequence passes it, which happens only in
                    // `finish_batch` below. Readers only share `&T`.
                    handler(unsafe { &*slot }, sequence, sequence + 1 == end)
                });
                sequence += 1;
            }
        }
        self.finish_batch(end);
        (end - start) as usize
    }

    /// Reads the event at this subscriber's next sequence without finishing it, if one is
    /// available. Bridges into code that wants to copy an event out and decide later.
    #[inline]
    pub fn peek(&self) -> Option<&T> {
        if self.next < self.available() {
            Some(self.shared.slot(self.next).with(|slot| {
                // SAFETY: as in `poll_up_to`: the event is published and the writer cannot
                // reuse its slot while our sequence is at or below it; `&self` keeps the
                // sequence from moving while the reference lives.
                unsafe { &*slot }
            }))
        } else {
            None
        }
    }

    /// Marks the event returned by [`peek`](Self::peek) as finished.
    ///
    /// # Panics
    ///
    /// If no event is available.
    #[inline]
    pub fn advance(&mut self) {
        assert!(
            self.next < self.available(),
            "advance past the available events"
        );
        let end = self.next + 1;
        self.finish_batch(end);
    }

    #[inline(always)]
    fn finish_batch(&mut self, end: u64) {
        self.next = end;
        // Release pairs with the Acquire loads in `Publisher::min_gating` (the writer may
        // now reuse these slots) and in downstream `Subscriber::available`.
        self.sequence.store(end, Ordering::Release);
        // Downstream subscribers wait on us, not on the writer: wake any that parked.
        self.wake.notify_if_sleeping();
    }

    /// Whether the writer is gone and this subscriber has read everything it published.
    pub fn is_drained(&self) -> bool {
        // Acquire pairs with the Release store in `Publisher::drop`; then the cursor we read
        // is final.
        self.shared.closed.load(Ordering::Acquire)
            && self.next == self.shared.cursor.load(Ordering::Acquire)
    }

    /// Whether this subscriber will never see another event: drained, or the ring halted
    /// and nothing more is available to it.
    pub fn is_finished(&self) -> bool {
        // Acquire pairs with the Release store of `halted` in `Subscriber::drop`.
        self.is_drained()
            || (self.shared.halted.load(Ordering::Acquire) && self.next >= self.available())
    }

    /// Registers `thread` (this subscriber's, which may park) with every wake list it
    /// waits on, and counts it in `Shared::parkers` when it waits for the writer.
    #[cfg_attr(loom, allow(dead_code))] // used by the agent runner, which loom builds leave out
    pub(crate) fn register_parker(&self, thread: &std::thread::Thread) {
        for list in self.waits_on.iter() {
            if list.register(thread.clone()) && Arc::ptr_eq(list, &self.shared.wake) {
                self.shared.parkers.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The wake lists a parked subscriber's thread registers with: the writer's when it
    /// reads the cursor, its upstream subscribers' when it depends on them. Whoever it waits
    /// for unparks it.
    #[cfg_attr(loom, allow(dead_code))] // used by the agent runner, which loom builds leave out
    pub(crate) fn wait_lists(&self) -> &[Arc<WakeList>] {
        &self.waits_on
    }
}

impl<T> Drop for Subscriber<T> {
    fn drop(&mut self) {
        if !self.is_drained() {
            // Release pairs with the Acquire load in `Publisher::is_halted`.
            self.shared.halted.store(true, Ordering::Release);
            self.shared.wake.notify_all();
        }
        // Downstream subscribers may be parked on us: let them see the end (or the halt).
        self.wake.notify_all();
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
