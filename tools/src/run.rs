//! `tickwire run`: the engine on the synthetic feed, with live figures.
//!
//! ```text
//!                                   ┌─► top-of-book ─┐
//! synthetic ──► ingest ──► MD ring ─┤                ├─► audit (diamond: after both)
//!                                   └─► trade-stats ─┘
//! ```
//!
//! The ingest agent runs on one thread; the three handlers share another (the agent model:
//! one thread, several agents). With two or more cores each thread is pinned to a core of
//! its own. Every handler records the latency from the event's receive timestamp (stamped by
//! the feed) to its own processing into an HdrHistogram; the main thread prints the interval
//! percentiles once a second and the whole run's at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use hdrhistogram::Histogram;
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
use tickwire_feeds::IngestAgent;
use tickwire_feeds::synthetic::{SyntheticConfig, SyntheticFeed};

/// Options of `tickwire run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Synthetic events per second (0 = as fast as the ring takes them).
    #[arg(long, default_value_t = 1_000_000)]
    pub rate: u64,
    /// Number of synthetic instruments.
    #[arg(long, default_value_t = 16)]
    pub instruments: u32,
    /// Seed of the synthetic generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Slots in the market-data ring (a power of two).
    #[arg(long, default_value_t = 65_536)]
    pub ring_size: usize,
    /// Cores for the ingest and handler threads, e.g. `0,1`; `auto` picks the first two
    /// available; `none` leaves threads unpinned.
    #[arg(long, default_value = "auto")]
    pub cores: String,
    /// Idle strategy of the handler thread: busy-spin, yielding, backoff or blocking.
    #[arg(long, default_value = "yielding")]
    pub idle: IdleStrategy,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<f64>,
}

impl Default for RunArgs {
    fn default() -> Self {
        Self {
            rate: 1_000_000,
            instruments: 16,
            seed: 42,
            ring_size: 65_536,
            cores: "auto".into(),
            idle: IdleStrategy::YIELDING,
            duration: None,
        }
    }
}

/// Which cores the ingest and handler threads get.
fn pick_cores(spec: &str) -> Result<(Option<usize>, Option<usize>)> {
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

struct Hop {
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
}

/// Runs the engine until Ctrl-C (or `--duration`), printing figures every second.
pub fn run(args: &RunArgs) -> Result<()> {
    let (ingest_core, handler_core) = pick_cores(&args.cores)?;
    let mut ring = RingBuilder::<Event>::new(args.ring_size)
        .with_context(|| format!("--ring-size {}", args.ring_size))?;
    let tob_sub = ring.subscriber("top-of-book");
    let trades_sub = ring.subscriber("trade-stats");
    let audit_sub = ring.subscriber_after("audit", &[&tob_sub, &trades_sub]);
    let publisher = ring.build()?;

    let feed = SyntheticFeed::new(SyntheticConfig {
        seed: args.seed,
        instruments: args.instruments,
        rate: args.rate,
        real_time: true,
        ..SyntheticConfig::default()
    });
    let instruments = args.instruments.max(1) as usize;

    let hops = [
        Hop::new("receive->top-of-book"),
        Hop::new("receive->trade-stats"),
        Hop::new("receive->audit"),
    ];
    let mut mids = vec![0i64; instruments];
    let tob = hops[0].probe(move |e: &Event| {
        if let Some(q) = e.quote() {
            if let Some(mid) = mids.get_mut(e.instrument as usize) {
                *mid = q.mid_px();
            }
        }
    });
    let mut notional = vec![0i128; instruments];
    let trades = hops[1].probe(move |e: &Event| {
        if let Some(t) = e.trade() {
            if let Some(n) = notional.get_mut(e.instrument as usize) {
                *n += i128::from(t.price) * i128::from(t.size);
            }
        }
    });
    let mut digest = 0u64;
    let audit = hops[2].probe(move |e: &Event| digest = digest.wrapping_add(e.checksum()));

    let stop = StopToken::new();
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
    println!(
        "tickwire {} — synthetic feed, {} instruments, rate {}, ring {} slots",
        env!("CARGO_PKG_VERSION"),
        instruments,
        if args.rate == 0 {
            "flat out".to_owned()
        } else {
            format!("{}/s", args.rate)
        },
        args.ring_size
    );
    println!(
        "thread layout (available cores {:?}):\n{}",
        available_cores(),
        layout.describe()
    );

    install_ctrl_c(&stop)?;
    let pipeline = layout.spawn()?;
    println!("running; Ctrl-C to stop\n");

    let started = Instant::now();
    let deadline = args.duration.map(|s| started + Duration::from_secs_f64(s));
    let mut hops = hops;
    let mut last_count = 0u64;
    let mut last_tick = started;
    while !pipeline.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
        if deadline.is_some_and(|d| Instant::now() >= d) {
            stop.stop();
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            let now = Instant::now();
            let count = hops[2].handled.load(Ordering::Relaxed);
            let rate = (count - last_count) as f64 / now.duration_since(last_tick).as_secs_f64();
            let mut line = format!(
                "[{:>5.1}s] {:>7.3}M ev/s",
                started.elapsed().as_secs_f64(),
                rate / 1e6
            );
            for hop in &mut hops {
                let interval = hop.latency.take_interval();
                let _ = hop.total.add(&interval);
                let p = Percentiles::of(&interval);
                line.push_str(&format!(
                    " | {} p50 {} p99 {}",
                    short_name(hop.latency.name()),
                    format_ns(p.p50),
                    format_ns(p.p99)
                ));
            }
            println!("{line}");
            last_count = count;
            last_tick = now;
        }
    }
    let elapsed = started.elapsed();
    let report = pipeline.join();
    for hop in &mut hops {
        let _ = hop.total.add(hop.latency.take_interval());
    }
    print_summary(&hops, elapsed);
    report.context("pipeline failed")?;
    Ok(())
}

fn short_name(hop: &str) -> &str {
    hop.strip_prefix("receive->").unwrap_or(hop)
}

fn print_summary(hops: &[Hop], elapsed: Duration) {
    let events = hops[2].handled.load(Ordering::Relaxed);
    println!(
        "\nsummary: {events} events in {:.2}s ({:.3}M ev/s)",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64() / 1e6
    );
    println!(
        "{:<24} {:>12} {:>9} {:>9} {:>9} {:>9}",
        "hop", "events", "p50", "p99", "p99.9", "max"
    );
    for hop in hops {
        let p = Percentiles::of(&hop.total);
        println!(
            "{:<24} {:>12} {:>9} {:>9} {:>9} {:>9}",
            hop.latency.name(),
            hop.handled.load(Ordering::Relaxed),
            format_ns(p.p50),
            format_ns(p.p99),
            format_ns(p.p999),
            format_ns(p.max)
        );
    }
}

/// First Ctrl-C (or SIGTERM): stop the feed and let the rings drain. Second: exit now.
fn install_ctrl_c(stop: &StopToken) -> Result<()> {
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
