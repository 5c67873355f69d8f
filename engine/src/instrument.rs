//! The instrument registry: symbol <-> id, filled by feeds as they learn instruments (an
//! ITCH stock directory, a Binance stream name, a DBN symbol mapping).
//!
//! Ids are dense `u32`s from 0, so consumers index per-instrument state by id in a `Vec`.
//!
//! ```
//! use tickwire_engine::instrument::InstrumentRegistry;
//!
//! let mut registry = InstrumentRegistry::default();
//! let btc = registry.intern("BTCUSDT");
//! assert_eq!(registry.intern("BTCUSDT"), btc);
//! assert_eq!(registry.symbol(btc), Some("BTCUSDT"));
//! assert_eq!(registry.id("ETHUSDT"), None);
//! ```

use std::collections::HashMap;

/// Dense instrument id.
pub type InstrumentId = u32;

/// Symbol <-> id, in the order symbols were first seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstrumentRegistry {
    symbols: Vec<String>,
    ids: HashMap<String, InstrumentId>,
}

impl InstrumentRegistry {
    /// A registry with `symbols` as ids 0, 1, ... (duplicates keep their first id).
    pub fn from_symbols<S: AsRef<str>>(symbols: impl IntoIterator<Item = S>) -> Self {
        let mut registry = Self::default();
        for symbol in symbols {
            registry.intern(symbol.as_ref());
        }
        registry
    }

    /// The id of `symbol`, registering it if new.
    pub fn intern(&mut self, symbol: &str) -> InstrumentId {
        if let Some(&id) = self.ids.get(symbol) {
            return id;
        }
        let id = InstrumentId::try_from(self.symbols.len()).unwrap_or(InstrumentId::MAX);
        self.symbols.push(symbol.to_owned());
        self.ids.insert(symbol.to_owned(), id);
        id
    }

    /// The id of `symbol`, if registered.
    pub fn id(&self, symbol: &str) -> Option<InstrumentId> {
        self.ids.get(symbol).copied()
    }

    /// The symbol of `id`, if registered.
    pub fn symbol(&self, id: InstrumentId) -> Option<&str> {
        self.symbols.get(id as usize).map(String::as_str)
    }

    /// Number of instruments.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// Whether no instrument is registered.
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// `(id, symbol)` in id order.
    pub fn iter(&self) -> impl Iterator<Item = (InstrumentId, &str)> {
        self.symbols
            .iter()
            .enumerate()
            .map(|(i, s)| (i as InstrumentId, s.as_str()))
    }
}
