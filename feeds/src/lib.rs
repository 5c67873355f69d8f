//! Feed adapters: sources of market data that decode straight into claimed slots of the
//! market-data ring.
//!
//! A [`Feed`] is polled by the [`IngestAgent`], the ring's single writer. Each poll gets a
//! [`Sink`]: a window of claimed ring slots with room for at least
//! [`Feed::max_events_per_message`] events. The feed decodes whole source messages into it
//! (one message may yield several events: a book delta, a trade and a new top of book) and
//! returns; the agent publishes what was written in one commit. Nothing is allocated or
//! copied per event on the way.
//!
//! Errors name the source and the position (byte offset, line or packet) of the bad input;
//! everything decoded before it is already published.
//!
//! ```
//! use tickwire_feeds::{Feed, FeedStatus, Sink};
//! use tickwire_feeds::synthetic::{SyntheticConfig, SyntheticFeed};
//! use tickwire_engine::event::Event;
//!
//! let mut feed = SyntheticFeed::new(SyntheticConfig { instruments: 2, events: Some(10), ..Default::default() });
//! let mut buf = [Event::default(); 16];
//! let mut sink = Sink::from_slice(&mut buf);
//! assert_eq!(feed.poll(&mut sink).expect("synthetic never fails"), FeedStatus::Active);
//! assert_eq!(sink.written(), 10);
//! let mut sink = Sink::from_slice(&mut buf);
//! assert_eq!(feed.poll(&mut sink).expect("synthetic never fails"), FeedStatus::End);
//! ```

#![warn(missing_docs)]

use std::fmt;

use tickwire_engine::agent::{Agent, AgentContext, AgentError, StopToken};
use tickwire_engine::event::Event;
use tickwire_engine::instrument::InstrumentRegistry;
use tickwire_engine::ring::{Claim, ClaimError, Publisher};

pub mod binance;
pub mod book;
pub mod dbn;
pub mod decimal;
pub mod itch;
pub mod journal;
pub mod open;
pub mod primed;
pub mod replay;
pub mod synthetic;

#[cfg(test)]
pub(crate) mod test_util {
    use tickwire_engine::event::Event;

    use crate::{Feed, FeedError, FeedStatus, Sink};

    /// Polls `feed` with sinks of `slots` events to its end or its first error: the events
    /// delivered before either, and which. Fails a feed that never ends.
    pub(crate) fn drain(feed: &mut impl Feed, slots: usize) -> (Vec<Event>, Result<(), FeedError>) {
        let mut events = Vec::new();
        let mut buf = vec![Event::default(); slots];
        for _ in 0..1_000_000 {
            let mut sink = Sink::from_slice(&mut buf);
            let status = feed.poll(&mut sink);
            events.extend_from_slice(sink.events());
            match status {
                Ok(FeedStatus::End) => return (events, Ok(())),
                Ok(_) => {}
                Err(e) => return (events, Err(e)),
            }
        }
        panic!("the feed never ended");
    }
}

/// Where in its input a feed found a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Byte offset from the start of the (decompressed) input.
    Byte(u64),
    /// Line number, from 1.
    Line(u64),
    /// Packet number (MoldUDP64 sequence or datagram count).
    Packet(u64),
    /// Record number, from 0.
    Record(u64),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Byte(n) => write!(f, "byte {n}"),
            Self::Line(n) => write!(f, "line {n}"),
            Self::Packet(n) => write!(f, "packet {n}"),
            Self::Record(n) => write!(f, "record {n}"),
        }
    }
}

/// What went wrong in a feed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeedErrorKind {
    /// Reading the input failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The input ends in the middle of a message.
    #[error("truncated: {0}")]
    Truncated(String),
    /// A message does not follow its format.
    #[error("malformed: {0}")]
    Malformed(String),
    /// A sequenced source skipped messages.
    #[error("sequence gap: expected {expected}, got {got}")]
    Gap {
        /// The sequence expected next.
        expected: u64,
        /// The sequence received.
        got: u64,
    },
}

