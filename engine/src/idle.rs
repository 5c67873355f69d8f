//! What a thread does when it found no work: the idle strategies of Aeron and the wait
//! strategies of the Disruptor, as one configurable enum.
//!
//! | strategy | when idle | wake-up latency | CPU when idle |
//! |---|---|---|---|
//! | [`BusySpin`](IdleStrategy::BusySpin) | spins (`spin_loop` hint); a reader waits [`DENSE_SETTLE`] after a dense round | lowest; up to [`DENSE_SETTLE`] more for an event right behind a burst | a whole core |
//! | [`NoOp`](IdleStrategy::NoOp) | looks again at once (no hint); a reader waits [`DENSE_SETTLE`] after a dense round | lowest, less the hint's ~25 ns | a whole core, hotter |
//! | [`Yielding`](IdleStrategy::Yielding) | spins, then yields the core | low | a core, shared |
//! | [`Backoff`](IdleStrategy::Backoff) | spins, yields, then parks in growing steps | low, then up to `max_park` unless woken | little |
//! | [`Blocking`](IdleStrategy::Blocking) | parks until the writer wakes it | a wake-up (µs) | none |
//! | [`SpinBatching`](IdleStrategy::SpinBatching) | spins; after a round that did work, also spins `settle` hints before looking again | as busy-spin for an event after a quiet spell; up to `settle` hints for one right behind a batch | a whole core |
//! | [`Sleeping`](IdleStrategy::Sleeping) | sleeps a fixed period (optionally after spins and yields); nobody wakes it | up to the period plus the OS's timer slack (~50 µs on Linux) | little |
//!
//! Busy-spinning only pays when every spinning thread has a core of its own; with more
//! spinning threads than cores the one being waited on may not get a core for a whole time
//! slice. A thread whose strategy parks registers with the rings it reads, and their writers
//! unpark it (see `ring::wake`), so [`Backoff`](IdleStrategy::Backoff) and
//! [`Blocking`](IdleStrategy::Blocking) wake promptly rather than at their timeout.
//!
//! [`SpinBatching`](IdleStrategy::SpinBatching) is for a reader pinned to its own core next
//! to a writer that streams. A reader that looks at the writer's cursor as soon as it has
//! handled a few events takes the cursor's cache line away from the writer after every few
//! publishes, and each publish then waits for the line to come back: measured here, one
//! event per publish ran at ~50 M events/s with batches of ~3. Waiting `settle` spin hints
//! after each batch lets the writer run ahead, and the batches grow (~170, ~300 M events/s
//! with 64 hints of ~25 ns). An event after a quiet spell is seen as fast as with
//! [`BusySpin`](IdleStrategy::BusySpin): the settle only follows work. Use it on threads that
//! only read; on a thread that also writes, it delays the writes.
//!
//! [`BusySpin`](IdleStrategy::BusySpin) and [`NoOp`](IdleStrategy::NoOp) settle too, but
//! only when the stream is dense: after a round in which one of its readers read at least
//! [`DENSE_ROUND`] events (more were published while it handled the last ones), the thread
//! waits [`DENSE_SETTLE`] (0.4 µs) before it looks again. A reader of a sparse stream finds
//! its events one at a time and never settles, so its latency is that of a plain spin; a
//! reader of a dense stream stops taking the cursor's line after every few publishes.
//! Measured on this machine's 1P-1C, one event per publish: ~60 M events/s with batches of
//! ~3 without the settle, ~590 M events/s with batches of several hundred with it. The
//! settle applies only on a thread whose agents all only read
//! ([`Agent::only_reads`](crate::agent::Agent::only_reads), true for a
//! [`HandlerAgent`](crate::agent::HandlerAgent)): a feed's writes are never delayed.
//!
//! [`Sleeping`](IdleStrategy::Sleeping) is Aeron's `SleepingIdleStrategy` and the
//! `disruptor` crate's `Sleep`: it trades latency for throughput when threads outnumber
//! cores. A woken consumer takes the core from the writer for a batch of one; a sleeping
//! one leaves it to the writer for a whole period and then reads everything published
//! meanwhile in one batch.

use std::time::Duration;

/// Events one reader of a [`BusySpin`](IdleStrategy::BusySpin) or [`NoOp`](IdleStrategy::NoOp)
/// thread must have read in a round for the stream to count as dense (see the module docs):
/// one means the reader is keeping up.
pub const DENSE_ROUND: usize = 2;

