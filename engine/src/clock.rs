//! Time, injected: core logic takes a [`Clock`] (or timestamps as arguments), so a replay
//! runs against the recorded times and gives the same results twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of timestamps in ns since the Unix epoch.
pub trait Clock: Send + Sync {
    /// Now, in ns since the Unix epoch.
    fn now_ns(&self) -> u64;
}

/// The system's real-time clock (`clock_gettime(CLOCK_REALTIME)`, served from the vDSO on
/// Linux: tens of ns, no syscall).
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock;

impl Clock for WallClock {
    #[inline]
    fn now_ns(&self) -> u64 {
        wall_ns()
    }
}

/// Now, in ns since the Unix epoch (0 if the system clock is before 1970).
#[inline]
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A clock that says what it is told: for tests and for replays driven by event time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock at `ns`.
    pub fn new(ns: u64) -> Self {
        Self(Arc::new(AtomicU64::new(ns)))
    }

    /// Sets the time.
    pub fn set(&self, ns: u64) {
        // Relaxed: the clock value is the only data, and readers only need some recent one.
        self.0.store(ns, Ordering::Relaxed);
    }

    /// Moves the time forward by `ns`.
    pub fn advance(&self, ns: u64) {
        self.0.fetch_add(ns, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
