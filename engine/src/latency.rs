//! Latency per hop, into HdrHistograms, without a lock on the hot path.
//!
//! Each hop (receive -> strategy, strategy -> execution, ...) has one shared [`HopLatency`].
//! The thread that measures it owns a [`LatencyRecorder`]: it records into a private
//! histogram and merges into the shared one at most every 50 ms (one uncontended lock). A
//! reporter takes the interval histogram once a second and keeps the total.
//!
//! ```
//! use std::sync::Arc;
//! use tickwire_engine::latency::{HopLatency, LatencyRecorder};
//!
//! let hop = Arc::new(HopLatency::new("receive->strategy"));
//! let mut recorder = LatencyRecorder::new(Arc::clone(&hop));
//! for ns in [800, 1_000, 1_200] {
//!     recorder.record(ns);
//! }
//! recorder.flush();
//! let interval = hop.take_interval();
//! assert_eq!(interval.len(), 3);
//! assert!(interval.value_at_quantile(0.5) >= 990 && interval.value_at_quantile(0.5) <= 1_010);
//! ```

use std::sync::{Arc, Mutex, MutexGuard};

use hdrhistogram::Histogram;

/// Highest latency recorded exactly, ns (60 s); larger values are clamped to it.
pub const MAX_TRACKABLE_NS: u64 = 60_000_000_000;
/// Significant decimal digits kept (0.1% resolution).
pub const SIGNIFICANT_DIGITS: u8 = 3;
/// How often a recorder merges into its hop, ns.
const FLUSH_INTERVAL_NS: u64 = 50_000_000;

/// A fresh histogram with tickwire's bounds (1 ns to 60 s, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKABLE_NS, SIGNIFICANT_DIGITS)
        .unwrap_or_else(|_| unreachable!("constant bounds are valid"))
}

/// The shared latency of one hop.
#[derive(Debug)]
pub struct HopLatency {
    name: String,
    interval: Mutex<Histogram<u64>>,
}

impl HopLatency {
    /// An empty hop named `name` (e.g. `receive->strategy`).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            interval: Mutex::new(new_histogram()),
        }
    }

    /// The hop's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, Histogram<u64>> {
        // A recorder that panicked mid-merge leaves a histogram that is still valid.
        self.interval
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes what was recorded since the last call, leaving the hop empty.
    pub fn take_interval(&self) -> Histogram<u64> {
        std::mem::replace(&mut *self.lock(), new_histogram())
    }
}

/// A thread's private recorder for one hop.
#[derive(Debug)]
pub struct LatencyRecorder {
    local: Histogram<u64>,
    hop: Arc<HopLatency>,
    last_flush_ns: u64,
}

impl LatencyRecorder {
    /// A recorder that merges into `hop`.
    pub fn new(hop: Arc<HopLatency>) -> Self {
        Self {
            local: new_histogram(),
            hop,
            last_flush_ns: 0,
        }
    }

    /// Records one latency, ns (clamped to [1, 60 s]).
    #[inline]
    pub fn record(&mut self, latency_ns: u64) {
        self.local
            .saturating_record(latency_ns.clamp(1, MAX_TRACKABLE_NS));
    }

    /// Records `latency_ns` measured at `now_ns`, merging into the hop every 50 ms: for
    /// hops recorded now and then (orders, reports, alerts), whose agents have no batch end
    /// to flush at, so that live figures see them.
    #[inline]
    pub fn record_at(&mut self, latency_ns: u64, now_ns: u64) {
        self.record(latency_ns);
        self.maybe_flush(now_ns);
    }

    /// Merges into the hop if 50 ms passed since the last merge (`now_ns` is the caller's
    /// clock reading, which it has anyway). Call at the end of a batch.
    #[inline]
    pub fn maybe_flush(&mut self, now_ns: u64) {
        if now_ns.wrapping_sub(self.last_flush_ns) >= FLUSH_INTERVAL_NS {
            self.last_flush_ns = now_ns;
            self.flush();
        }
    }

    /// Merges into the hop now.
    pub fn flush(&mut self) {
        if self.local.is_empty() {
            return;
        }
        // Same bounds on both sides, so `add` cannot fail.
        let _ = self.hop.lock().add(&self.local);
        self.local.reset();
    }
}

impl Drop for LatencyRecorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// p50 / p99 / p99.9 / max of a histogram, in ns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    /// Number of values.
    pub count: u64,
    /// Median, ns.
    pub p50: u64,
    /// 99th percentile, ns.
    pub p99: u64,
    /// 99.9th percentile, ns.
    pub p999: u64,
    /// Maximum, ns.
    pub max: u64,
}

impl Percentiles {
    /// The percentiles of `h`.
    pub fn of(h: &Histogram<u64>) -> Self {
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Formats ns for humans: `850ns`, `12.3us`, `4.56ms`, `1.20s`.
pub fn format_ns(ns: u64) -> String {
    match ns {
        0..=999 => format!("{ns}ns"),
        1_000..=999_999 => format!("{:.1}us", ns as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.2}ms", ns as f64 / 1e6),
        _ => format!("{:.2}s", ns as f64 / 1e9),
    }
}
