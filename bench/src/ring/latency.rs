//! One-way latency, 1P-1C, at a fixed injection rate.
//!
//! The producer sends event `i` at `start + i / rate`, and stamps it with that *scheduled*
//! time, not the time it actually sent it: when the producer falls behind (it was
//! descheduled, or the ring was full), the events it sends late carry the delay they
//! suffered, instead of the histogram silently omitting it (coordinated omission, in Gil
//! Tene's term). The consumer records `now - scheduled` into an HdrHistogram. Both threads
//! read one monotonic clock (`Instant`, ns since the run's epoch).
//!
//! Events before `warmup` are sent but not recorded. Every consumer still counts and sums
//! every event, as in the throughput scenarios.

use std::fmt::Write as _;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use ::disruptor::wait_strategies::WaitStrategy;
use ::disruptor::{BusySpin, BusySpinWithSpinLoopHint, ProcessorSettings, Producer, Sequence};
use hdrhistogram::Histogram;
use tickwire_engine::agent::{HandlerAgent, Layout, ThreadSpec};
use tickwire_engine::event::Event;
use tickwire_engine::idle::IdleStrategy;
use tickwire_engine::latency::{Percentiles, format_ns, new_histogram};
use tickwire_engine::ring::RingBuilder;

use super::harness::{BoundedSpin, Pinning, RUN_TIMEOUT, Watchdog, expected_sum, join, spawn};
use super::{PeerEvent, QUEUE, RING};

/// How a latency run injects events.
#[derive(Debug, Clone, Copy)]
pub struct LatencyConfig {
    /// Events per second.
    pub rate: u64,
    /// Events sent and not recorded first.
    pub warmup: u64,
    /// Events recorded.
    pub measured: u64,
}

impl Default for LatencyConfig {
    /// 100 k events/s for 0.2 s of warm-up and 2 s measured.
    fn default() -> Self {
        Self {
            rate: 100_000,
            warmup: 20_000,
            measured: 200_000,
        }
    }
}

impl LatencyConfig {
    fn total(&self) -> u64 {
        self.warmup + self.measured
    }

    /// When event `i` is due, ns after the producer's start.
    #[inline(always)]
    fn due_ns(&self, i: u64) -> u64 {
        (u128::from(i) * 1_000_000_000 / u128::from(self.rate.max(1))) as u64
    }
}

/// Ns since `epoch`, the clock both sides of a run read.
#[inline(always)]
fn now_ns(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// What a latency consumer saw.
#[derive(Debug)]
struct LatencyReport {
    count: u64,
    sum: u64,
    histogram: Histogram<u64>,
}

/// A latency consumer's state: records latencies past the warm-up, counts and sums every
/// event, and reports once (at the expected count, or when dropped short of it).
#[derive(Debug)]
struct LatencyTally {
    epoch: Instant,
    warmup: u64,
    expected: u64,
    count: u64,
    sum: u64,
    histogram: Histogram<u64>,
    tx: Option<Sender<LatencyReport>>,
}

impl LatencyTally {
    fn new(epoch: Instant, config: &LatencyConfig, tx: Sender<LatencyReport>) -> Self {
        Self {
            epoch,
            warmup: config.warmup,
            expected: config.total(),
            count: 0,
            sum: 0,
            histogram: new_histogram(),
            tx: Some(tx),
        }
    }

    #[inline(always)]
    fn add(&mut self, seq: u64, scheduled_ns: u64) {
        let now = now_ns(self.epoch);
        if seq >= self.warmup {
            self.histogram
                .saturating_record(now.saturating_sub(scheduled_ns).max(1));
        }
        self.count += 1;
        self.sum = self.sum.wrapping_add(seq);
        if self.count == self.expected {
            self.report();
        }
    }

    fn is_complete(&self) -> bool {
        self.count >= self.expected
    }

    #[cold]
    fn report(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(LatencyReport {
                count: self.count,
                sum: self.sum,
                histogram: std::mem::replace(&mut self.histogram, new_histogram()),
            });
        }
    }
}

