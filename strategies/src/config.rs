//! Configuration errors and the conversion of human-written numbers (TOML `0.01`, `61000`)
//! into the event model's fixed-point units, done once at load.

use tickwire_engine::event::{PRICE_SCALE, SIZE_SCALE};
use tickwire_engine::instrument::{InstrumentId, InstrumentRegistry};

use crate::position::MONEY_SCALE;

/// A configuration that cannot be used. Names what is wrong and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The TOML did not parse or did not fit the expected shape.
    #[error("{context}: {message}")]
    Invalid {
        /// Which file or table.
        context: String,
        /// What the parser said.
        message: String,
    },
    /// A strategy kind that no one registered.
    #[error("strategy `{name}`: unknown kind `{kind}` (registered: {registered})")]
    UnknownKind {
        /// The instance name (the `[strategies.<name>]` key).
        name: String,
        /// The kind asked for.
        kind: String,
        /// The registered kinds.
        registered: String,
    },
    /// A symbol the feed does not know.
    #[error("{context}: unknown instrument `{symbol}` (the feed knows: {known})")]
    UnknownInstrument {
        /// Which strategy or rule.
        context: String,
        /// The symbol.
        symbol: String,
        /// The symbols the feed's registry holds.
        known: String,
    },
    /// Reading a configuration file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

impl ConfigError {
    /// An [`Invalid`](Self::Invalid) error.
    pub fn invalid(context: impl Into<String>, message: impl ToString) -> Self {
        Self::Invalid {
            context: context.into(),
            message: message.to_string(),
        }
    }
}

/// A price written as a decimal number, in 10⁻⁹ units (rounded to the nearest).
pub fn price(value: f64) -> i64 {
    (value * PRICE_SCALE as f64).round() as i64
}

/// A size written as a decimal number, in 10⁻⁸ units (rounded; negative reads as 0).
pub fn size(value: f64) -> u64 {
    (value * SIZE_SCALE as f64).round().max(0.0) as u64
}

/// An amount of quote currency written as a decimal number, in money units (10⁻¹⁷).
pub fn money(value: f64) -> i128 {
    // Through 10⁻⁸ first: f64 has 53 bits, not enough for 10¹⁷ times a large amount.
    // The cast saturates (NaN reads as 0); the product saturates too, never wraps.
    ((value * 1e8).round() as i128).saturating_mul(MONEY_SCALE / 100_000_000)
}

/// The id of `symbol` in `instruments`, or an error naming what the feed knows.
pub fn instrument(
    instruments: &InstrumentRegistry,
    symbol: &str,
    context: &str,
) -> Result<InstrumentId, ConfigError> {
    instruments
        .id(symbol)
        .ok_or_else(|| ConfigError::UnknownInstrument {
            context: context.to_owned(),
            symbol: symbol.to_owned(),
            known: instruments
                .iter()
                .map(|(_, s)| s)
                .collect::<Vec<_>>()
                .join(", "),
        })
}
