//! The shipped strategies. Each is one file; register new ones in
//! [`Registry::builtin`](crate::registry::Registry::builtin).

mod ma_cross;
mod market_maker;

pub use ma_cross::{MaCross, MaCrossParams};
pub use market_maker::{MarketMaker, MarketMakerParams};