impl Drop for LatencyTally {
    fn drop(&mut self) {
        self.report();
    }
}

/// Sends every event of `config` on schedule through `send(seq, scheduled_ns)`.
fn inject(epoch: Instant, config: &LatencyConfig, mut send: impl FnMut(u64, u64)) {
    let start = now_ns(epoch);
    for i in 0..config.total() {
        let due = start + config.due_ns(i);
        // Bounded: the clock passes `due` within 1 / rate.
        while now_ns(epoch) < due {
            core::hint::spin_loop();
        }
        send(i, due);
    }
}

fn collect(what: &str, rx: &Receiver<LatencyReport>, config: &LatencyConfig) -> Histogram<u64> {
    let report = match rx.recv_timeout(RUN_TIMEOUT) {
        Ok(report) => report,
        Err(RecvTimeoutError::Timeout) => panic!("{what}: consumer did not finish in time"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: consumer stopped without a report"),
    };
    let (events, sum) = (config.total(), expected_sum(config.total()));
    assert!(
        report.count == events && report.sum == sum,
        "{what}: consumer saw {} events with sum {}, expected {events} and {sum}",
        report.count,
        report.sum
    );
    report.histogram
}

type LatencyRunFn = Box<dyn Fn(&LatencyConfig) -> Histogram<u64> + Send + Sync>;

/// One latency configuration of one implementation.
pub struct LatencyCase {
    /// `tickwire`, `disruptor`, ...
    pub implementation: &'static str,
    /// How its threads wait.
    pub idle: &'static str,
    /// Ring or queue capacity.
    pub capacity: usize,
    run: LatencyRunFn,
}

impl std::fmt::Debug for LatencyCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyCase")
            .field("implementation", &self.implementation)
            .field("idle", &self.idle)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl LatencyCase {
    /// Runs once; returns the histogram of recorded one-way latencies, ns.
    ///
    /// # Panics
    ///
    /// If the consumer missed an event or the run hung.
    pub fn run(&self, config: &LatencyConfig) -> Histogram<u64> {
        (self.run)(config)
    }
}

/// The latency cases: tickwire (busy-spin, no-op and spin-batching) and the `disruptor`
/// crate busy-spinning on pinned threads (its `BusySpin` is tickwire's `no-op`: no hint;
/// its `BusySpinWithSpinLoopHint` is tickwire's `busy-spin`),
/// `crossbeam-channel` blocking, `rtrb` busy-spinning.
pub fn latency_cases() -> Vec<LatencyCase> {
    vec![
        LatencyCase {
            implementation: "tickwire",
            idle: "busy-spin",
            capacity: RING,
            run: Box::new(|c| tickwire_latency(c, IdleStrategy::BusySpin)),
        },
        LatencyCase {
            implementation: "tickwire",
            idle: "no-op",
            capacity: RING,
            run: Box::new(|c| tickwire_latency(c, IdleStrategy::NoOp)),
        },
        LatencyCase {
            implementation: "tickwire",
            idle: "spin-batching(64)",
            capacity: RING,
            run: Box::new(|c| tickwire_latency(c, IdleStrategy::SPIN_BATCHING)),
        },
        LatencyCase {
            implementation: "disruptor",
            idle: "BusySpin",
            capacity: RING,
            run: Box::new(|c| disruptor_latency(c, BusySpin)),
        },
        LatencyCase {
            implementation: "disruptor",
            idle: "BusySpinWithSpinLoopHint",
            capacity: RING,
            run: Box::new(|c| disruptor_latency(c, BusySpinWithSpinLoopHint)),
        },
        LatencyCase {
            implementation: "crossbeam-channel",
            idle: "blocking recv",
            capacity: QUEUE,
            run: Box::new(crossbeam_latency),
        },
        LatencyCase {
            implementation: "rtrb",
            idle: "busy-spin",
            capacity: QUEUE,
            run: Box::new(rtrb_latency),
        },
    ]
}

fn tickwire_latency(config: &LatencyConfig, idle: IdleStrategy) -> Histogram<u64> {
    let what = "tickwire latency";
    let _watchdog = Watchdog::arm(what.into());
    let pinning = Pinning::for_threads(2);
    let epoch = Instant::now();
    let (tx, rx) = mpsc::channel();
    let mut ring = RingBuilder::<Event>::new(RING).unwrap_or_else(|e| panic!("{what}: {e}"));
    let subscriber = ring.subscriber("latency");
    let mut publisher = ring.build().unwrap_or_else(|e| panic!("{what}: {e}"));
    publisher.set_idle_strategy(IdleStrategy::BusySpin);
    let mut tally = LatencyTally::new(epoch, config, tx);
    let pipeline = Layout::new()
        .thread(
            ThreadSpec::new("tw-latency")
                .core(pinning.core(1))
                .idle(idle)
                .agent(HandlerAgent::new(
                    subscriber,
                    move |e: &Event, _: u64, _: bool| tally.add(e.exchange_ts, e.receive_ts),
                )),
        )
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let config_copy = *config;
    let producer = spawn("tw-latency-publisher", move || {
        pinning.pin_current(0);
        inject(epoch, &config_copy, |seq, due| {
            if let Err(e) = publisher.publish(|e| {
                e.exchange_ts = seq;
                e.receive_ts = due;
            }) {
                panic!("tickwire latency publish {seq}: {e}");
            }
        });
    });
    join(producer);
    let histogram = collect(what, &rx, config);
    pipeline
        .join_timeout(RUN_TIMEOUT)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    histogram
}

fn disruptor_latency<W: WaitStrategy + 'static>(config: &LatencyConfig, wait: W) -> Histogram<u64> {
    let what = "disruptor latency";
    let _watchdog = Watchdog::arm(what.into());
    let pinning = Pinning::for_threads(2);
    let epoch = Instant::now();
    let (tx, rx) = mpsc::channel();
    let mut tally = LatencyTally::new(epoch, config, tx);
    let builder = ::disruptor::build_single_producer(RING, PeerEvent::default, wait);
    let builder = match pinning.core(1) {
        Some(core) => builder.pin_at_core(core),
        None => builder,
    };
    let mut producer = builder
        .handle_events_with(move |e: &PeerEvent, _: Sequence, _: bool| {
            tally.add(e.seq, e.scheduled_ns)
        })
        .build();
    let config_copy = *config;
    let producer_thread = spawn("disruptor-latency-producer", move || {
        pinning.pin_current(0);
        inject(epoch, &config_copy, |seq, due| {
            producer.publish(|e| {
                e.seq = seq;
                e.scheduled_ns = due;
            });
        });
        drop(producer);
    });
    join(producer_thread);
    collect(what, &rx, config)
}

