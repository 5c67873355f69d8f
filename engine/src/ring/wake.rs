//! How a writer wakes subscribers whose threads parked waiting for it.
//!
//! Parking is opt-in per thread (the backoff and blocking idle strategies). A thread that
//! parks registers once with the [`WakeList`] of each ring it reads; before it parks it
//! announces itself in `sleepers`, looks for work once more, and only then parks. The writer,
//! after publishing, checks `sleepers` and unparks the registered threads only if it is not
//! zero. When no thread of a ring ever parks (`registered == 0`, the busy-spin and yielding
//! strategies), publishing costs one extra Relaxed load of a read-mostly line.

use std::sync::Mutex;
use std::thread::Thread;

use crate::sync::{AtomicUsize, Ordering, fence};

/// The threads that may park waiting for one ring's writer.
#[derive(Debug, Default)]
pub(crate) struct WakeList {
    /// Number of threads registered; zero means the writer never needs to look further.
    registered: AtomicUsize,
    /// Number of registered threads that are parked or about to park.
    sleepers: AtomicUsize,
    threads: Mutex<Vec<Thread>>,
}

impl WakeList {
    /// Registers `thread` to be unparked when the writer publishes while it sleeps.
    pub(crate) fn register(&self, thread: Thread) {
        let mut threads = self
            .threads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !threads.iter().any(|t| t.id() == thread.id()) {
            threads.push(thread);
            self.registered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Announces that the calling thread is about to park. The caller must look for work
    /// once more after this and before parking, then call [`end_sleep`](Self::end_sleep).
    pub(crate) fn begin_sleep(&self) {
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        // SeqCst fence pairs with the one in `notify_if_sleeping`: either the writer sees
        // our `sleepers` increment and unparks us, or our look for work after this fence sees
        // the cursor it stored before its fence (the store-load "Dekker" pattern). Thread
        // park tokens make an unpark that comes before the park still count.
        fence(Ordering::SeqCst);
    }

    /// Undoes [`begin_sleep`](Self::begin_sleep).
    pub(crate) fn end_sleep(&self) {
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
    }

    /// Called by the writer after every publish.
    #[inline(always)]
    pub(crate) fn notify_if_sleeping(&self) {
        if self.registered.load(Ordering::Relaxed) != 0 {
            // SeqCst fence pairs with the one in `begin_sleep` (see there).
            fence(Ordering::SeqCst);
            if self.sleepers.load(Ordering::Relaxed) != 0 {
                self.notify_all();
            }
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
