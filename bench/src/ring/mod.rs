//! tickwire's ring against its peers, in the scenarios of the LMAX Disruptor's own
//! performance tests: one producer and one consumer (one event per publish, and batches of
//! 64), one producer multicasting to three consumers, a three-stage pipeline, and a
//! diamond (two consumers in parallel, a third after both). The
//! one-way latency scenario is in [`latency`].
//!
//! Every scenario is a plain function from an event count to the time from the first
//! publish to the last consumer's last event, so that the criterion benchmarks
//! (`benches/ring.rs`), the [`peer_table`] and the `tickwire bench` command run the same
//! code. Each consumer counts its events and sums their payloads (`0..events`) and the run
//! panics unless every consumer saw every event: a broken scenario cannot report a fast
//! number. Every wait is bounded (see [`harness`]).
//!
//! **Threads and cores.** A scenario with no more threads than cores pins one thread per
//! core and busy-spins; one with more threads than cores ("oversubscribed": 1P-3C and the
//! pipeline on a 2-core machine) pins nothing and uses yielding or parking strategies,
//! since a spinning thread there can hold the core the thread it waits for needs.
//!
//! ```no_run
//! use tickwire_bench::ring::{cases, Scenario};
//!
//! for case in cases().iter().filter(|c| c.scenario == Scenario::Unicast) {
//!     let elapsed = case.run(1_000_000);
//!     println!("{}: {:.1} M events/s", case.label(), 1.0 / elapsed.as_secs_f64());
//! }
//! ```

pub mod channels;
pub mod disruptor;
pub mod harness;
pub mod latency;
pub mod single_thread;
pub mod tickwire;

use std::fmt::Write as _;
use std::time::Duration;

use ::disruptor::{BusySpin, BusySpinWithSpinLoopHint, Sleep};
use tickwire_engine::idle::IdleStrategy;

use harness::Pinning;

/// The peers' event: 64 bytes and cache-line aligned like tickwire's
/// [`Event`](tickwire_engine::event::Event), `Copy`, so every implementation moves the
/// same amount of data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct PeerEvent {
    /// The payload consumers sum: the event's index in the run.
    pub seq: u64,
    /// When the event was scheduled to be sent, ns since the run's epoch (latency runs).
    pub scheduled_ns: u64,
    /// Filler up to 64 bytes.
    pub pad: [u64; 6],
}

const _: () = assert!(core::mem::size_of::<PeerEvent>() == 64);
const _: () = assert!(
    core::mem::size_of::<PeerEvent>() == core::mem::size_of::<tickwire_engine::event::Event>()
);

impl PeerEvent {
    /// An event with payload `seq`.
    #[inline(always)]
    pub fn new(seq: u64) -> Self {
        Self {
            seq,
            ..Self::default()
        }
    }
}

/// Who reads the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One consumer.
    Unicast,
    /// Three consumers, each reading every event.
    Multicast3,
    /// Three consumers in a chain: B reads what A finished, C what B finished.
    Pipeline3,
    /// A diamond: A and B read every event independently, C reads what both finished.
    Diamond,
}

impl Topology {
    /// Number of consumer threads.
    pub fn consumers(self) -> usize {
        match self {
            Self::Unicast => 1,
            Self::Multicast3 | Self::Pipeline3 | Self::Diamond => 3,
        }
    }
}

/// One of the throughput scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// 1P-1C, one event per publish.
    Unicast,
    /// 1P-1C, batches of 64 per publish.
    UnicastBatch64,
    /// 1P-3C multicast.
    Multicast3,
    /// 1P, three-stage pipeline A -> B -> C.
    Pipeline3,
    /// 1P, diamond: A and B in parallel, then C after both.
    Diamond,
}

impl Scenario {
    /// Every scenario, in table order.
    pub const ALL: [Self; 5] = [
        Self::Unicast,
        Self::UnicastBatch64,
        Self::Multicast3,
        Self::Pipeline3,
        Self::Diamond,
    ];

