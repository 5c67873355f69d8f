//! Strategies by name: a [`Registry`] maps a kind (`ma_cross`) to a constructor that
//! deserialises the kind's typed parameters from its `[strategies.<name>]` TOML table.
//!
//! Adding a strategy is one new file (the type, its `Params`, and [`BuildStrategy`]) and
//! one line in [`Registry::builtin`].

use serde::de::DeserializeOwned;
use tickwire_engine::instrument::InstrumentRegistry;

use crate::config::ConfigError;
use crate::strategy::Strategy;

/// A strategy that can be built from configuration.
pub trait BuildStrategy: Strategy + Sized + 'static {
    /// Its parameters: the `[strategies.<name>]` table (minus the `kind` and `user` keys).
    type Params: DeserializeOwned;

    /// Builds the strategy; `instruments` resolves symbols to ids.
    fn build(params: Self::Params, instruments: &InstrumentRegistry) -> Result<Self, ConfigError>;
}

type Constructor = fn(toml::Table, &InstrumentRegistry) -> Result<Box<dyn Strategy>, ConfigError>;

fn construct<S: BuildStrategy>(
    table: toml::Table,
    instruments: &InstrumentRegistry,
) -> Result<Box<dyn Strategy>, ConfigError> {
    let params: S::Params = toml::Value::Table(table)
        .try_into()
        .map_err(|e| ConfigError::invalid("parameters", e))?;
    Ok(Box::new(S::build(params, instruments)?))
}

/// Registered strategy kinds.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    kinds: Vec<(&'static str, Constructor)>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shipped strategies. One line per strategy.
    pub fn builtin() -> Self {
        Self::new()
            .with::<crate::strategies::MaCross>("ma_cross")
            .with::<crate::strategies::MarketMaker>("market_maker")
    }

    /// Registers `S` as `kind` (a later registration of the same kind replaces it).
    pub fn with<S: BuildStrategy>(mut self, kind: &'static str) -> Self {
        self.kinds.retain(|(k, _)| *k != kind);
        self.kinds.push((kind, construct::<S>));
        self
    }

    /// The registered kinds.
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.iter().map(|(k, _)| *k)
    }

    /// Builds instance `name` of `kind` from its parameter table.
    pub fn build(
        &self,
        name: &str,
        kind: &str,
        params: toml::Table,
        instruments: &InstrumentRegistry,
    ) -> Result<Box<dyn Strategy>, ConfigError> {
        let Some((_, constructor)) = self.kinds.iter().find(|(k, _)| *k == kind) else {
            return Err(ConfigError::UnknownKind {
                name: name.to_owned(),
                kind: kind.to_owned(),
                registered: self.kinds().collect::<Vec<_>>().join(", "),
            });
        };
        constructor(params, instruments).map_err(|e| match e {
            ConfigError::Invalid { context, message } => ConfigError::Invalid {
                context: format!("[strategies.{name}] {context}"),
                message,
            },
            ConfigError::UnknownInstrument {
                context,
                symbol,
                known,
            } => ConfigError::UnknownInstrument {
                context: format!("[strategies.{name}] {context}"),
                symbol,
                known,
            },
            other => other,
        })
    }
}
