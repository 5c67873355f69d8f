//! Replays a recorded Binance file through the shipped strategies, the risk checks, the
//! paper venue and the alert rules, and prints orders, fills, positions, PnL, alerts and
//! per-hop latency.
//!
//! ```text
//! cargo run --release -p tickwire-strategies --example replay -- ../shared/data/binance/spot_btcusdt_20240808.gz [config.toml]
//! ```
//!
//! Without a configuration file it runs the built-in one below, with the symbol taken from
//! the file name (`spot_btcusdt_...` -> `BTCUSDT`).

use std::error::Error;
use std::path::Path;

use tickwire_engine::instrument::InstrumentRegistry;
use tickwire_feeds::binance::{BinanceConfig, BinanceFeed};
use tickwire_strategies::pipeline::{TradingConfig, TradingPipeline};

/// The built-in configuration; `{SYMBOL}` is replaced by the file's symbol.
const DEFAULT_CONFIG: &str = r#"
[pipeline]
restamp = true

[risk]
max_order_size = 0.05
max_position = 0.1
max_notional = 5000.0
collar_bps = 20
max_orders = 20
rate_window_ms = 1000

# Moving-average crossover on the mid, sampled every second.
[strategies.ma_cross]
user = 1
instrument = "{SYMBOL}"
fast = 5
slow = 20
sample_ms = 1000
size = 0.02
slippage_bps = 2

# Inventory-skewed market maker.
[strategies.market_maker]
user = 2
instrument = "{SYMBOL}"
size = 0.01
half_spread_bps = 0.5
skew_bps = 0.5
max_position = 0.05
requote_bps = 0.3
min_requote_ms = 250

[[alerts]]
user = 1
rule = "fills"
strategy = "ma_cross"

[[alerts]]
user = 2
rule = "fills"
strategy = "market_maker"
cooldown_ms = 5000

[[alerts]]
user = 2
rule = "rejects"
strategy = "market_maker"

[[alerts]]
user = 3
rule = "move"
instrument = "{SYMBOL}"
percent = 0.05
window_ms = 30000
cooldown_ms = 10000

[[alerts]]
user = 3
rule = "spread_wide"
instrument = "{SYMBOL}"
spread = 0.5
cooldown_ms = 1000
"#;

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        return Err("usage: replay <binance recording .gz> [config.toml]".into());
    };
    let symbol = symbol_of(Path::new(&path));
    let config = match args.next() {
        Some(file) => TradingConfig::from_file(file)?,
        None => TradingConfig::from_toml(&DEFAULT_CONFIG.replace("{SYMBOL}", &symbol))?,
    };
    // The strategies name instruments by symbol: seed the feed's registry so ids are known
    // before the first line is read.
    let registry = InstrumentRegistry::from_symbols([symbol.as_str()]);
    let feed = BinanceFeed::open(&path, BinanceConfig::default())?.with_registry(registry);
    let report = TradingPipeline::new(config).run(feed)?;
    println!("{report}");
    Ok(())
}

/// `spot_btcusdt_20240808.gz` -> `BTCUSDT`.
fn symbol_of(path: &Path) -> String {
    let stem = path
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    stem.split('_').nth(1).unwrap_or("BTCUSDT").to_uppercase()
}