    /// A short name, also the criterion group's.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unicast => "1p1c",
            Self::UnicastBatch64 => "1p1c-batch64",
            Self::Multicast3 => "1p3c-multicast",
            Self::Pipeline3 => "pipeline3",
            Self::Diamond => "diamond",
        }
    }

    /// The consumers' topology.
    pub fn topology(self) -> Topology {
        match self {
            Self::Unicast | Self::UnicastBatch64 => Topology::Unicast,
            Self::Multicast3 => Topology::Multicast3,
            Self::Pipeline3 => Topology::Pipeline3,
            Self::Diamond => Topology::Diamond,
        }
    }

    /// Events per publish call.
    pub fn batch(self) -> usize {
        match self {
            Self::UnicastBatch64 => 64,
            _ => 1,
        }
    }

    /// Threads the scenario runs (producer and consumers).
    pub fn threads(self) -> usize {
        1 + self.topology().consumers()
    }

    /// Whether the scenario has more threads than this machine has cores.
    pub fn oversubscribed(self) -> bool {
        Pinning::for_threads(self.threads()).oversubscribed()
    }

    /// The name with `(oversubscribed: N threads on M cores)` when it is.
    pub fn label(self) -> String {
        if self.oversubscribed() {
            format!(
                "{} (oversubscribed: {} threads on {} cores)",
                self.name(),
                self.threads(),
                tickwire_engine::agent::available_cores().len()
            )
        } else if Pinning::for_threads(self.threads()).pins() {
            format!("{} (pinned, {} threads)", self.name(), self.threads())
        } else {
            format!("{} (not pinned, {} threads)", self.name(), self.threads())
        }
    }
}

type RunFn = Box<dyn Fn(u64) -> Duration + Send + Sync>;

/// One implementation in one configuration in one scenario.
pub struct Case {
    /// The scenario.
    pub scenario: Scenario,
    /// `tickwire`, `disruptor`, `crossbeam-channel`, ...
    pub implementation: &'static str,
    /// How its threads wait.
    pub idle: String,
    /// Ring or queue capacity, in events.
    pub capacity: usize,
    run: RunFn,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("scenario", &self.scenario)
            .field("implementation", &self.implementation)
            .field("idle", &self.idle)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Case {
    fn new(
        scenario: Scenario,
        implementation: &'static str,
        idle: impl Into<String>,
        capacity: usize,
        run: impl Fn(u64) -> Duration + Send + Sync + 'static,
    ) -> Self {
        Self {
            scenario,
            implementation,
            idle: idle.into(),
            capacity,
            run: Box::new(run),
        }
    }

    /// Runs `events` events; returns the time from the first publish to the last
    /// consumer's last event.
    ///
    /// # Panics
    ///
    /// If a consumer missed an event or the run hung.
    pub fn run(&self, events: u64) -> Duration {
        (self.run)(events)
    }

    /// `implementation/idle/capacity`, for benchmark ids.
    pub fn label(&self) -> String {
        format!("{}/{}/{}", self.implementation, self.idle, self.capacity)
    }

    /// Whether this is tickwire's own ring.
    pub fn is_tickwire(&self) -> bool {
        self.implementation == "tickwire"
    }
}

/// The ring size of the Disruptor-style rings (the Disruptor perf tests' 64 Ki).
pub const RING: usize = 65_536;
/// The capacity of the bounded queues, as asked of the queue peers.
pub const QUEUE: usize = 1_024;

fn tickwire_case(scenario: Scenario, idle: IdleStrategy, capacity: usize) -> Case {
    Case::new(scenario, "tickwire", idle.to_string(), capacity, move |n| {
        tickwire::run(
            n,
            capacity,
            idle,
            scenario.batch(),
            scenario.topology(),
            tickwire::ConsumerThreads::Each,
        )
    })
}

fn disruptor_cases(scenario: Scenario) -> Vec<Case> {
    let (batch, topology) = (scenario.batch(), scenario.topology());
    let mut cases = vec![
        Case::new(scenario, "disruptor", "BusySpin", RING, move |n| {
            disruptor::run(n, RING, BusySpin, "BusySpin", batch, topology)
        }),
        Case::new(
            scenario,
            "disruptor",
            "BusySpinWithSpinLoopHint",
            RING,
            move |n| {
                disruptor::run(
                    n,
                    RING,
                    BusySpinWithSpinLoopHint,
                    "BusySpinWithSpinLoopHint",
                    batch,
                    topology,
                )
            },
        ),
    ];
    if scenario.oversubscribed() {
        // The crate's only strategy that gives the core up; `thread::sleep(1us)` sleeps
        // for the timer slack (~50-60 us on Linux).
        cases.push(Case::new(
            scenario,
            "disruptor",
            "Sleep(1us)",
            RING,
            move |n| {
                let sleep = Sleep::new(Duration::from_micros(1));
                disruptor::run(n, RING, sleep, "Sleep(1us)", batch, topology)
            },
        ));
    }
    cases
}

/// Every case of every scenario. Within a scenario the first case is tickwire's reference
/// configuration, against which the table's ratios are taken: busy-spin when the threads
/// are pinned, yielding when oversubscribed.
pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for scenario in Scenario::ALL {
        let spin = !scenario.oversubscribed();
        match scenario.topology() {
            Topology::Unicast => {
                let idle = if spin {
                    IdleStrategy::BusySpin
                } else {
                    IdleStrategy::YIELDING
                };
                cases.push(tickwire_case(scenario, idle, RING));
                cases.push(tickwire_case(scenario, idle, QUEUE));
                if spin {
                    // The disruptor crate's `BusySpin` has no spin-loop hint: `no-op` is the
                    // same wait.
                    cases.push(tickwire_case(scenario, IdleStrategy::NoOp, RING));
                    cases.push(tickwire_case(scenario, IdleStrategy::SPIN_BATCHING, RING));
                    let batch = scenario.batch();
                    cases.push(Case::new(
                        scenario,
                        "tickwire",
                        "busy-spin, poll loop (no agent runner)",
                        RING,
                        move |n| tickwire::run_poll_loop(n, RING, batch),
                    ));
                }
                cases.extend(disruptor_cases(scenario));
                if scenario.batch() == 1 {
                    cases.push(Case::new(
                        scenario,
                        "crossbeam-channel",
                        "blocking send/recv",
                        QUEUE,
                        |n| channels::crossbeam_unicast(n, QUEUE),
                    ));
                }
                let batch = scenario.batch();
                for capacity in [QUEUE, RING] {
                    cases.push(Case::new(
                        scenario,
                        "rtrb",
                        "busy-spin",
                        capacity,
                        move |n| channels::rtrb_unicast(n, capacity, batch),
                    ));
                }
            }
            Topology::Multicast3 | Topology::Pipeline3 | Topology::Diamond => {
                let idles = if spin {
                    vec![IdleStrategy::BusySpin, IdleStrategy::YIELDING]
                } else {
                    vec![
                        IdleStrategy::YIELDING,
                        IdleStrategy::BACKOFF,
                        IdleStrategy::BLOCKING,
                        IdleStrategy::SLEEPING,
                    ]
                };
                for idle in idles {
                    cases.push(tickwire_case(scenario, idle, RING));
                }
                // The engine's answer to too few cores: the three subscribers as agents of
                // one thread, so two threads run, pinned, however many subscribers there are.
                // Sleeping too: a reader that is faster than the writer loses nothing by
                // sleeping, and the writer then runs without the readers taking its lines.
                for idle in [
                    IdleStrategy::BusySpin,
                    IdleStrategy::SPIN_BATCHING,
                    IdleStrategy::SLEEPING,
                ] {
                    let (batch, topology) = (scenario.batch(), scenario.topology());
                    cases.push(Case::new(
                        scenario,
                        "tickwire",
                        format!("{idle}, 3 agents on 1 thread (2 threads)"),
                        RING,
                        move |n| {
                            let one = tickwire::ConsumerThreads::One;
                            tickwire::run(n, RING, idle, batch, topology, one)
                        },
                    ));
                }
                cases.extend(disruptor_cases(scenario));
                if scenario.topology() == Topology::Multicast3 {
                    cases.push(Case::new(
                        scenario,
                        "bus",
                        "blocking broadcast/recv",
                        RING,
                        |n| channels::bus_multicast(n, RING),
                    ));
                    cases.push(Case::new(
                        scenario,
                        "tokio broadcast",
                        "blocking_recv",
                        RING,
                        |n| channels::tokio_multicast(n, RING),
                    ));
                }
            }
        }
    }
    cases
}