/// How long a spinning reader waits after a dense round before it looks again. A time,
/// not a count of spin-loop hints: a `pause` costs from ~10 to ~140 cycles depending on
/// the CPU (~25 ns on the AMD EPYC cores measured).
pub const DENSE_SETTLE: Duration = Duration::from_nanos(400);

/// A spinning thread asks its idle agents whether they are done once in this many idle
/// rounds (see [`Idler::at_checkpoint`]).
pub const SPIN_CHECK_EVERY: u32 = 64;

/// How a thread waits when it has no work. `Copy` configuration; the state lives in
/// [`Idler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleStrategy {
    /// Spin without giving up the core, with a `spin_loop` hint per idle round (Aeron's
    /// `BusySpinIdleStrategy`; the `disruptor` crate's `BusySpinWithSpinLoopHint`); on a thread
    /// that only reads, it waits [`DENSE_SETTLE`] after a round in which a reader read at
    /// least [`DENSE_ROUND`] events (see the module docs).
    BusySpin,
    /// Look again at once, without even a spin-loop hint (Aeron's `NoOpIdleStrategy`; the
    /// `disruptor` crate's `BusySpin`): an event is seen up to one hint sooner (a `pause`
    /// costs ~25 ns on the AMD EPYC cores measured), but the core never rests and an SMT
    /// sibling loses the share the hint would give it. Settles after a dense round as
    /// [`BusySpin`](Self::BusySpin) does, without hints.
    NoOp,
    /// Spin without giving up the core, and after a round that did work spin `settle` more
    /// hints before looking again (see the module docs: for readers of a streaming writer).
    SpinBatching {
        /// Spin-loop hints after a round that did work.
        settle: u32,
    },
    /// Spin `spins` times, then yield the core on every further idle round.
    Yielding {
        /// Idle rounds spent spinning before yielding.
        spins: u32,
    },
    /// Spin, then yield, then park for `min_park` doubling up to `max_park`; a writer that
    /// publishes wakes the thread early.
    Backoff {
        /// Idle rounds spent spinning.
        spins: u32,
        /// Idle rounds spent yielding after spinning.
        yields: u32,
        /// First park duration.
        min_park: Duration,
        /// Longest park duration.
        max_park: Duration,
    },
    /// Park until a writer wakes the thread, re-checking after `timeout` at the latest.
    Blocking {
        /// Longest park before looking again (a safety net, not the wake-up mechanism).
        timeout: Duration,
    },
    /// Spin, then yield, then sleep `sleep` on every further idle round. Writers do not
    /// wake it: it looks again when the sleep ends.
    Sleeping {
        /// Idle rounds spent spinning.
        spins: u32,
        /// Idle rounds spent yielding after spinning.
        yields: u32,
        /// How long each later idle round sleeps (the OS rounds it up).
        sleep: Duration,
    },
}

impl IdleStrategy {
    /// Spin-then-yield with 100 spins: the default for tests and 2-core machines.
    pub const YIELDING: Self = Self::Yielding { spins: 100 };

    /// Backoff from 1 µs to 1 ms of parking after 100 spins and 100 yields.
    pub const BACKOFF: Self = Self::Backoff {
        spins: 100,
        yields: 100,
        min_park: Duration::from_micros(1),
        max_park: Duration::from_millis(1),
    };

    /// Blocking with a 100 ms safety-net timeout.
    pub const BLOCKING: Self = Self::Blocking {
        timeout: Duration::from_millis(100),
    };

    /// Spin-batching with 64 hints (~1.6 µs on the AMD EPYC cores measured) after work.
    pub const SPIN_BATCHING: Self = Self::SpinBatching { settle: 64 };

    /// Sleeping for 1 µs (about 50 µs with Linux's timer slack) at once, with no spins or
    /// yields first: the `disruptor` crate's `Sleep(1µs)` and Aeron's sleeping strategy.
    /// Spinning and yielding first took the cores the writer needed when threads outnumber
    /// cores: 1P-3C multicast ran ~53 M events/s with 100 spins and 100 yields, ~92-107
    /// without (same run, 2 cores).
    pub const SLEEPING: Self = Self::Sleeping {
        spins: 0,
        yields: 0,
        sleep: Duration::from_micros(1),
    };

