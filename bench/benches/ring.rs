//! Criterion benchmarks of tickwire's ring against its peers (see `tickwire_bench::ring`
//! for the scenarios), then a peer table measured by the same code, printed as markdown.
//!
//! ```text
//! cargo bench -p tickwire-bench --bench ring                 # criterion, then the table
//! RING_TABLE_ONLY=1 cargo bench -p tickwire-bench --bench ring   # the table only
//! RING_TABLE=0 cargo bench -p tickwire-bench --bench ring -- 1p1c  # criterion only, filtered
//! RING_TABLE_ONLY=1 RING_TABLE_RUNS=3 RING_TABLE_FILTER="pipeline3 tickwire" \
//!     cargo bench -p tickwire-bench --bench ring                 # some table rows
//! ```
//!
//! Each criterion iteration is one event: a sample publishes `iters` events through a
//! fresh ring and fresh threads, and times the first publish to the last consumer's last
//! event (thread start-up and ring allocation are outside the timing).

use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput};
use tickwire_bench::ring::{Scenario, TableConfig, cases, markdown, peer_table, single_thread};

/// The publish and poll paths on one thread (no cache-line traffic): instruction cost.
fn single_thread_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring/single-thread");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    for batch in [1, 64] {
        group.bench_function(format!("tickwire/batch{batch}"), |b| {
            b.iter_custom(|iters| single_thread::tickwire(iters, batch))
        });
        group.bench_function(format!("disruptor/batch{batch}"), |b| {
            b.iter_custom(|iters| single_thread::disruptor(iters, batch))
        });
    }
    group.finish();
}

fn ring_benches(c: &mut Criterion) {
    let cases = cases();
    for scenario in Scenario::ALL {
        let mut group = c.benchmark_group(format!("ring/{}", scenario.name()));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .sampling_mode(SamplingMode::Flat)
            .throughput(Throughput::Elements(1));
        for case in cases.iter().filter(|c| c.scenario == scenario) {
            group.bench_function(case.label(), |b| {
                b.iter_custom(|iters| case.run(iters.max(1)))
            });
        }
        group.finish();
    }
}

fn env_flag(name: &str) -> Option<bool> {
    std::env::var(name).ok().map(|v| v != "0" && !v.is_empty())
}

fn main() {
    if env_flag("RING_TABLE_ONLY") != Some(true) {
        let mut criterion = Criterion::default().configure_from_args();
        single_thread_benches(&mut criterion);
        ring_benches(&mut criterion);
        criterion.final_summary();
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and then criterion
    // runs each benchmark once as a smoke test and the table (a minute or more) is skipped.
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let table_only = env_flag("RING_TABLE_ONLY") == Some(true);
    if (bench_mode || table_only) && env_flag("RING_TABLE") != Some(false) {
        let mut config = TableConfig::default();
        if let Some(runs) = std::env::var("RING_TABLE_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            config.runs = runs;
        }
        // Comma-separated substrings of `scenario implementation/idle/capacity`, any of
        // which selects a case, e.g. `pipeline3 tickwire,1p3c-multicast tickwire`.
        let filter = std::env::var("RING_TABLE_FILTER").unwrap_or_default();
        if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
            eprintln!("peer table: load average before: {}", load.trim());
        }
        let rows = peer_table(&config, |case| {
            let name = format!("{} {}", case.scenario.name(), case.label());
            filter.split(',').any(|f| name.contains(f))
        });
        println!("\n## Peer table (median of {} runs)\n", config.runs);
        print!("{}", markdown(&rows));
    }
}
