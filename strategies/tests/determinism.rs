//! The same input replayed twice gives the same order, execution-report and notification
//! sequences (compared by digests of the full sequences), through the real multi-threaded
//! pipeline. Every run is bounded by the pipeline's `timeout_s`.

use std::path::Path;

use tickwire_engine::instrument::InstrumentRegistry;
use tickwire_feeds::binance::{BinanceConfig, BinanceFeed};
use tickwire_feeds::synthetic::{SyntheticConfig, SyntheticFeed};
use tickwire_strategies::pipeline::{Report, TradingConfig, run_replay};
use tickwire_strategies::risk::RejectReason;

fn config(symbol: &str, extra: &str) -> TradingConfig {
    TradingConfig::from_toml(&format!(
        r#"
        [pipeline]
        timeout_s = 120
        md_ring = 4096

        [risk]
        max_order_size = 50.0
        max_position = 200.0
        max_notional = 100000000.0
        collar_bps = 50
        max_orders = 5
        rate_window_ms = 1000
        {extra}

        [strategies.ma_cross]
        instrument = "{symbol}"
        fast = 3
        slow = 8
        sample_ms = 200
        size = 10.0

        [strategies.market_maker]
        instrument = "{symbol}"
        size = 5.0
        half_spread_bps = 1.0
        skew_bps = 0.5
        max_position = 20.0
        requote_bps = 0.5
        min_requote_ms = 20

        [[alerts]]
        user = 1
        rule = "fills"
        strategy = "market_maker"
        cooldown_ms = 100

        [[alerts]]
        user = 1
        rule = "rejects"
        strategy = "ma_cross"

        [[alerts]]
        user = 2
        rule = "move"
        instrument = "{symbol}"
        percent = 0.05
        window_ms = 2000
        cooldown_ms = 500

        [[alerts]]
        user = 2
        rule = "spread_wide"
        instrument = "{symbol}"
        spread = 0.02
        "#
    ))
    .expect("valid configuration")
}

fn synthetic() -> SyntheticFeed {
    SyntheticFeed::new(SyntheticConfig {
        instruments: 2,
        events: Some(200_000),
        rate: 10_000, // simulated time: 20 s of market
        ..SyntheticConfig::default()
    })
}

fn assert_same(a: &Report, b: &Report) {
    assert_eq!(a.digest(), b.digest(), "sequences differ:\n{a}\n---\n{b}");
    assert_eq!(a.execution, b.execution);
    assert_eq!(a.notifier, b.notifier);
    // What the alert log read off the notification ring is what the notifier wrote.
    assert_eq!(a.alert_log.digest, a.notifier.digest);
    assert_eq!(a.alert_log.count, a.notifier.notifications);
}

#[test]
fn synthetic_feed_replays_identically() {
    let config = config("SYN000", "");
    let a = run_replay(synthetic(), &config).expect("first run");
    let b = run_replay(synthetic(), &config).expect("second run");
    println!("{a}");
    assert_eq!(a.events, 200_000);
    assert!(
        a.execution.orders > 50,
        "too few orders to mean anything: {a}"
    );
    assert!(a.execution.fills > 10, "{a}");
    assert!(a.notifier.notifications > 10, "{a}");
    assert!(
        !a.execution.rejects.is_empty(),
        "the rate limit should bite: {a}"
    );
    assert_same(&a, &b);
    // Unlocked (live-style) runs also finish; their sequences may differ.
    let mut free = config.clone();
    free.pipeline.lockstep = false;
    let c = run_replay(synthetic(), &free).expect("free-running run");
    assert_eq!(c.events, 200_000);
}

#[test]
fn pacing_and_restamping_do_not_change_decisions() {
    let mut config = config("SYN000", "");
    let flat = run_replay(synthetic(), &config).expect("flat out");
    config.pipeline.restamp = false;
    let recorded_stamps = run_replay(synthetic(), &config).expect("recorded stamps");
    assert_same(&flat, &recorded_stamps);
}

#[test]
fn kill_switch_rejects_every_order_with_its_reason() {
    let config = config("SYN000", "kill_switch = true");
    let report = run_replay(synthetic(), &config).expect("run");
    assert!(report.execution.orders > 0);
    assert_eq!(report.execution.fills, 0);
    let killed = report.execution.rejected(RejectReason::KillSwitch);
    assert_eq!(killed, report.execution.orders, "{report}");
}

#[test]
fn recorded_binance_file_replays_identically() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/binance/spot_btcusdt_20240808.gz");
    if !path.exists() {
        println!(
            "SKIPPED: {} is absent (../shared/data/binance); the recorded replay is not checked",
            path.display()
        );
        return;
    }
    let mut config = config("BTCUSDT", "");
    // BTC sizes: the synthetic sizes above are far too large.
    for table in config.strategies.values_mut() {
        table.insert("size".into(), toml::Value::Float(0.01));
    }
    config.risk.max_order_size = 0.05;
    config.risk.max_position = 0.1;
    let run = || {
        let feed = BinanceFeed::open(&path, BinanceConfig::default())
            .expect("recording opens")
            .with_registry(InstrumentRegistry::from_symbols(["BTCUSDT"]));
        run_replay(feed, &config).expect("replay")
    };
    let a = run();
    let b = run();
    println!("{a}");
    assert!(a.events > 100_000, "{a}");
    assert!(a.execution.orders > 0 && a.execution.fills > 0, "{a}");
    assert!(a.notifier.notifications > 0, "{a}");
    assert_same(&a, &b);
}

#[test]
fn a_reversal_fits_a_max_order_size_of_one_size() {
    // The service's default: ma_cross trades `size` 1 under `max_order_size` 1. Going from
    // short 1 to long 1 is two orders of 1, not one of 2 (which the risk check refused,
    // leaving the strategy stuck after its first fill).
    let config = TradingConfig::from_toml(
        r#"
        [pipeline]
        timeout_s = 120
        md_ring = 4096

        [risk]
        max_order_size = 1.0
        max_position = 5.0

        [strategies.trend]
        kind = "ma_cross"
        instrument = "SYN001"
        fast = 5
        slow = 20
        sample_ms = 100
        size = 1.0
        "#,
    )
    .expect("valid configuration");
    let report = run_replay(synthetic(), &config).expect("run");
    println!("{report}");
    let too_big = report.execution.rejected(RejectReason::MaxOrderSize);
    assert_eq!(too_big, 0, "{report}");
    assert!(
        report.execution.fills >= 4,
        "the strategy should keep reversing: {report}"
    );
}