/// How the peer table measures.
#[derive(Debug, Clone, Copy)]
pub struct TableConfig {
    /// Measured runs per case (after one warm-up run); the table shows their median.
    pub runs: usize,
    /// Events in the warm-up run, which also estimates the rate.
    pub warmup_events: u64,
    /// How long each measured run should take; its event count is sized from the warm-up.
    pub target: Duration,
}

impl Default for TableConfig {
    fn default() -> Self {
        Self {
            runs: 7,
            warmup_events: 1_000_000,
            target: Duration::from_millis(300),
        }
    }
}

/// One line of the peer table.
#[derive(Debug, Clone)]
pub struct Row {
    /// The scenario.
    pub scenario: Scenario,
    /// The implementation.
    pub implementation: &'static str,
    /// Its idle or wait strategy.
    pub idle: String,
    /// Ring or queue capacity.
    pub capacity: usize,
    /// Events per measured run.
    pub events: u64,
    /// Every measured run's rate, M events/s, in run order.
    pub runs: Vec<f64>,
}

impl Row {
    /// Whether this row is tickwire's own ring.
    pub fn is_tickwire(&self) -> bool {
        self.implementation == "tickwire"
    }

    /// The best run's rate, M events/s: on a shared machine, interference only slows a run
    /// down, so the best run is the closest to what the implementation does undisturbed.
    pub fn best(&self) -> f64 {
        self.runs.iter().copied().fold(0.0, f64::max)
    }