    /// How a writer waits for room in a full ring: it spins briefly, yields, then parks in
    /// steps up to 100 µs, so a full ring never takes the core its subscribers need (the
    /// `disruptor` crate's writer spins there, and collapses when oversubscribed).
    pub const WRITER_DEFAULT: Self = Self::Backoff {
        spins: 64,
        yields: 64,
        min_park: Duration::from_micros(1),
        max_park: Duration::from_micros(100),
    };

    /// Whether the strategy ever parks the thread (and so wants writers to wake it).
    pub fn parks(&self) -> bool {
        matches!(self, Self::Backoff { .. } | Self::Blocking { .. })
    }
}

impl Default for IdleStrategy {
    fn default() -> Self {
        Self::BACKOFF
    }
}

impl std::fmt::Display for IdleStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BusySpin => write!(f, "busy-spin"),
            Self::NoOp => write!(f, "no-op"),
            Self::SpinBatching { settle } => write!(f, "spin-batching({settle})"),
            Self::Yielding { spins } => write!(f, "yielding({spins} spins)"),
            Self::Backoff { max_park, .. } => write!(f, "backoff(park <= {max_park:?})"),
            Self::Blocking { .. } => write!(f, "blocking"),
            Self::Sleeping { sleep, .. } => write!(f, "sleeping({sleep:?})"),
        }
    }
}

impl std::str::FromStr for IdleStrategy {
    type Err = String;

    /// Parses `busy-spin`, `no-op`, `spin-batching`, `yielding`, `backoff`, `blocking` or
    /// `sleeping` (with the defaults above).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "busy-spin" | "busyspin" | "spin" => Ok(Self::BusySpin),
            "no-op" | "noop" => Ok(Self::NoOp),
            "spin-batching" => Ok(Self::SPIN_BATCHING),
            "yielding" | "yield" => Ok(Self::YIELDING),
            "backoff" => Ok(Self::BACKOFF),
            "blocking" | "block" => Ok(Self::BLOCKING),
            "sleeping" | "sleep" => Ok(Self::SLEEPING),
            other => Err(format!(
                "unknown idle strategy `{other}` (expected busy-spin, no-op, spin-batching, yielding, backoff, blocking or sleeping)"
            )),
        }
    }
}

/// What an idle round should do, as decided by an [`Idler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleStep {
    /// Look again at once.
    Retry,
    /// Issue a spin-loop hint and look again.
    Spin,
    /// Yield the core to another thread, then look again.
    Yield,
    /// Park the thread for at most this long (a writer may wake it earlier).
    Park(Duration),
    /// Sleep this long; nobody wakes the thread earlier.
    Sleep(Duration),
}

/// What a thread does after a round that did work, before it looks for more (see
/// [`Idler::settle_after`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Look again at once.
    None,
    /// Spin this many spin-loop hints.
    Hints(u32),
    /// Spin for this long, with a spin-loop hint per turn or not.
    For {
        /// How long.
        time: Duration,
        /// Whether each turn issues a spin-loop hint.
        hint: bool,
    },
}

impl Settle {
    /// Does it, on the calling thread.
    #[inline]
    pub fn run(self) {
        match self {
            Self::None => {}
            Self::Hints(n) => {
                for _ in 0..n {
                    core::hint::spin_loop();
                }
            }
            Self::For { time, hint } => {
                let start = std::time::Instant::now();
                while start.elapsed() < time {
                    if hint {
                        core::hint::spin_loop();
                    }
                }
            }
        }
    }
}

/// The state of one thread's idle strategy: how many idle rounds in a row it has had.
#[derive(Debug, Clone)]
pub struct Idler {
    strategy: IdleStrategy,
    rounds: u32,
    park: Duration,
}

impl Idler {
    /// A fresh idler for `strategy`.
    pub fn new(strategy: IdleStrategy) -> Self {
        Self {
            strategy,
            rounds: 0,
            park: Duration::ZERO,
        }
    }

    /// The strategy this idler follows.
    pub fn strategy(&self) -> IdleStrategy {
        self.strategy
    }