fn crossbeam_latency(config: &LatencyConfig) -> Histogram<u64> {
    let what = "crossbeam latency";
    let _watchdog = Watchdog::arm(what.into());
    let pinning = Pinning::for_threads(2);
    let epoch = Instant::now();
    let (tx, rx) = mpsc::channel();
    let (sender, receiver) = crossbeam_channel::bounded::<PeerEvent>(QUEUE);
    let consumer_pinning = pinning.clone();
    let config_copy = *config;
    let consumer = spawn("crossbeam-latency-consumer", move || {
        consumer_pinning.pin_current(1);
        let mut tally = LatencyTally::new(epoch, &config_copy, tx);
        while !tally.is_complete() {
            // Errors once the sender is gone, so bounded by the producer.
            match receiver.recv() {
                Ok(e) => tally.add(e.seq, e.scheduled_ns),
                Err(_) => break,
            }
        }
    });
    let producer = spawn("crossbeam-latency-producer", move || {
        pinning.pin_current(0);
        inject(epoch, &config_copy, |seq, due| {
            let event = PeerEvent {
                seq,
                scheduled_ns: due,
                ..PeerEvent::default()
            };
            if sender.send(event).is_err() {
                panic!("crossbeam latency: receiver gone at {seq}");
            }
        });
    });
    join(producer);
    let histogram = collect(what, &rx, config);
    join(consumer);
    histogram
}