    /// The median rate, M events/s.
    pub fn median(&self) -> f64 {
        median(&self.runs)
    }

    /// Every round's rate, M events/s, in round order ("62.6 1195.0 ...").
    pub fn runs_text(&self) -> String {
        let runs: Vec<String> = self.runs.iter().map(|r| format!("{r:.1}")).collect();
        runs.join(" ")
    }

    /// `reference`'s rate over this row's, round by round (round k against round k), and
    /// the median of those ratios: above 1 means `reference` is faster. Rounds are
    /// interleaved, so round k of both rows ran under the same state of the host; a host
    /// that jumps between a fast and a slow mode moves both rates of a round together,
    /// where the ratio of the two medians can compare one row's fast round with the
    /// other's slow one.
    pub fn paired_ratio(&self, reference: &Self) -> f64 {
        median_paired_ratio(&reference.runs, &self.runs)
    }
}

/// The row the ratios of `scenario` are taken against: its first tickwire row, tickwire's
/// reference configuration (see [`cases`]).
pub fn reference_row(rows: &[Row], scenario: Scenario) -> Option<&Row> {
    rows.iter()
        .find(|r| r.scenario == scenario && r.is_tickwire())
}

/// The median of `values` (the mean of the middle two for an even count; 0 when empty).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The median over k of `numerators[k] / denominators[k]`, for two measurements taken in
/// the same interleaved rounds (see [`Row::paired_ratio`]). Only the rounds both have
/// count; NaN when there are none.
pub fn median_paired_ratio(numerators: &[f64], denominators: &[f64]) -> f64 {
    let ratios: Vec<f64> = numerators
        .iter()
        .zip(denominators)
        .map(|(n, d)| n / d.max(1e-9))
        .collect();
    if ratios.is_empty() {
        f64::NAN
    } else {
        median(&ratios)
    }
}

fn meps(events: u64, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6
}

/// Sizes a case's runs: one warm-up run of `config.warmup_events`, whose rate gives the
/// event count of a run lasting about `config.target`.
fn size_runs(case: &Case, config: &TableConfig) -> u64 {
    let warmup = case.run(config.warmup_events);
    let rate = config.warmup_events as f64 / warmup.as_secs_f64().max(1e-9);
    ((rate * config.target.as_secs_f64()) as u64).clamp(100_000, 30_000_000)
}

/// Measures every case of [`cases`] that `filter` keeps: a warm-up run each, then
/// `config.runs` rounds in which every case runs once, in turn, so that a disturbance
/// from the rest of the machine (other builds, on a shared box) hits every implementation
/// alike rather than whichever ran at the time. Prints progress to stderr.
pub fn peer_table(config: &TableConfig, filter: impl Fn(&Case) -> bool) -> Vec<Row> {
    let cases: Vec<Case> = cases().into_iter().filter(|c| filter(c)).collect();
    let mut rows: Vec<Row> = cases
        .iter()
        .map(|case| {
            eprintln!(
                "peer table: warm-up {} {}",
                case.scenario.name(),
                case.label()
            );
            Row {
                scenario: case.scenario,
                implementation: case.implementation,
                idle: case.idle.clone(),
                capacity: case.capacity,
                events: size_runs(case, config),
                runs: Vec::with_capacity(config.runs),
            }
        })
        .collect();
    for round in 0..config.runs {
        eprintln!("peer table: round {}/{}", round + 1, config.runs);
        for (case, row) in cases.iter().zip(&mut rows) {
            row.runs.push(meps(row.events, case.run(row.events)));
        }
    }
    rows
}