    /// Whether the next idle round is a checkpoint, where the runner asks idle agents
    /// whether they are done: every round for strategies that yield, park or sleep (a round
    /// is slow anyway); every [`SPIN_CHECK_EVERY`]th for the spinning ones, whose idle round
    /// is a look at a cursor and a hint, and an extra call would lengthen it. The first idle
    /// round after work is always one, so a drained reader stops at once.
    #[inline(always)]
    pub fn at_checkpoint(&self) -> bool {
        match self.strategy {
            IdleStrategy::BusySpin | IdleStrategy::NoOp | IdleStrategy::SpinBatching { .. } => {
                self.rounds % SPIN_CHECK_EVERY == 0
            }
            _ => true,
        }
    }

    /// Call after a round that did work: the next idle round starts from the beginning.
    #[inline(always)]
    pub fn reset(&mut self) {
        self.rounds = 0;
    }

    /// What to do before looking again after a round in which the busiest agent did `work`
    /// units, on a thread whose agents `only_read` (their units are events read):
    /// [`SpinBatching`](IdleStrategy::SpinBatching) spins its `settle` hints after any work;
    /// [`BusySpin`](IdleStrategy::BusySpin) and [`NoOp`](IdleStrategy::NoOp) wait
    /// [`DENSE_SETTLE`] after a round of at least [`DENSE_ROUND`], on a reading thread only
    /// (with or without hints, as when idle); nothing otherwise.
    #[inline(always)]
    pub fn settle_after(&self, work: usize, only_read: bool) -> Settle {
        let dense = only_read && work >= DENSE_ROUND;
        match self.strategy {
            IdleStrategy::SpinBatching { settle } if work > 0 => Settle::Hints(settle),
            IdleStrategy::BusySpin if dense => Settle::For {
                time: DENSE_SETTLE,
                hint: true,
            },
            IdleStrategy::NoOp if dense => Settle::For {
                time: DENSE_SETTLE,
                hint: false,
            },
            _ => Settle::None,
        }
    }

    /// The step for the next idle round.
    #[inline]
    pub fn step(&mut self) -> IdleStep {
        let round = self.rounds;
        self.rounds = self.rounds.saturating_add(1);
        match self.strategy {
            IdleStrategy::BusySpin | IdleStrategy::SpinBatching { .. } => IdleStep::Spin,
            IdleStrategy::NoOp => IdleStep::Retry,
            IdleStrategy::Yielding { spins } => {
                if round < spins {
                    IdleStep::Spin
                } else {
                    IdleStep::Yield
                }
            }
            IdleStrategy::Backoff {
                spins,
                yields,
                min_park,
                max_park,
            } => {
                if round < spins {
                    IdleStep::Spin
                } else if round < spins.saturating_add(yields) {
                    self.park = min_park;
                    IdleStep::Yield
                } else {
                    let park = self.park.max(min_park).min(max_park);
                    self.park = park.saturating_mul(2);
                    IdleStep::Park(park)
                }
            }
            IdleStrategy::Blocking { timeout } => IdleStep::Park(timeout),
            IdleStrategy::Sleeping {
                spins,
                yields,
                sleep,
            } => {
                if round < spins {
                    IdleStep::Spin
                } else if round < spins.saturating_add(yields) {
                    IdleStep::Yield
                } else {
                    IdleStep::Sleep(sleep)
                }
            }
        }
    }

