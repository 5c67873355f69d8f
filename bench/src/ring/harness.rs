//! What every scenario shares: the consumers' tallies (so a broken scenario cannot report a
//! fast number), bounded waits, a watchdog for the peers' own unbounded waits, and pinning.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long one run may take before it is declared hung. Runs of the default sizes take
/// well under a second; an oversubscribed peer that collapses may take tens of seconds.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// What one consumer saw, sent once when it reached the expected count (or, short of it,
/// when it was dropped).
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// The consumer's name, for error messages.
    pub name: &'static str,
    /// Events seen.
    pub count: u64,
    /// Wrapping sum of the events' sequence payloads.
    pub sum: u64,
    /// When it saw the last expected event.
    pub at: Instant,
}

/// A consumer's running count and sum. Reports itself once, at the expected count; a tally
/// dropped short of it (its consumer stopped early or panicked) reports what it had.
#[derive(Debug)]
pub struct Tally {
    name: &'static str,
    expected: u64,
    count: u64,
    sum: u64,
    tx: Option<Sender<Report>>,
}

impl Tally {
    /// A tally that expects `expected` events and reports to `tx`.
    pub fn new(name: &'static str, expected: u64, tx: Sender<Report>) -> Self {
        Self {
            name,
            expected,
            count: 0,
            sum: 0,
            tx: Some(tx),
        }
    }

    /// Counts one event whose payload is `value`.
    #[inline(always)]
    pub fn add(&mut self, value: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(value);
        if self.count == self.expected {
            self.report();
        }
    }

    /// Whether every expected event was seen.
    #[inline(always)]
    pub fn is_complete(&self) -> bool {
        self.count >= self.expected
    }

    #[cold]
    fn report(&mut self) {
        if let Some(tx) = self.tx.take() {
            // The collector may have given up (timed out); then nobody needs the report.
            let _ = tx.send(Report {
                name: self.name,
                count: self.count,
                sum: self.sum,
                at: Instant::now(),
            });
        }
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.report();
    }
}

/// Sum of the payloads `0..events`, which every consumer must see.
pub fn expected_sum(events: u64) -> u64 {
    // Wrapping, as `Tally::add`; exact below ~6e9 events.
    let n = u128::from(events);
    (n * n.saturating_sub(1) / 2) as u64
}

/// Waits for `consumers` reports and checks each saw every event exactly once (count and
/// sum). Returns the time of the last one.
///
/// # Panics
///
/// If a report is missing by `deadline`, or a consumer's count or sum is wrong: a broken
/// scenario must not report a number.
pub fn collect(
    scenario: &str,
    rx: &Receiver<Report>,
    consumers: usize,
    events: u64,
    deadline: Instant,
) -> Instant {
    let want_sum = expected_sum(events);
    let mut last: Option<Instant> = None;
    for i in 0..consumers {
        let left = deadline.saturating_duration_since(Instant::now());
        let report = match rx.recv_timeout(left) {
            Ok(report) => report,
            Err(RecvTimeoutError::Timeout) => panic!(
                "{scenario}: only {i} of {consumers} consumers finished {events} events within \
                 {RUN_TIMEOUT:?}"
            ),
            Err(RecvTimeoutError::Disconnected) => panic!(
                "{scenario}: consumers stopped: {i} of {consumers} reported, the rest dropped \
                 their tallies without reporting"
            ),
        };
        assert!(
            report.count == events && report.sum == want_sum,
            "{scenario}: consumer `{}` saw {} events with payload sum {}, expected {events} and \
             {want_sum}",
            report.name,
            report.count,
            report.sum,
        );
        last = Some(last.map_or(report.at, |l| l.max(report.at)));
    }
    last.unwrap_or_else(Instant::now)
}

/// A deadline for the scenario's own wait loops. Checking it reads the clock, so loops
/// check it only once they found nothing to do.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    what: &'static str,
    at: Instant,
}

impl Deadline {
    /// A deadline [`RUN_TIMEOUT`] from now for the wait called `what`.
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            at: Instant::now() + RUN_TIMEOUT,
        }
    }

    /// The instant it expires.
    pub fn at(&self) -> Instant {
        self.at
    }

    /// Panics if the deadline passed.
    #[inline]
    pub fn check(&self) {
        if Instant::now() >= self.at {
            self.expired();
        }
    }

    #[cold]
    fn expired(&self) -> ! {
        panic!("{}: still waiting after {RUN_TIMEOUT:?}", self.what)
    }
}

