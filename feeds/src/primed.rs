//! A feed decoded ahead by a few thousand events before the pipeline starts, to learn its
//! instruments: most formats name them as they go (Binance lines, the ITCH stock
//! directory, DBN symbol mappings), while a journal's header, a strategy's parameters or
//! an alert rule need the table up front. The primed events are released first, in order,
//! then the rest of the input.
//!
//! ```
//! use tickwire_feeds::primed::Primed;
//! use tickwire_feeds::synthetic::{SyntheticConfig, SyntheticFeed};
//! use tickwire_feeds::Feed;
//!
//! let feed = SyntheticFeed::new(SyntheticConfig { events: Some(10), ..SyntheticConfig::default() });
//! let primed = Primed::prime(feed, 4);
//! assert_eq!(primed.primed_events(), 4);
//! assert!(primed.instruments().symbol(0).is_some());
//! ```

use tickwire_engine::event::Event;
use tickwire_engine::instrument::InstrumentRegistry;

use crate::{Feed, FeedError, FeedStatus, INGEST_BATCH, Sink};

/// Events decoded ahead by default (4 MiB of events; every format here names its
/// instruments well before that).
pub const PRIME_EVENTS: usize = 65_536;

/// A feed whose first events were decoded ahead (see the module docs).
#[derive(Debug)]
pub struct Primed<F> {
    inner: F,
    primed: Vec<Event>,
    next: usize,
    /// How the priming polls ended: `Active` if they stopped at the limit.
    primed_status: FeedStatus,
    primed_error: Option<FeedError>,
}

impl<F: Feed> Primed<F> {
    /// Decodes up to `events` events of `inner` (fewer if it ends or fails first; an error
    /// is returned by the poll that reaches it, after the events before it).
    pub fn prime(mut inner: F, events: usize) -> Self {
        let mut primed = Vec::new();
        let mut buf = vec![Event::default(); INGEST_BATCH.max(inner.max_events_per_message())];
        let mut primed_status = FeedStatus::Active;
        let mut primed_error = None;
        while primed.len() < events {
            let room = buf
                .len()
                .min(events - primed.len())
                .max(inner.max_events_per_message());
            let mut sink = Sink::from_slice(&mut buf[..room]);
            let status = inner.poll(&mut sink);
            primed.extend_from_slice(sink.events());
            match status {
                Ok(FeedStatus::Active) => {}
                Ok(status) => {
                    primed_status = status;
                    break;
                }
                Err(e) => {
                    primed_error = Some(e);
                    break;
                }
            }
        }
        Self {
            inner,
            primed,
            next: 0,
            primed_status,
            primed_error,
        }
    }

    /// Events decoded ahead (released or not).
    pub fn primed_events(&self) -> usize {
        self.primed.len().max(self.next)
    }

    /// The wrapped feed.
    pub fn inner(&self) -> &F {
        &self.inner
    }
}

impl<F: Feed> Feed for Primed<F> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn max_events_per_message(&self) -> usize {
        self.inner.max_events_per_message()
    }

    fn poll(&mut self, sink: &mut Sink<'_>) -> Result<FeedStatus, FeedError> {
        if self.next < self.primed.len() {
            let take = sink.remaining().min(self.primed.len() - self.next);
            for event in &self.primed[self.next..self.next + take] {
                sink.push(*event);
            }
            self.next += take;
            if self.next < self.primed.len() {
                return Ok(FeedStatus::Active);
            }
            self.primed = Vec::new();
        }
        if let Some(e) = self.primed_error.take() {
            return Err(e);
        }
        if self.primed_status == FeedStatus::End {
            return Ok(FeedStatus::End);
        }
        if sink.written() > 0 {
            // The sink may no longer hold a whole message of the inner feed.
            return Ok(FeedStatus::Active);
        }
        self.inner.poll(sink)
    }

    fn instruments(&self) -> &InstrumentRegistry {
        self.inner.instruments()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{SyntheticConfig, SyntheticFeed};

    fn drain(feed: &mut impl Feed) -> Vec<Event> {
        let mut out = Vec::new();
        let mut buf = vec![Event::default(); 100];
        loop {
            let mut sink = Sink::from_slice(&mut buf);
            let status = feed.poll(&mut sink).expect("synthetic never fails");
            out.extend_from_slice(sink.events());
            if status == FeedStatus::End {
                return out;
            }
        }
    }

    #[test]
    fn primed_events_come_first_then_the_rest_in_order() {
        let config = SyntheticConfig {
            events: Some(1000),
            ..SyntheticConfig::default()
        };
        let all = drain(&mut SyntheticFeed::new(config.clone()));
        for ahead in [0, 1, 333, 1000, 5000] {
            let mut primed = Primed::prime(SyntheticFeed::new(config.clone()), ahead);
            assert_eq!(primed.primed_events(), ahead.min(1000));
            assert_eq!(drain(&mut primed), all, "primed {ahead}");
        }
    }
}
