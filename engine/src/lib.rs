//! tickwire's engine: the event model, the single-writer ring pipeline, agents and idle
//! strategies, latency histograms.
//!
//! Data flows one way: a feed's ingest agent is the single writer of the market-data ring
//! ([`ring::Publisher`]); every consumer ([`ring::Subscriber`], run as an
//! [`agent::HandlerAgent`] or polled directly) reads each [`event::Event`] in place, by
//! reference; consumers that produce (strategies, execution) own rings of their own. The
//! threads that run the agents, their cores and idle strategies are a [`agent::Layout`].
//!
//! ```
//! use std::time::Duration;
//! use tickwire_engine::agent::{HandlerAgent, Layout, ThreadSpec};
//! use tickwire_engine::event::{Event, Quote, PRICE_SCALE};
//! use tickwire_engine::idle::IdleStrategy;
//! use tickwire_engine::ring::RingBuilder;
//!
//! let mut ring = RingBuilder::<Event>::new(1024)?;
//! let strategy = ring.subscriber("strategy");
//! let recorder = ring.subscriber("recorder");
//! let publisher_side = ring.subscriber_after("publisher", &[&strategy, &recorder]);
//! let mut md = ring.build()?;
//!
//! let mut crossed = 0;
//! let layout = Layout::new()
//!     .thread(ThreadSpec::new("strategy").idle(IdleStrategy::YIELDING)
//!         .agent(HandlerAgent::new(strategy, move |e: &Event, _, _| {
//!             if e.quote().is_some_and(|q| q.bid_px >= q.ask_px) { crossed += 1 }
//!         })))
//!     .thread(ThreadSpec::new("io").idle(IdleStrategy::BLOCKING)
//!         .agent(HandlerAgent::new(recorder, |_: &Event, _, _| {}))
//!         .agent(HandlerAgent::new(publisher_side, |_: &Event, _, _| {})));
//! let pipeline = layout.spawn()?;
//! for i in 0..1000 {
//!     md.publish(|e| {
//!         e.instrument = 1;
//!         e.set_quote(Quote { bid_px: 100 * PRICE_SCALE, ask_px: 101 * PRICE_SCALE, seq: i, ..Quote::default() });
//!     })?;
//! }
//! drop(md);
//! pipeline.join_timeout(Duration::from_secs(10))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

#[cfg(not(loom))]
pub mod agent;
pub mod clock;
pub mod event;
pub mod idle;
pub mod instrument;
#[cfg(not(loom))]
pub mod journal;
pub mod latency;
pub mod ring;
mod sync;