    /// One idle round for a thread that nobody wakes (a writer waiting for room, a test
    /// loop): parks are plain timed sleeps.
    #[inline]
    pub fn idle_standalone(&mut self) {
        match self.step() {
            IdleStep::Retry => {}
            IdleStep::Spin => core::hint::spin_loop(),
            IdleStep::Yield => std::thread::yield_now(),
            // Nobody unparks a standalone waiter, so a long block is capped to 100 µs.
            IdleStep::Park(d) => std::thread::park_timeout(d.min(Duration::from_micros(100))),
            IdleStep::Sleep(d) => std::thread::sleep(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_spins_then_yields_then_parks_doubling_to_the_cap() {
        let mut idler = Idler::new(IdleStrategy::Backoff {
            spins: 2,
            yields: 1,
            min_park: Duration::from_micros(10),
            max_park: Duration::from_micros(30),
        });
        let steps: Vec<_> = (0..7).map(|_| idler.step()).collect();
        use IdleStep::*;
        assert_eq!(
            steps,
            [
                Spin,
                Spin,
                Yield,
                Park(Duration::from_micros(10)),
                Park(Duration::from_micros(20)),
                Park(Duration::from_micros(30)),
                Park(Duration::from_micros(30)),
            ]
        );
        idler.reset();
        assert_eq!(idler.step(), Spin);
    }

    #[test]
    fn sleeping_spins_then_yields_then_sleeps_the_same_period() {
        let mut idler = Idler::new(IdleStrategy::Sleeping {
            spins: 1,
            yields: 2,
            sleep: Duration::from_micros(5),
        });
        let steps: Vec<_> = (0..5).map(|_| idler.step()).collect();
        use IdleStep::*;
        let nap = Sleep(Duration::from_micros(5));
        assert_eq!(steps, [Spin, Yield, Yield, nap, nap]);
        assert!(!IdleStrategy::SLEEPING.parks(), "nobody wakes a sleeper");
        idler.reset();
        assert_eq!(idler.step(), Spin);
    }

    #[test]
    fn spin_batching_spins_when_idle_and_settles_after_work() {
        let mut idler = Idler::new(IdleStrategy::SPIN_BATCHING);
        assert_eq!(idler.step(), IdleStep::Spin);
        assert_eq!(idler.settle_after(1, false), Settle::Hints(64));
        assert_eq!(idler.settle_after(0, true), Settle::None);
    }

    #[test]
    fn spinning_readers_settle_only_after_a_dense_round() {
        for (strategy, hint) in [(IdleStrategy::BusySpin, true), (IdleStrategy::NoOp, false)] {
            let idler = Idler::new(strategy);
            let dense = Settle::For {
                time: DENSE_SETTLE,
                hint,
            };
            assert_eq!(idler.settle_after(0, true), Settle::None, "{strategy}");
            let sparse = idler.settle_after(DENSE_ROUND - 1, true);
            assert_eq!(sparse, Settle::None, "{strategy}: a reader keeping up");
            assert_eq!(idler.settle_after(DENSE_ROUND, true), dense, "{strategy}");
            assert_eq!(idler.settle_after(1000, true), dense, "{strategy}");
            let writer = idler.settle_after(1000, false);
            assert_eq!(writer, Settle::None, "{strategy}: a thread that writes");
        }
        let parking = Idler::new(IdleStrategy::BACKOFF).settle_after(1000, true);
        assert_eq!(parking, Settle::None);
    }

    #[test]
    fn a_timed_settle_lasts_its_time() {
        for hint in [true, false] {
            let start = std::time::Instant::now();
            Settle::For {
                time: Duration::from_micros(200),
                hint,
            }
            .run();
            assert!(start.elapsed() >= Duration::from_micros(200), "hint {hint}");
        }
    }

    #[test]
    fn spinning_threads_check_for_done_agents_at_checkpoints_only() {
        let mut idler = Idler::new(IdleStrategy::BusySpin);
        assert!(idler.at_checkpoint(), "the first idle round after work");
        idler.step();
        assert!(!idler.at_checkpoint());
        for _ in 1..SPIN_CHECK_EVERY {
            idler.step();
        }
        assert!(
            idler.at_checkpoint(),
            "every {SPIN_CHECK_EVERY}th idle round"
        );
        idler.reset();
        assert!(idler.at_checkpoint());
        let mut backoff = Idler::new(IdleStrategy::BACKOFF);
        for _ in 0..3 {
            assert!(
                backoff.at_checkpoint(),
                "a parking strategy checks every round"
            );
            backoff.step();
        }
    }

    #[test]
    fn no_op_looks_again_at_once() {
        let mut idler = Idler::new(IdleStrategy::NoOp);
        assert_eq!(
            (idler.step(), idler.step()),
            (IdleStep::Retry, IdleStep::Retry)
        );
        assert!(!IdleStrategy::NoOp.parks());
    }

    #[test]
    fn parses_the_documented_names() {
        for (name, strategy) in [
            ("busy-spin", IdleStrategy::BusySpin),
            ("no-op", IdleStrategy::NoOp),
            ("spin-batching", IdleStrategy::SPIN_BATCHING),
            ("yielding", IdleStrategy::YIELDING),
            ("backoff", IdleStrategy::BACKOFF),
            ("blocking", IdleStrategy::BLOCKING),
            ("sleeping", IdleStrategy::SLEEPING),
        ] {
            assert_eq!(name.parse::<IdleStrategy>(), Ok(strategy), "{name}");
        }
        let err = "nap"
            .parse::<IdleStrategy>()
            .expect_err("\"nap\" names no strategy");
        assert!(err.contains("nap"), "{err}");
    }
}
