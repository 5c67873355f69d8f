//! `tickwire bench`: the performance suite (`tickwire_bench::suite`), every scenario with its
//! peers measured in the same run. Writes `results.md`, `results.json` and the plots (SVG,
//! PNG) into `--out`; progress on stderr; the table on stdout.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use tickwire_bench::suite::{self, SCENARIOS, SuiteConfig};

/// Options of `tickwire bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Short runs: the whole suite in ~10-20 s (the CI smoke check; figures too short to quote).
    #[arg(long)]
    pub quick: bool,
    /// Directory for `results.md`, `results.json` and the plots.
    #[arg(long, value_name = "DIR", default_value = "target/tickwire-bench")]
    pub out: PathBuf,
    /// Run only the scenarios whose name contains PAT: ring-throughput, ring-latency, itch,
    /// binance, dbn, journal, quic, end-to-end.
    #[arg(long, value_name = "PAT")]
    pub filter: Option<String>,
    /// The recorded data (`binance/`, `databento/`). Default: `$TICKWIRE_DATA`, else
    /// `../shared/data`. Scenarios whose file is absent are reported as skipped.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

/// Runs the suite and prints the markdown table.
pub fn bench(args: &BenchArgs) -> Result<()> {
    let config = SuiteConfig {
        quick: args.quick,
        out: args.out.clone(),
        filter: args.filter.clone(),
        data: args.data.clone().unwrap_or_else(SuiteConfig::default_data),
    };
    eprintln!(
        "tickwire bench{}: scenarios {}; data {}; output {}",
        if args.quick { " --quick" } else { "" },
        SCENARIOS.join(", "),
        config.data.display(),
        config.out.display()
    );
    let result = suite::run(&config);
    if let Ok(markdown) = std::fs::read_to_string(config.out.join("results.md")) {
        print!("{markdown}");
    }
    let results = result.context("the benchmark suite is incomplete")?;
    eprintln!(
        "{} scenarios, {} rows; wrote {} and {} plots",
        results.scenarios.len(),
        results.rows.len(),
        config.out.join("results.json").display(),
        results.plots.len()
    );
    Ok(())
}
