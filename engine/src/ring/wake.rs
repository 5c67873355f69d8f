//! How a writer wakes subscribers whose threads parked waiting for it.
//!
//! Parking is opt-in per thread (the backoff and blocking idle strategies). A thread that
//! parks registers once with the [`WakeList`] of each ring it reads; before it parks it
//! raises `signal`, looks for work once more, and only then parks. The writer, after
//! publishing, takes the flag down and unparks the registered threads only if it was up:
//! one wake-up per sleep, however many events are published while the woken thread waits
//! for a core (the Disruptor's `LiteBlockingWaitStrategy` idea; signalling on every publish
//! while anyone sleeps cost a lock and an unpark per event and made a 5-thread stress run on
//! 2 cores ten times slower). When no thread of a ring ever parks (the busy-spin and
//! yielding strategies), publishing costs one extra Relaxed load: the ring keeps the
//! count of registered readers beside its slots' address, on a line the writer reads on
//! every publish anyway (a subscriber waking downstream ones reads `registered`).

use std::sync::Mutex;
use std::thread::Thread;

use crate::sync::{AtomicBool, AtomicUsize, Ordering, fence};

/// The threads that may park waiting for one ring's writer.
///
/// Aligned to its own cache lines (128 bytes: the pair the x86 prefetcher fetches
/// together): the writer reads `registered` after every publish, and a neighbouring
/// allocation written by another thread on every event would make each of those reads a
/// cache miss.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct WakeList {
    /// Number of threads registered; zero means the writer never needs to look further.
    registered: AtomicUsize,
    /// Raised by a thread about to park; taken down by the writer when it wakes them.
    signal: AtomicBool,
    threads: Mutex<Vec<Thread>>,
}

impl WakeList {
    /// Registers `thread` to be unparked when the writer publishes while it sleeps. Returns
    /// whether it was new to the list.
    pub(crate) fn register(&self, thread: Thread) -> bool {
        let mut threads = self
            .threads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if threads.iter().any(|t| t.id() == thread.id()) {
            return false;
        }
        threads.push(thread);
        self.registered.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Announces that the calling thread is about to park. The caller must look for work
    /// once more after this and before parking.
    pub(crate) fn begin_sleep(&self) {
        self.signal.store(true, Ordering::Relaxed);
        // SeqCst fence pairs with the one in `notify_if_sleeping`: either the writer sees
        // our `signal` and unparks us, or our look for work after this fence sees the cursor
        // it stored before its fence (the store-load "Dekker" pattern). Thread park tokens
        // make an unpark that comes before the park still count.
        fence(Ordering::SeqCst);
    }

    /// Called by the writer after every publish (a subscriber after every batch).
    #[inline(always)]
    pub(crate) fn notify_if_sleeping(&self) {
        if self.registered.load(Ordering::Relaxed) != 0 {
            self.notify_registered();
        }
    }

    /// As [`notify_if_sleeping`](Self::notify_if_sleeping), for a writer that already knows
    /// a thread registered (the ring keeps that count beside its slots' address).
    #[inline(always)]
    pub(crate) fn notify_registered(&self) {
        // SeqCst fence pairs with the one in `begin_sleep` (see there).
        fence(Ordering::SeqCst);
        // The load filters the common case without a write to the shared line; the swap
        // makes sure one wake-up serves one raise of the flag.
        if self.signal.load(Ordering::Relaxed) && self.signal.swap(false, Ordering::Relaxed) {
            self.notify_all();
        }
    }

    /// Unparks every registered thread.
    #[cold]
    pub(crate) fn notify_all(&self) {
        let threads = self
            .threads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for thread in threads.iter() {
            thread.unpark();
        }
    }
}