/// A feed's error: which source, where in it, what.
#[derive(Debug, thiserror::Error)]
#[error("{feed}: {position}: {kind}")]
pub struct FeedError {
    /// The feed's name (usually its file path or address).
    pub feed: String,
    /// Where in the input.
    pub position: Position,
    /// What.
    #[source]
    pub kind: FeedErrorKind,
}

impl FeedError {
    /// An error in `feed` at `position`.
    pub fn new(feed: impl Into<String>, position: Position, kind: FeedErrorKind) -> Self {
        Self {
            feed: feed.into(),
            position,
            kind,
        }
    }
}

/// What a poll found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedStatus {
    /// It wrote events, or may have more right away.
    Active,
    /// Nothing to read now (a live source between messages).
    Idle,
    /// The input is exhausted; no event will follow.
    End,
}

/// A window of event slots a feed writes into: claimed ring slots, or a plain slice for
/// tests and benchmarks.
#[derive(Debug)]
pub struct Sink<'a> {
    slots: Slots<'a>,
    written: usize,
    capacity: usize,
}

#[derive(Debug)]
enum Slots<'a> {
    Ring(Claim<'a, Event>),
    Slice(&'a mut [Event]),
}

impl<'a> Sink<'a> {
    /// A sink over claimed ring slots.
    pub fn from_claim(claim: Claim<'a, Event>) -> Self {
        let capacity = claim.len();
        Self {
            slots: Slots::Ring(claim),
            written: 0,
            capacity,
        }
    }

    /// A sink over a slice.
    pub fn from_slice(slice: &'a mut [Event]) -> Self {
        let capacity = slice.len();
        Self {
            slots: Slots::Slice(slice),
            written: 0,
            capacity,
        }
    }

    /// Slots still free.
    #[inline(always)]
    pub fn remaining(&self) -> usize {
        self.capacity - self.written
    }

    /// Events written so far.
    #[inline(always)]
    pub fn written(&self) -> usize {
        self.written
    }

    /// The next free slot, to fill in place; it holds an old event, so set every field
    /// (start from `*slot = Event::default()` or overwrite the header and body). `None`
    /// when the sink is full.
    #[inline(always)]
    pub fn next_slot(&mut self) -> Option<&mut Event> {
        let index = self.written;
        let slot = match &mut self.slots {
            Slots::Ring(claim) => {
                if index == self.capacity {
                    return None;
                }
                claim.slot_mut(index)
            }
            // The slice's own bound is the capacity: one check, not two.
            Slots::Slice(slice) => slice.get_mut(index)?,
        };
        self.written += 1;
        Some(slot)
    }

    /// Writes `event` into the next free slot; returns false when the sink is full.
    #[inline(always)]
    pub fn push(&mut self, event: Event) -> bool {
        match self.next_slot() {
            Some(slot) => {
                *slot = event;
                true
            }
            None => false,
        }
    }

    /// The event already written at `index` (below [`written`](Self::written)), to amend
    /// in place: a wrapper feed re-stamping what its inner feed wrote, with no copy.
    /// `None` beyond what was written.
    #[inline(always)]
    pub fn written_mut(&mut self, index: usize) -> Option<&mut Event> {
        if index >= self.written {
            return None;
        }
        Some(match &mut self.slots {
            Slots::Ring(claim) => claim.slot_mut(index),
            Slots::Slice(slice) => &mut slice[index],
        })
    }

    /// The events written so far (for slice sinks; ring sinks are read by subscribers).
    pub fn events(&self) -> &[Event] {
        match &self.slots {
            Slots::Ring(_) => &[],
            Slots::Slice(slice) => &slice[..self.written],
        }
    }

    /// Publishes what was written (ring sinks) and returns how many events that was.
    pub fn commit(self) -> usize {
        let written = self.written;
        if let Slots::Ring(claim) = self.slots {
            claim.commit_first(written);
        }
        written
    }
}

/// A source of market-data events.
pub trait Feed: Send {
    /// The feed's name for errors and status lines (a path, an address).
    fn name(&self) -> &str;

    /// The most events one source message can produce. The sink handed to
    /// [`poll`](Self::poll) always has at least this many free slots, so a feed decodes whole
    /// messages and never has to split one across polls.
    fn max_events_per_message(&self) -> usize {
        1
    }

    /// Decodes whole messages into `sink` while it has room for one more message, and
    /// reports whether more may follow. An error names the position of the bad input;
    /// events written before it stay in the sink and are published.
    fn poll(&mut self, sink: &mut Sink<'_>) -> Result<FeedStatus, FeedError>;

    /// The instruments this feed has seen so far.
    fn instruments(&self) -> &InstrumentRegistry;
}

impl<F: Feed + ?Sized> Feed for Box<F> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn max_events_per_message(&self) -> usize {
        (**self).max_events_per_message()
    }
    fn poll(&mut self, sink: &mut Sink<'_>) -> Result<FeedStatus, FeedError> {
        (**self).poll(sink)
    }
    fn instruments(&self) -> &InstrumentRegistry {
        (**self).instruments()
    }
}

/// How many events the ingest agent claims per poll at most.
pub const INGEST_BATCH: usize = 256;

/// The market-data ring's single writer: polls a [`Feed`] into claimed slots and publishes
/// them. Done when the feed ends, fails, or the stop token is raised; then it drops its
/// publisher, which lets every subscriber drain and finish.
pub struct IngestAgent<F> {
    name: String,
    feed: F,
    publisher: Option<Publisher<Event>>,
    stop: Option<StopToken>,
    batch: usize,
    error: Option<FeedError>,
    halted: bool,
    published: u64,
}

impl<F: Feed> fmt::Debug for IngestAgent<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IngestAgent")
            .field("feed", &self.feed.name())
            .field("published", &self.published)
            .finish()
    }
}

