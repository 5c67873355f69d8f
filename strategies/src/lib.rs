//! tickwire's trading subscribers: the [`Strategy`](strategy::Strategy) API, shipped
//! strategies, pre-trade [risk](risk) checks, the [paper venue](venue), [alert
//! rules](notify), and the [pipeline](pipeline) that wires them behind a feed.
//!
//! ```text
//!  feed ─► ingest ─► MD ring ─► strategies ─► order rings ─► execution (risk, venue)
//!                                   ▲                            │
//!                                   └──────── exec ring ◄────────┘──► notifier ─► notification ring ─► alert log
//! ```
//!
//! Every ring has one writer: the ingest agent (market data), each strategy (its orders),
//! the execution agent (execution reports), the notifier (notifications). Replays are
//! deterministic: the stages advance in lockstep over the market data
//! ([`lockstep`]), and everything time-based (timers, rate limits, alert windows and
//! cool-downs) runs on event time. The same recorded day gives the same orders, fills and
//! alerts twice.
//!
//! **Units**, as in the event model: prices `i64` in 10⁻⁹, sizes `u64` in 10⁻⁸, times in
//! ns since the Unix epoch; money (PnL, notional) `i128` in 10⁻¹⁷ ([`position`]).
//! Configuration files write human numbers (`0.01`, `61000`), converted once at load.
//!
//! # Writing a strategy
//!
//! One file: the strategy, its parameters, and [`BuildStrategy`](registry::BuildStrategy);
//! one line to register it. This one buys when the mid breaks `threshold_bps` above where
//! it was at the last check and sells when it breaks below, checking every `every_ms` of
//! event time:
//!
//! ```
//! use serde::Deserialize;
//! use tickwire_engine::event::{Event, OrderType, Quote, Side};
//! use tickwire_engine::instrument::InstrumentRegistry;
//! use tickwire_feeds::synthetic::{SyntheticConfig, SyntheticFeed};
//! use tickwire_strategies::config::{self, ConfigError};
//! use tickwire_strategies::pipeline::{TradingConfig, TradingPipeline};
//! use tickwire_strategies::registry::{BuildStrategy, Registry};
//! use tickwire_strategies::strategy::{Context, Strategy, TimerId};
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)] // a mistyped parameter is an error, not a default
//! struct BreakoutParams {
//!     instrument: String,
//!     size: f64,
//!     threshold_bps: i64,
//!     every_ms: u64,
//! }
//!
//! struct Breakout {
//!     instrument: u32,
//!     size: u64,
//!     threshold_bps: i64,
//!     every_ns: u64,
//!     reference: Option<i64>,
//! }
//!
//! impl BuildStrategy for Breakout {
//!     type Params = BreakoutParams;
//!     fn build(p: BreakoutParams, instruments: &InstrumentRegistry) -> Result<Self, ConfigError> {
//!         Ok(Self {
//!             instrument: config::instrument(instruments, &p.instrument, "breakout")?,
//!             size: config::size(p.size),
//!             threshold_bps: p.threshold_bps,
//!             every_ns: p.every_ms * 1_000_000,
//!             reference: None,
//!         })
//!     }
//! }
//!
//! impl Strategy for Breakout {
//!     fn on_start(&mut self, ctx: &mut Context<'_>) {
//!         let _ = ctx.set_timer(0, 1); // first check at the first event
//!     }
//!
//!     fn on_timer(&mut self, ctx: &mut Context<'_>, _timer: TimerId) {
//!         self.reference = ctx.mid(self.instrument);
//!         let _ = ctx.schedule(self.every_ns, 1);
//!     }
//!
//!     fn on_quote(&mut self, ctx: &mut Context<'_>, event: &Event, quote: &Quote) {
//!         let (Some(reference), true) = (self.reference, event.instrument == self.instrument) else {
//!             return;
//!         };
//!         let move_bps = (quote.mid_px() - reference) * 10_000 / reference;
//!         let position = ctx.position(self.instrument).qty;
//!         if move_bps >= self.threshold_bps && position <= 0 {
//!             let _ = ctx.submit(self.instrument, Side::Bid, OrderType::Ioc, quote.ask_px, self.size);
//!             self.reference = None; // once per check
//!         } else if move_bps <= -self.threshold_bps && position >= 0 {
//!             let _ = ctx.submit(self.instrument, Side::Ask, OrderType::Ioc, quote.bid_px, self.size);
//!             self.reference = None;
//!         }
//!     }
//! }
//!
//! let config = TradingConfig::from_toml(r#"
//!     [risk]
//!     max_order_size = 10.0
//!     max_position = 100.0
//!
//!     [strategies.breakout]
//!     instrument = "SYN000"
//!     size = 1.0
//!     threshold_bps = 5
//!     every_ms = 1000
//!
//!     [[alerts]]
//!     user = 1
//!     rule = "fills"
//!     strategy = "breakout"
//! "#)?;
//! let feed = SyntheticFeed::new(SyntheticConfig { instruments: 1, events: Some(20_000), rate: 1_000, ..Default::default() });
//! let report = TradingPipeline::new(config)
//!     .with_registry(Registry::builtin().with::<Breakout>("breakout")) // the one line
//!     .run(feed)?;
//! assert_eq!(report.events, 20_000);
//! assert!(report.execution.orders > 0 && report.execution.fills > 0);
//! assert!(report.notifier.notifications > 0);
//! println!("{report}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod config;
pub mod execution;
pub mod lockstep;
pub mod market;
pub mod notify;
pub mod pipeline;
pub mod position;
pub mod registry;
pub mod risk;
pub mod strategies;
pub mod strategy;
pub mod venue;

pub use pipeline::{Report, TradingConfig, TradingPipeline, run_replay};
pub use strategy::{Context, Strategy};
