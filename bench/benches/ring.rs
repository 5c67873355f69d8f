//! Criterion benchmarks of tickwire's ring against its peers (see `tickwire_bench::ring`
//! for the scenarios), then a peer table measured by the same code, printed as markdown.
//!
//! ```text
//! cargo bench -p tickwire-bench --bench ring                 # criterion, then the table
//! RING_TABLE_ONLY=1 cargo bench -p tickwire-bench --bench ring   # the table only
//! RING_TABLE=0 cargo bench -p tickwire-bench --bench ring -- 1p1c  # criterion only, filtered
//! ```
//!
//! Each criterion iteration is one event: a sample publishes `iters` events through a
//! fresh ring and fresh threads, and times the first publish to the last consumer's last
//! event (thread start-up and ring allocation are outside the timing).

use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput};
use tickwire_bench::ring::{Scenario, TableConfig, cases, markdown, peer_table};

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
        ring_benches(&mut criterion);
        criterion.final_summary();
    }
    if env_flag("RING_TABLE") != Some(false) {
        let config = TableConfig::default();
        let rows = peer_table(&config, |_| true);
        println!("\n## Peer table (median of {} runs)\n", config.runs);
        print!("{}", markdown(&rows));
    }
}