fn rtrb_latency(config: &LatencyConfig) -> Histogram<u64> {
    let what = "rtrb latency";
    let _watchdog = Watchdog::arm(what.into());
    let pinning = Pinning::for_threads(2);
    let epoch = Instant::now();
    let (tx, rx) = mpsc::channel();
    let (mut producer, mut consumer) = rtrb::RingBuffer::<PeerEvent>::new(QUEUE);
    let consumer_pinning = pinning.clone();
    let config_copy = *config;
    let consumer_thread = spawn("rtrb-latency-consumer", move || {
        consumer_pinning.pin_current(1);
        let mut tally = LatencyTally::new(epoch, &config_copy, tx);
        let mut spin = BoundedSpin::new("rtrb latency consumer waiting for events");
        while !tally.is_complete() {
            match consumer.pop() {
                Ok(e) => tally.add(e.seq, e.scheduled_ns),
                Err(_) if consumer.is_abandoned() && consumer.is_empty() => break,
                Err(_) => spin.idle(false),
            }
        }
    });
    let producer_thread = spawn("rtrb-latency-producer", move || {
        pinning.pin_current(0);
        let mut spin = BoundedSpin::new("rtrb latency producer waiting for room");
        inject(epoch, &config_copy, |seq, due| {
            let mut event = PeerEvent {
                seq,
                scheduled_ns: due,
                ..PeerEvent::default()
            };
            loop {
                match producer.push(event) {
                    Ok(()) => break,
                    Err(rtrb::PushError::Full(back)) => {
                        event = back;
                        spin.idle(false);
                    }
                }
            }
        });
    });
    join(producer_thread);
    let histogram = collect(what, &rx, config);
    join(consumer_thread);
    histogram
}

/// One line of the latency table: the histogram merged over every run.
#[derive(Debug, Clone)]
pub struct LatencyRow {
    /// The implementation.
    pub implementation: &'static str,
    /// How its threads wait.
    pub idle: &'static str,
    /// Ring or queue capacity.
    pub capacity: usize,
    /// Runs merged.
    pub runs: usize,
    /// Percentiles of the merged histogram, ns.
    pub percentiles: Percentiles,
    /// p50 of each run, ns, in run order (run-to-run spread).
    pub run_p50: Vec<u64>,
    /// p99 of each run, ns, in run order.
    pub run_p99: Vec<u64>,
    /// The merged histogram, ns (for plots).
    pub histogram: Histogram<u64>,
}

impl LatencyRow {
    /// The median of the runs' p50s and of their p99s, ns: robust to one run the host
    /// disturbed, which the merged histogram's p99 is not (a run with a 1 ms stall in it
    /// decides the merged p99 alone).
    pub fn median_of_runs(&self) -> (u64, u64) {
        (median(&self.run_p50), median(&self.run_p99))
    }

    /// This row's p50 and p99 over `reference`'s, run by run (run k against run k, which
    /// ran under the same state of the host), and the median of those ratios: above 1
    /// means `reference` has the lower latency. See [`Row::paired_ratio`](super::Row::paired_ratio).
    pub fn paired_ratios(&self, reference: &Self) -> (f64, f64) {
        let paired = |ours: &[u64], theirs: &[u64]| {
            let as_f64 = |v: &[u64]| v.iter().map(|&ns| ns.max(1) as f64).collect::<Vec<_>>();
            super::median_paired_ratio(&as_f64(ours), &as_f64(theirs))
        };
        (
            paired(&self.run_p50, &reference.run_p50),
            paired(&self.run_p99, &reference.run_p99),
        )
    }
}