/// Counts idle rounds and checks a [`Deadline`] every 1024 of them, so a spinning wait
/// stays cheap and bounded.
#[derive(Debug)]
pub struct BoundedSpin {
    deadline: Deadline,
    rounds: u32,
}

impl BoundedSpin {
    /// A bounded spin that panics after `RUN_TIMEOUT` naming `what`.
    pub fn new(what: &'static str) -> Self {
        Self {
            deadline: Deadline::new(what),
            rounds: 0,
        }
    }

    /// One idle round: a yield when `yields` (more threads than cores), else a spin-loop
    /// hint.
    #[inline]
    pub fn idle(&mut self, yields: bool) {
        self.rounds = self.rounds.wrapping_add(1);
        if self.rounds % 1024 == 0 {
            self.deadline.check();
        }
        if yields {
            thread::yield_now();
        } else {
            core::hint::spin_loop();
        }
    }
}

/// Aborts the process with a message if a run outlives [`RUN_TIMEOUT`]: the safety net for
/// waits the scenario does not control (a peer's blocking `publish`, `broadcast`, or the
/// `disruptor` crate's join on drop). Disarmed on drop.
#[derive(Debug)]
pub struct Watchdog {
    disarm: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Arms a watchdog for the run called `what`.
    pub fn arm(what: String) -> Self {
        let (disarm, armed) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("bench-watchdog".into())
            .spawn(move || {
                if let Err(RecvTimeoutError::Timeout) =
                    armed.recv_timeout(RUN_TIMEOUT + RUN_TIMEOUT)
                {
                    eprintln!(
                        "watchdog: `{what}` hung for {:?}; aborting",
                        RUN_TIMEOUT * 2
                    );
                    std::process::abort();
                }
            })
            .ok();
        Self {
            disarm: Some(disarm),
            thread,
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Dropping the sender disconnects the channel, which wakes the watchdog.
        self.disarm.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Which core each of a scenario's threads runs on: one core each when there are at least
/// as many cores as threads (thread `i` on the `i`th available core), none otherwise.
/// `RING_NO_PIN=1` in the environment turns pinning off (on a machine shared with other
/// work, a pinned spinning thread cannot move away from a busy core).
#[derive(Debug, Clone)]
pub struct Pinning {
    cores: Option<Vec<usize>>,
    oversubscribed: bool,
}

impl Pinning {
    /// The pinning for `threads` spinning threads on this machine.
    pub fn for_threads(threads: usize) -> Self {
        let available = tickwire_engine::agent::available_cores();
        let oversubscribed = available.len() < threads;
        let no_pin = std::env::var("RING_NO_PIN").is_ok_and(|v| v != "0" && !v.is_empty());
        Self {
            cores: (!oversubscribed && !no_pin).then_some(available),
            oversubscribed,
        }
    }

    /// Whether the scenario has more threads than cores.
    pub fn oversubscribed(&self) -> bool {
        self.oversubscribed
    }

    /// Whether threads are pinned.
    pub fn pins(&self) -> bool {
        self.cores.is_some()
    }

    /// The core of thread `index`, if pinned.
    pub fn core(&self, index: usize) -> Option<usize> {
        self.cores.as_ref().and_then(|c| c.get(index).copied())
    }

    /// Pins the calling thread as thread `index` (no-op when not pinning).
    ///
    /// # Panics
    ///
    /// If the OS refuses: the numbers would mean something else than they say.
    pub fn pin_current(&self, index: usize) {
        if let Some(core) = self.core(index) {
            assert!(
                core_affinity::set_for_current(core_affinity::CoreId { id: core }),
                "could not pin bench thread {index} to core {core}"
            );
        }
    }
}

/// Spawns a named scenario thread.
///
/// # Panics
///
/// If the OS cannot start a thread.
pub fn spawn<R: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> R + Send + 'static,
) -> JoinHandle<R> {
    thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .unwrap_or_else(|e| panic!("could not spawn bench thread `{name}`: {e}"))
}

/// Joins a scenario thread, re-raising its panic with its message.
pub fn join<R>(handle: JoinHandle<R>) -> R {
    match handle.join() {
        Ok(r) => r,
        Err(payload) => std::panic::resume_unwind(payload),
    }
}