impl<F: Feed> IngestAgent<F> {
    /// An agent that writes `feed` into the ring of `publisher`.
    pub fn new(feed: F, publisher: Publisher<Event>) -> Self {
        Self {
            name: format!("ingest:{}", feed.name()),
            // A claim must hold the feed's largest message, or the agent would never poll.
            batch: INGEST_BATCH.max(feed.max_events_per_message()),
            feed,
            publisher: Some(publisher),
            stop: None,
            error: None,
            halted: false,
            published: 0,
        }
    }

    /// Caps the events claimed per poll (at least the feed's largest message).
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(self.feed.max_events_per_message());
        self
    }

    /// Events published so far.
    pub fn published(&self) -> u64 {
        self.published
    }

    /// The feed.
    pub fn feed(&self) -> &F {
        &self.feed
    }

    fn finish(&mut self) {
        // Dropping the publisher closes the ring: subscribers drain and finish.
        self.publisher = None;
    }
}

impl<F: Feed> Agent for IngestAgent<F> {
    fn name(&self) -> &str {
        &self.name
    }

    fn on_start(&mut self, ctx: &mut AgentContext) -> Result<(), AgentError> {
        self.stop = Some(ctx.stop_token().clone());
        Ok(())
    }

    fn do_work(&mut self) -> usize {
        let Some(publisher) = self.publisher.as_mut() else {
            return 0;
        };
        if self.stop.as_ref().is_some_and(StopToken::is_stopped) {
            self.finish();
            return 0;
        }
        let min = self.feed.max_events_per_message();
        let claim = match publisher.try_claim_up_to(self.batch) {
            Ok(claim) if claim.len() >= min => claim,
            Ok(_) | Err(ClaimError::Full { .. }) => return 0,
            Err(ClaimError::Halted | ClaimError::TooLarge) => {
                self.halted = true;
                self.finish();
                return 0;
            }
        };
        let mut sink = Sink::from_claim(claim);
        let status = self.feed.poll(&mut sink);
        let written = sink.commit();
        self.published += written as u64;
        match status {
            Ok(FeedStatus::Active | FeedStatus::Idle) => {}
            Ok(FeedStatus::End) => self.finish(),
            Err(e) => {
                self.error = Some(e);
                self.finish();
            }
        }
        written
    }

    fn is_done(&self) -> bool {
        self.publisher.is_none()
    }

    fn on_close(&mut self) -> Result<(), AgentError> {
        self.finish();
        if let Some(e) = self.error.take() {
            return Err(Box::new(e));
        }
        // A halted ring means a subscriber failed; that failure is the pipeline's error.
        Ok(())
    }
}