/// Per-run figures as a space-separated list of durations ("158ns 156ns 1.2ms").
pub fn format_runs(values: &[u64]) -> String {
    values
        .iter()
        .map(|&ns| format_ns(ns))
        .collect::<Vec<_>>()
        .join(" ")
}

fn median(values: &[u64]) -> u64 {
    let values: Vec<f64> = values.iter().map(|&ns| ns as f64).collect();
    super::median(&values) as u64
}

/// Runs every case `runs` times, interleaved (case A, B, ..., then A, B, ... again) so
/// that a disturbance hits every implementation alike; merges each case's histograms.
pub fn latency_table(config: &LatencyConfig, runs: usize) -> Vec<LatencyRow> {
    let cases = latency_cases();
    let mut merged: Vec<Histogram<u64>> = cases.iter().map(|_| new_histogram()).collect();
    let mut run_p50 = vec![Vec::new(); cases.len()];
    let mut run_p99 = vec![Vec::new(); cases.len()];
    for run in 0..runs {
        for (i, case) in cases.iter().enumerate() {
            eprintln!(
                "latency run {}/{runs}: {} {} ...",
                run + 1,
                case.implementation,
                case.idle
            );
            let h = case.run(config);
            run_p50[i].push(h.value_at_quantile(0.5));
            run_p99[i].push(h.value_at_quantile(0.99));
            // Same bounds on both sides, so `add` cannot fail.
            let _ = merged[i].add(&h);
        }
    }
    cases
        .iter()
        .zip(merged)
        .zip(run_p50.into_iter().zip(run_p99))
        .map(|((case, h), (p50, p99))| LatencyRow {
            implementation: case.implementation,
            idle: case.idle,
            capacity: case.capacity,
            runs,
            percentiles: Percentiles::of(&h),
            run_p50: p50,
            run_p99: p99,
            histogram: h,
        })
        .collect()
}

/// The latency table as markdown, with each row's p50 and p99 against tickwire's, run by
/// run ([`LatencyRow::paired_ratios`]; "this / tickwire": above 1 means tickwire's latency
/// is lower).
pub fn latency_markdown(config: &LatencyConfig, rows: &[LatencyRow]) -> String {
    let mut out = String::new();
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let _ = writeln!(
            out,
            "Load average when printed (1, 5, 15 min): {}\n",
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let _ = writeln!(
        out,
        "1P-1C one-way latency at {} events/s ({} recorded per run, after {} warm-up; scheduled \
         send time, corrected for coordinated omission)\n",
        config.rate, config.measured, config.warmup
    );
    let _ = writeln!(
        out,
        "| implementation | idle strategy | ring size | runs | p50 | p99 | p99.9 | max | median of runs p50 / p99 | per-run p50 | per-run p99 | p50 / tickwire (run by run) | p99 / tickwire (run by run) |"
    );
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|"
    );
    let reference = rows.iter().find(|r| r.implementation == "tickwire");
    for row in rows {
        let p = row.percentiles;
        let (median_p50, median_p99) = row.median_of_runs();
        let (r50, r99) = reference.map_or((f64::NAN, f64::NAN), |t| row.paired_ratios(t));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {r50:.2}x | {r99:.2}x |",
            row.implementation,
            row.idle,
            row.capacity,
            row.runs,
            format_ns(p.p50),
            format_ns(p.p99),
            format_ns(p.p999),
            format_ns(p.max),
            format_ns(median_p50),
            format_ns(median_p99),
            format_runs(&row.run_p50),
            format_runs(&row.run_p99),
        );
    }
    out
}

/// Suggested wall time of one latency run, for progress messages.
pub fn run_time(config: &LatencyConfig) -> Duration {
    Duration::from_nanos(config.due_ns(config.total()))
}
