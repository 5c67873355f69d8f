//! How a writer wakes subscribers whose threads parked waiting for it.
//!
//! Parking is opt-in per thread (the backoff and blocking idle strategies). A thread that
//! parks registers once with the [`WakeList`] of each ring it reads; before it parks it
//! marks itself asleep, looks for work once more, and only then parks. Whoever makes
//! progress others may wait for (the writer after publishing, a subscriber that others
//! depend on after finishing a batch) checks `sleepers` and, only if it is not zero, wakes
//! the threads marked asleep, clearing their marks: each sleep is woken once, so a writer
//! publishing into a ring whose readers are still waking up does not take the lock and
//! unpark them again on every publish. When no thread of a ring ever parks
//! (`registered == 0`, the busy-spin and yielding strategies), a check costs one Relaxed
//! load of a read-mostly line.

use std::sync::Mutex;
use std::thread::{Thread, ThreadId};

use crate::sync::{AtomicUsize, Ordering, fence};

/// A registered thread and whether it is (about to be) parked.
#[derive(Debug)]
struct Sleeper {
    thread: Thread,
    /// Marked by the thread before it parks, cleared by it after, or by a waker that
    /// unparked it (whichever comes first; both hold the list's lock).
    asleep: bool,
}

/// The threads that may park waiting for one ring's writer or subscribers.
#[derive(Debug, Default)]
pub(crate) struct WakeList {
    /// Number of threads registered; zero means no waker ever needs to look further.
    registered: AtomicUsize,
    /// Number of registered threads marked asleep. Changed only under `threads`' lock,
    /// read without it by wakers.
    sleepers: AtomicUsize,
    threads: Mutex<Vec<Sleeper>>,
}

impl WakeList {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Sleeper>> {
        // The list stays consistent if a holder panicked: every update is a single store.
        self.threads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers `thread` to be unparked when the writer publishes while it sleeps.
    pub(crate) fn register(&self, thread: Thread) {
        let mut threads = self.lock();
        if !threads.iter().any(|t| t.thread.id() == thread.id()) {
            threads.push(Sleeper {
                thread,
                asleep: false,
            });
            self.registered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Marks the calling thread asleep. The caller must look for work once more after
    /// this and before parking, then call [`end_sleep`](Self::end_sleep).
    pub(crate) fn begin_sleep(&self) {
        self.set_asleep(std::thread::current().id(), true);
        // SeqCst fence pairs with the one in `notify_if_sleeping`: either the waker sees
        // our `sleepers` increment and unparks us, or our look for work after this fence sees
        // the progress it stored before its fence (the store-load "Dekker" pattern). Thread
        // park tokens make an unpark that comes before the park still count.
        fence(Ordering::SeqCst);
    }

    /// Undoes [`begin_sleep`](Self::begin_sleep), unless a waker already did.
    pub(crate) fn end_sleep(&self) {
        self.set_asleep(std::thread::current().id(), false);
    }

    fn set_asleep(&self, id: ThreadId, asleep: bool) {
        let mut threads = self.lock();
        if let Some(sleeper) = threads.iter_mut().find(|t| t.thread.id() == id) {
            if sleeper.asleep != asleep {
                sleeper.asleep = asleep;
                if asleep {
                    self.sleepers.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.sleepers.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Called after making progress someone may be parked waiting for: by the writer after
    /// every publish, by a subscriber others depend on after every batch.
    #[inline(always)]
    pub(crate) fn notify_if_sleeping(&self) {
        if self.registered.load(Ordering::Relaxed) != 0 {
            // SeqCst fence pairs with the one in `begin_sleep` (see there).
            fence(Ordering::SeqCst);
            if self.sleepers.load(Ordering::Relaxed) != 0 {
                self.wake_sleepers();
            }
        }
    }

    /// Unparks the threads marked asleep and clears their marks.
    #[cold]
    fn wake_sleepers(&self) {
        let mut threads = self.lock();
        for sleeper in threads.iter_mut().filter(|t| t.asleep) {
            sleeper.asleep = false;
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
            sleeper.thread.unpark();
        }
    }

    /// Unparks every registered thread, asleep or not (the writer or a subscriber went
    /// away: everyone must look at the ring's state again).
    #[cold]
    pub(crate) fn notify_all(&self) {
        for sleeper in self.lock().iter() {
            sleeper.thread.unpark();
        }
    }
}