/// The peer table as markdown: per scenario, every row's median and best rate and the
/// reference tickwire row's rates divided by them ("tickwire / this": above 1 means
/// tickwire is faster) three ways: median over median, round by round (the median of the
/// rounds' ratios, [`Row::paired_ratio`]) and best over best; then the [`summary`].
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::new();
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let _ = writeln!(
            out,
            "Load average when printed (1, 5, 15 min): {} ({} cores)\n",
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            tickwire_engine::agent::available_cores().len()
        );
    }
    let _ = writeln!(
        out,
        "| scenario | implementation | idle strategy | ring size | M events/s (median) | best run | runs (M/s, in round order) | tickwire / this (median) | tickwire / this (round by round) | tickwire / this (best) |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|---|---:|---:|---:|");
    for scenario in Scenario::ALL {
        let Some(reference) = reference_row(rows, scenario) else {
            continue;
        };
        let (reference_rate, reference_best) = (reference.median(), reference.best());
        for row in rows.iter().filter(|r| r.scenario == scenario) {
            let marker = if std::ptr::eq(row, reference) {
                " (reference)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "| {} | {}{} | {} | {} | {:.2} | {:.2} | {} | {:.2}x | {:.2}x | {:.2}x |",
                scenario.label(),
                row.implementation,
                marker,
                row.idle,
                row.capacity,
                row.median(),
                row.best(),
                row.runs_text(),
                reference_rate / row.median().max(1e-9),
                row.paired_ratio(reference),
                reference_best / row.best().max(1e-9),
            );
        }
    }
    let summary = summary(rows);
    if !summary.is_empty() {
        out.push('\n');
        for line in summary {
            let _ = writeln!(out, "- {line}");
        }
    }
    out
}

/// Per scenario, one line: the best tickwire configuration against the best peer
/// configuration, as the ratio of their medians and round by round
/// ([`Row::paired_ratio`]). "Best" is the highest rate relative to the scenario's
/// reference row, round by round: in a run whose rounds fall in different modes of the
/// host, the highest median can belong to a row that merely had more fast rounds.
pub fn summary(rows: &[Row]) -> Vec<String> {
    let mut lines = Vec::new();
    for scenario in Scenario::ALL {
        let Some(reference) = reference_row(rows, scenario) else {
            continue;
        };
        let best = |tickwire: bool| {
            rows.iter()
                .filter(|r| r.scenario == scenario && r.is_tickwire() == tickwire)
                .max_by(|a, b| {
                    reference
                        .paired_ratio(a)
                        .total_cmp(&reference.paired_ratio(b))
                })
        };
        if let (Some(t), Some(p)) = (best(true), best(false)) {
            lines.push(format!(
                "{}: best tickwire ({}, {}) {:.2} M/s vs best peer ({} {}, {}) {:.2} M/s: {:.2}x (round by round {:.2}x)",
                scenario.name(),
                t.idle,
                t.capacity,
                t.median(),
                p.implementation,
                p.idle,
                p.capacity,
                p.median(),
                t.median() / p.median().max(1e-9),
                p.paired_ratio(t),
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(implementation: &'static str, idle: &str, runs: &[f64]) -> Row {
        Row {
            scenario: Scenario::UnicastBatch64,
            implementation,
            idle: idle.into(),
            capacity: RING,
            events: 1,
            runs: runs.to_vec(),
        }
    }

    #[test]
    fn the_round_by_round_ratio_pairs_rounds_where_the_ratio_of_medians_does_not() {
        // A host that jumps between a slow and a fast mode: rounds 1-3 slow for both, the
        // rest fast, and tickwire's last round caught half-way between.
        let row = |runs: &[f64]| row("x", "", runs);
        let tickwire = row(&[62.6, 62.6, 64.1, 1195.0, 1108.0, 1197.0, 745.3]);
        let peer = row(&[62.5, 63.7, 63.2, 1013.3, 1011.2, 968.4, 993.4]);
        let of_medians = tickwire.median() / peer.median();
        assert!((of_medians - 745.3 / 968.4).abs() < 1e-9, "{of_medians}");
        // Round ratios: 1.0016 0.9827 1.0142 1.1793 1.0957 1.2361 0.7503.
        let paired = peer.paired_ratio(&tickwire);
        assert!((paired - 1.0142).abs() < 1e-3, "{paired}");
        // Uneven or empty inputs: only the common rounds count.
        assert_eq!(median_paired_ratio(&[4.0, 9.0, 1.0], &[2.0, 3.0]), 2.5);
        assert!(median_paired_ratio(&[], &[1.0]).is_nan());
    }

    #[test]
    fn the_summary_picks_the_best_peer_round_by_round_not_by_median() {
        // The host changed mode inside round 3, after tickwire ran and before peer "a":
        // "a" has the higher median only for that; "b" matches tickwire in every round.
        let rows = [
            row("tickwire", "busy-spin", &[10.0, 10.0, 10.0, 100.0, 100.0]),
            row("disruptor", "a", &[5.0, 5.0, 50.0, 50.0, 50.0]),
            row("disruptor", "b", &[10.0, 10.0, 10.0, 100.0, 100.0]),
        ];
        let lines = summary(&rows);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("best peer (disruptor b, "),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("(round by round 1.00x)"), "{}", lines[0]);
    }
}
