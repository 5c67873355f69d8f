//! The market-data pipeline that `run` and `replay` share: a feed through the MD ring to
//! three probing handlers.
//!
//! ```text
//!                               ┌─► top-of-book ─┐
//! feed ──► ingest ──► MD ring ──┤                ├─► audit (diamond: after both)
//!                               └─► trade-stats ─┘
//! ```
//!
//! The ingest agent runs on one thread; the three handlers share another (the agent model:
//! one thread, several agents). With two or more cores each thread is pinned to a core of
//! its own. Every handler records the latency from the event's receive timestamp (stamped by
//! the feed, or re-stamped at injection on a replay) to its own processing into an
//! HdrHistogram; the caller takes the intervals and keeps the totals in [`Hops`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;
use tickwire_engine::agent::{
    Handler, HandlerAgent, Layout, StopToken, ThreadSpec, available_cores,
};
use tickwire_engine::clock::wall_ns;
use tickwire_engine::event::Event;
use tickwire_engine::idle::IdleStrategy;
use tickwire_engine::latency::{
    HopLatency, LatencyRecorder, Percentiles, format_ns, new_histogram,
};
use tickwire_engine::ring::RingBuilder;
use tickwire_feeds::{Feed, IngestAgent};

use crate::progress::human_rate;

/// Options of the ring and its threads, shared by `run`, `replay` and `record`.
#[derive(Debug, Clone, Args)]
pub struct PipelineArgs {
    /// Slots in the market-data ring (a power of two).
    #[arg(long, default_value_t = 65_536)]
    pub ring_size: usize,
    /// Cores for the ingest and handler threads, e.g. `0,1`; `auto` picks the first two
    /// available; `none` leaves threads unpinned.
    #[arg(long, default_value = "auto")]
    pub cores: String,
    /// Idle strategy of the handler thread: busy-spin, no-op, spin-batching, yielding, backoff,
    /// blocking or sleeping.
    #[arg(long, default_value = "yielding")]
    pub idle: IdleStrategy,
}

impl Default for PipelineArgs {
    fn default() -> Self {
        Self {
            ring_size: 65_536,
            cores: "auto".into(),
            idle: IdleStrategy::YIELDING,
        }
    }
}

/// Which cores the ingest and handler threads get.
pub fn pick_cores(spec: &str) -> Result<(Option<usize>, Option<usize>)> {
    let available = available_cores();
    match spec {
        "none" => Ok((None, None)),
        "auto" => Ok(match available.as_slice() {
            [a, b, ..] => (Some(*a), Some(*b)),
            // One core: pinning two threads to it would only add contention.
            _ => (None, None),
        }),
        list => {
            let cores: Vec<usize> = list
                .split(',')
                .map(|c| {
                    c.trim()
                        .parse::<usize>()
                        .with_context(|| format!("--cores: `{c}` is not a core number"))
                })
                .collect::<Result<_>>()?;
            let [ingest, handlers] = cores[..] else {
                bail!(
                    "--cores takes two cores (ingest,handlers), got {}",
                    cores.len()
                );
            };
            Ok((Some(ingest), Some(handlers)))
        }
    }
}

/// Counts events and records receive -> handler latency; the work it does per event stands
/// in for what a real consumer would do (and keeps the compiler from discarding it).
struct Probe<W> {
    work: W,
    recorder: LatencyRecorder,
    handled: Arc<AtomicU64>,
    local: u64,
}

impl<W: FnMut(&Event) + Send> Handler<Event> for Probe<W> {
    #[inline]
    fn on_event(&mut self, event: &Event, _sequence: u64, end_of_batch: bool) {
        (self.work)(event);
        let now = wall_ns();
        self.recorder.record(now.saturating_sub(event.receive_ts));
        self.local += 1;
        if end_of_batch {
            // Relaxed: a statistic read once a second, no data hangs on it.
            self.handled.store(self.local, Ordering::Relaxed);
            self.recorder.maybe_flush(now);
        }
    }

    fn on_shutdown(&mut self) {
        self.handled.store(self.local, Ordering::Relaxed);
        self.recorder.flush();
    }
}

/// One hop's shared latency, its handled count, and the whole run's histogram.
pub struct Hop {
    latency: Arc<HopLatency>,
    handled: Arc<AtomicU64>,
    total: Histogram<u64>,
}

impl Hop {
    fn new(name: &str) -> Self {
        Self {
            latency: Arc::new(HopLatency::new(name)),
            handled: Arc::new(AtomicU64::new(0)),
            total: new_histogram(),
        }
    }

    fn probe<W: FnMut(&Event) + Send>(&self, work: W) -> Probe<W> {
        Probe {
            work,
            recorder: LatencyRecorder::new(Arc::clone(&self.latency)),
            handled: Arc::clone(&self.handled),
            local: 0,
        }
    }

    /// The hop's name (`receive->audit`, ...).
    pub fn name(&self) -> &str {
        self.latency.name()
    }

    /// Events its handler processed so far.
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    /// Takes the interval since the last call, adds it to the total and returns it.
    pub fn take_interval(&mut self) -> Histogram<u64> {
        let interval = self.latency.take_interval();
        // Same bounds on both sides, so `add` cannot fail.
        let _ = self.total.add(&interval);
        interval
    }
}

/// The three hops of the pipeline: top-of-book, trade-stats, audit (the last, after both).
pub struct Hops(pub [Hop; 3]);

