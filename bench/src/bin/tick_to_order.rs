//! End-to-end trading latency: a recorded Binance file (or, without `../shared/data`, the
//! synthetic feed) through ingest -> strategies -> risk -> paper venue -> notifier on two
//! threads, reporting tick-to-order and tick-to-notification p50 / p99 / p99.9 (and every
//! other hop), flat out and at the recorded pace.
//!
//! ```text
//! cargo run --release -p tickwire-bench --bin tick_to_order [-- <events at recorded pace, default 8000>]
//! ```
//!
//! "Tick" is the moment the ingest thread writes the event into the market-data ring
//! (its `receive_ts` is restamped with the wall clock there). Flat out, the ingest thread
//! runs ahead of the trading thread by up to a ring (4096 events here), so the figures are
//! mostly queueing; at the recorded pace they are the pipeline's own latency.

use std::path::Path;

use tickwire_bench::end_to_end;
use tickwire_engine::instrument::InstrumentRegistry;
use tickwire_engine::latency::format_ns;
use tickwire_feeds::binance::{BinanceConfig, BinanceFeed};
use tickwire_feeds::synthetic::{SyntheticConfig, SyntheticFeed};
use tickwire_strategies::pipeline::{Report, TradingConfig, TradingPipeline};

fn run(label: &str, config: &TradingConfig, binance: Option<&Path>) -> Report {
    let pipeline = TradingPipeline::new(config.clone());
    let report = match binance {
        Some(path) => {
            let feed = BinanceFeed::open(path, BinanceConfig::default())
                .unwrap_or_else(|e| panic!("{e}"))
                .with_registry(InstrumentRegistry::from_symbols(["BTCUSDT"]));
            pipeline.run(feed)
        }
        None => pipeline.run(SyntheticFeed::new(SyntheticConfig {
            instruments: 1,
            events: Some(150_000),
            rate: 400, // simulated: about the recorded file's rate
            ..SyntheticConfig::default()
        })),
    }
    .unwrap_or_else(|e| panic!("{label}: {e}"));
    println!(
        "== {label}: {} events in {:.2} s; {} orders, {} fills, {} notifications",
        report.events,
        report.elapsed.as_secs_f64(),
        report.execution.orders + report.execution.cancels,
        report.execution.fills,
        report.notifier.notifications
    );
    println!(
        "   {:<22} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "hop", "count", "p50", "p99", "p99.9", "max"
    );
    for h in &report.latency {
        let p = h.percentiles;
        println!(
            "   {:<22} {:>8} {:>10} {:>10} {:>10} {:>10}",
            h.name,
            p.count,
            format_ns(p.p50),
            format_ns(p.p99),
            format_ns(p.p999),
            format_ns(p.max)
        );
    }
    report
}

fn main() {
    let paced_events: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(8000);
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/binance/spot_btcusdt_20240808.gz");
    let binance = path.exists().then_some(path.as_path());
    let symbol = if binance.is_some() {
        "BTCUSDT"
    } else {
        "SYN000"
    };
    match binance {
        Some(p) => println!("feed: {}", p.display()),
        None => println!("feed: synthetic (../shared/data/binance is absent)"),
    }
    let base = end_to_end::config(symbol);
    for idle in ["backoff", "yielding"] {
        let mut c = base.clone();
        c.pipeline.idle = idle.into();
        run(&format!("flat out, trading thread {idle}"), &c, binance);
    }
    for idle in ["backoff", "yielding"] {
        let mut c = base.clone();
        c.pipeline.idle = idle.into();
        c.pipeline.pace = Some(1.0);
        c.pipeline.max_events = Some(paced_events);
        run(
            &format!("recorded pace (first {paced_events} events), trading thread {idle}"),
            &c,
            binance,
        );
    }
}
