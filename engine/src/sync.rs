//! The synchronisation primitives the ring is built on, behind one shim.
//!
//! Under `--cfg loom` they are loom's model-checked versions, so `tests/loom.rs` explores
//! every interleaving of the ring's protocol; otherwise they are `std`'s. Only the ring's
//! protocol (cursor, consumer sequences, slots) goes through here: code that never runs under
//! loom (the agent runner, the wake list) uses `std` directly.

#[cfg(loom)]
pub(crate) use loom::sync::Arc;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};

#[cfg(not(loom))]
pub(crate) use std::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};

/// A cell whose contents are shared between the writer and the readers of one slot.
///
/// The API is loom's (`with` / `with_mut` hand out raw pointers), so that loom can check
/// every access against the happens-before order the ring's atomics establish.
#[derive(Debug)]
#[cfg_attr(not(loom), repr(transparent))] // `Claim::as_mut_slices` relies on it
pub(crate) struct SlotCell<T>(
    #[cfg(loom)] loom::cell::UnsafeCell<T>,
    #[cfg(not(loom))] core::cell::UnsafeCell<T>,
);

impl<T> SlotCell<T> {
    pub(crate) fn new(value: T) -> Self {
        #[cfg(loom)]
        return Self(loom::cell::UnsafeCell::new(value));
        #[cfg(not(loom))]
        Self(core::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a shared pointer to the contents.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        #[cfg(loom)]
        return self.0.with(f);
        #[cfg(not(loom))]
        f(self.0.get())
    }

    /// Hints the CPU to fetch the slot's first cache line: no access to the contents (it
    /// reads nothing and cannot race), and nothing under loom.
    #[inline(always)]
    pub(crate) fn prefetch(&self) {
        #[cfg(all(not(loom), target_arch = "x86_64"))]
        // SAFETY: a prefetch is only a hint: it never faults and reads or writes no memory
        // the program can observe, so it races with nothing. `_mm_prefetch` needs SSE, which
        // is in every x86_64 target's baseline features.
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(self.0.get().cast_const().cast());
        }
    }

    /// Runs `f` with an exclusive pointer to the contents.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        #[cfg(loom)]
        return self.0.with_mut(f);
        #[cfg(not(loom))]
        f(self.0.get())
    }
}