/// One hop of a final report, ns.
#[derive(Debug, Clone, Serialize)]
pub struct HopReport {
    /// `receive->top-of-book`, ...
    pub hop: String,
    /// Events handled.
    pub events: u64,
    /// Median latency, ns.
    pub p50_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
    /// 99.9th percentile, ns.
    pub p999_ns: u64,
    /// Maximum, ns.
    pub max_ns: u64,
}

impl Hops {
    /// Events through the whole pipeline (the audit handler runs after the others).
    pub fn handled(&self) -> u64 {
        self.0[2].handled()
    }

    /// Adds what is left in the intervals to the totals (after the pipeline ended).
    pub fn finish(&mut self) {
        for hop in &mut self.0 {
            hop.take_interval();
        }
    }

    /// The whole run's histogram per hop, named (for plots and the HdrHistogram log).
    pub fn histograms(&self) -> Vec<(&str, &Histogram<u64>)> {
        self.0.iter().map(|hop| (hop.name(), &hop.total)).collect()
    }

    /// The whole run's percentiles per hop.
    pub fn report(&self) -> Vec<HopReport> {
        self.0
            .iter()
            .map(|hop| {
                let p = Percentiles::of(&hop.total);
                HopReport {
                    hop: hop.name().to_owned(),
                    events: hop.handled(),
                    p50_ns: p.p50,
                    p99_ns: p.p99,
                    p999_ns: p.p999,
                    max_ns: p.max,
                }
            })
            .collect()
    }

    /// Prints the summary line and the per-hop table.
    pub fn print_summary(&self, elapsed: Duration) {
        let events = self.handled();
        println!(
            "\nsummary: {events} events in {:.2}s ({} ev/s)",
            elapsed.as_secs_f64(),
            human_rate(events as f64 / elapsed.as_secs_f64())
        );
        println!(
            "{:<24} {:>12} {:>9} {:>9} {:>9} {:>9}",
            "hop", "events", "p50", "p99", "p99.9", "max"
        );
        for hop in self.report() {
            println!(
                "{:<24} {:>12} {:>9} {:>9} {:>9} {:>9}",
                hop.hop,
                hop.events,
                format_ns(hop.p50_ns),
                format_ns(hop.p99_ns),
                format_ns(hop.p999_ns),
                format_ns(hop.max_ns)
            );
        }
    }
}

/// `slots[index]`, growing `slots` for instruments a feed discovers as it goes.
#[inline]
fn slot<T: Default + Clone>(slots: &mut Vec<T>, index: u32) -> &mut T {
    let index = index as usize;
    if index >= slots.len() {
        slots.resize(index + 1, T::default());
    }
    &mut slots[index]
}

/// Builds the pipeline of the module docs for `feed`: the layout to spawn and its hops.
/// `instruments` sizes the handlers' per-instrument state (it grows if the feed finds more).
pub fn md_pipeline<F: Feed + 'static>(
    feed: F,
    instruments: usize,
    args: &PipelineArgs,
    stop: &StopToken,
) -> Result<(Layout, Hops)> {
    let (ingest_core, handler_core) = pick_cores(&args.cores)?;
    let mut ring = RingBuilder::<Event>::new(args.ring_size)
        .with_context(|| format!("--ring-size {}", args.ring_size))?;
    let tob_sub = ring.subscriber("top-of-book");
    let trades_sub = ring.subscriber("trade-stats");
    let audit_sub = ring.subscriber_after("audit", &[&tob_sub, &trades_sub]);
    let publisher = ring.build()?;

    let hops = [
        Hop::new("receive->top-of-book"),
        Hop::new("receive->trade-stats"),
        Hop::new("receive->audit"),
    ];
    let mut mids = vec![0i64; instruments];
    let tob = hops[0].probe(move |e: &Event| {
        if let Some(q) = e.quote() {
            *slot(&mut mids, e.instrument) = q.mid_px();
        }
    });
    let mut notional = vec![0i128; instruments];
    let trades = hops[1].probe(move |e: &Event| {
        if let Some(t) = e.trade() {
            *slot(&mut notional, e.instrument) += i128::from(t.price) * i128::from(t.size);
        }
    });
    let mut digest = 0u64;
    let audit = hops[2].probe(move |e: &Event| digest = digest.wrapping_add(e.checksum()));

    let layout = Layout::new()
        .with_stop_token(stop.clone())
        .thread(
            ThreadSpec::new("ingest")
                .core(ingest_core)
                .idle(IdleStrategy::YIELDING)
                .agent(IngestAgent::new(feed, publisher)),
        )
        .thread(
            ThreadSpec::new("handlers")
                .core(handler_core)
                .idle(args.idle)
                .agent(HandlerAgent::new(tob_sub, tob))
                .agent(HandlerAgent::new(trades_sub, trades))
                .agent(HandlerAgent::new(audit_sub, audit)),
        );
    Ok((layout, Hops(hops)))
}

/// First Ctrl-C (or SIGTERM): stop the feed and let the rings drain. Second: exit now.
pub fn install_ctrl_c(stop: &StopToken) -> Result<()> {
    let stop = stop.clone();
    let already = AtomicBool::new(false);
    ctrlc::set_handler(move || {
        if already.swap(true, Ordering::Relaxed) {
            eprintln!("\nsecond signal: exiting without draining");
            std::process::exit(130);
        }
        eprintln!("\nstopping: draining the rings (Ctrl-C again to force)");
        stop.stop();
    })
    .context("installing the Ctrl-C handler")
}
