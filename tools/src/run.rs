//! `tickwire run`: the engine on the synthetic feed, with live figures.
//!
//! The pipeline is [`crate::pipeline`]'s: synthetic -> ingest -> MD ring -> top-of-book and
//! trade-stats -> audit. The main thread prints the interval percentiles once a second and
//! the whole run's at the end.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use tickwire_engine::agent::{StopToken, available_cores};
use tickwire_engine::latency::{Percentiles, format_ns};
use tickwire_feeds::synthetic::{SyntheticConfig, SyntheticFeed};

use crate::pipeline::{PipelineArgs, install_ctrl_c, md_pipeline};

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
    #[command(flatten)]
    pub pipeline: PipelineArgs,
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
            pipeline: PipelineArgs::default(),
            duration: None,
        }
    }
}

/// Runs the engine until Ctrl-C (or `--duration`), printing figures every second.
pub fn run(args: &RunArgs) -> Result<()> {
    let feed = SyntheticFeed::new(SyntheticConfig {
        seed: args.seed,
        instruments: args.instruments,
        rate: args.rate,
        real_time: true,
        ..SyntheticConfig::default()
    });
    let instruments = args.instruments.max(1) as usize;
    let stop = StopToken::new();
    let (layout, mut hops) = md_pipeline(feed, instruments, &args.pipeline, &stop)?;
    println!(
        "tickwire {} — synthetic feed, {} instruments, rate {}, ring {} slots",
        env!("CARGO_PKG_VERSION"),
        instruments,
        if args.rate == 0 {
            "flat out".to_owned()
        } else {
            format!("{}/s", args.rate)
        },
        args.pipeline.ring_size
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
    let mut last_count = 0u64;
    let mut last_tick = started;
    while !pipeline.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
        if deadline.is_some_and(|d| Instant::now() >= d) {
            stop.stop();
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            let now = Instant::now();
            let count = hops.handled();
            let rate = (count - last_count) as f64 / now.duration_since(last_tick).as_secs_f64();
            let mut line = format!(
                "[{:>5.1}s] {:>7.3}M ev/s",
                started.elapsed().as_secs_f64(),
                rate / 1e6
            );
            for hop in &mut hops.0 {
                let p = Percentiles::of(&hop.take_interval());
                line.push_str(&format!(
                    " | {} p50 {} p99 {}",
                    short_name(hop.name()),
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
    hops.finish();
    hops.print_summary(elapsed);
    report.context("pipeline failed")?;
    Ok(())
}

fn short_name(hop: &str) -> &str {
    hop.strip_prefix("receive->").unwrap_or(hop)
}
