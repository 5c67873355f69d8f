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

    /// Runs `f` with an exclusive pointer to the contents.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        #[cfg(loom)]
        return self.0.with_mut(f);
        #[cfg(not(loom))]
        f(self.0.get())
    }
}
