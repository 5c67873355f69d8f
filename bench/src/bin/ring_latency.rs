//! 1P-1C one-way latency of tickwire's ring against its peers at a fixed injection rate;
//! prints a markdown table. See `tickwire_bench::ring::latency` for the method.
//!
//! ```text
//! cargo run --release -p tickwire-bench --bin ring_latency -- --rate 100000 --seconds 2 --runs 3
//! ```

use clap::Parser;
use tickwire_bench::ring::latency::{LatencyConfig, latency_markdown, latency_table, run_time};

/// 1P-1C one-way latency: tickwire vs disruptor vs crossbeam-channel vs rtrb.
#[derive(Debug, Parser)]
struct Args {
    /// Injection rate, events per second.
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// Measured seconds per run (after a tenth of that in warm-up).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Runs per implementation, interleaved; their histograms are merged.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

fn main() {
    let args = Args::parse();
    let measured = (args.rate as f64 * args.seconds).max(1.0) as u64;
    let config = LatencyConfig {
        rate: args.rate,
        warmup: (measured / 10).max(1),
        measured,
    };
    eprintln!(
        "each run takes ~{:?}; {} runs of 5 cases",
        run_time(&config),
        args.runs
    );
    let rows = latency_table(&config, args.runs.max(1));
    print!("{}", latency_markdown(&config, &rows));
}
