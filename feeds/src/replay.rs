//! Replay pacing: any [`Feed`] replayed at its recorded pace, N times faster, or flat out.
//!
//! [`Paced`] wraps a feed. Each event's recorded time (its `receive_ts`, or its
//! `exchange_ts` when that is 0 or when [`Schedule::Exchange`] says so) drives the
//! schedule: the first event released is the anchor, and an event recorded `d` ns after it
//! is released `d / factor` ns (of the injected [`Clock`]) after the anchor was. Events
//! recorded *before* the anchor (a clock that stepped back) are due at once.
//!
//! **Data flow.** Flat out ([`Speed::Max`]) the wrapper passes the sink straight to the
//! inner feed: zero copy, nothing buffered. Paced, the inner feed decodes into a small
//! local buffer ([`PACED_BUFFER`] events) and each event is copied into the sink (64 bytes)
//! when it is due; between due times the feed reports [`FeedStatus::Idle`] and the ingest
//! agent's idle strategy waits.
//!
//! **Re-stamping.** With [`ReplayConfig::restamp`] each event's `receive_ts` is overwritten
//! with the clock's time at injection (in place, also flat out), so the pipeline's hop
//! latencies (receive -> handler) are measurable on a replay. The recorded receive time
//! then only drives the pacing and is lost downstream (a journal keeps the original).
//!
//! **Starting late.** [`ReplayConfig::from_time`] drops events recorded before a time
//! (ns since the Unix epoch), up to the first event at or after it; from there on every
//! event is replayed, whatever its time. For journals, position the
//! [`JournalFeed`](crate::journal::JournalFeed) with `from_sequence` / `from_time` instead:
//! it seeks without decoding what it skips.
//!
//! ```
//! use std::sync::Arc;
//! use tickwire_engine::clock::ManualClock;
//! use tickwire_engine::event::Event;
//! use tickwire_feeds::replay::{Paced, ReplayConfig, Speed};
//! use tickwire_feeds::synthetic::{SyntheticConfig, SyntheticFeed};
//! use tickwire_feeds::{Feed, FeedStatus, Sink};
//!
//! // Three events recorded 1 ms apart (simulated time at 1000 events/s).
//! let inner = SyntheticFeed::new(SyntheticConfig { rate: 1_000, events: Some(3), ..Default::default() });
//! let clock = ManualClock::new(0);
//! let mut feed = Paced::new(inner, ReplayConfig { speed: Speed::Factor(10.0), ..Default::default() })
//!     .with_clock(Arc::new(clock.clone()));
//! let mut buf = [Event::default(); 8];
//! let mut poll = |feed: &mut Paced<SyntheticFeed>| {
//!     let mut sink = Sink::from_slice(&mut buf);
//!     let status = feed.poll(&mut sink).expect("synthetic never fails");
//!     (status, sink.written())
//! };
//! assert_eq!(poll(&mut feed), (FeedStatus::Active, 1)); // the anchor, at once
//! assert_eq!(poll(&mut feed), (FeedStatus::Idle, 0));
//! clock.advance(100_000); // 0.1 ms later: 1 ms of recorded time at 10x
//! assert_eq!(poll(&mut feed), (FeedStatus::Active, 1));
//! clock.advance(100_000);
//! assert_eq!(poll(&mut feed), (FeedStatus::End, 1)); // the last event comes with the end
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use tickwire_engine::clock::{Clock, WallClock};
use tickwire_engine::event::Event;
use tickwire_engine::instrument::InstrumentRegistry;

use crate::{Feed, FeedError, FeedStatus, Sink};

/// Events the paced mode decodes ahead into its local buffer (at least the inner feed's
/// largest message). Small on purpose: paced replays run at recorded rates, far below what
/// one buffer refill per 64 events costs.
pub const PACED_BUFFER: usize = 64;

/// How fast to replay.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Speed {
    /// As fast as the ring takes events: no pacing, no copy.
    Max,
    /// At the recorded pace (the same as `Factor(1.0)`).
    #[default]
    Recorded,
    /// `f` times the recorded pace (`2.0` is twice as fast, `0.5` half as fast); finite and
    /// above zero.
    Factor(f64),
}

impl Speed {
    /// The pace factor, `None` for flat out.
    pub fn factor(self) -> Option<f64> {
        match self {
            Self::Max => None,
            Self::Recorded => Some(1.0),
            Self::Factor(f) => Some(f),
        }
    }
}

impl fmt::Display for Speed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Max => f.write_str("max"),
            Self::Recorded => f.write_str("recorded"),
            Self::Factor(x) => write!(f, "{x}x"),
        }
    }
}

/// Why a speed did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad speed `{0}`: expected `max`, `recorded` or a factor such as `10x` or `0.5x` (above 0)"
)]
pub struct ParseSpeedError(String);

impl FromStr for Speed {
    type Err = ParseSpeedError;

    /// `max`, `recorded`, or a factor: `10x`, `0.5x`, `10` (the `x` is optional).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseSpeedError(s.to_owned());
        match s.trim().to_ascii_lowercase().as_str() {
            "max" => Ok(Self::Max),
            "recorded" => Ok(Self::Recorded),
            other => {
                let number = other.strip_suffix('x').unwrap_or(other);
                let f: f64 = number.parse().map_err(|_| bad())?;
                if f.is_finite() && f > 0.0 {
                    Ok(Self::Factor(f))
                } else {
                    Err(bad())
                }
            }
        }
    }
}

/// Which recorded timestamp drives the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Schedule {
    /// `receive_ts`, or `exchange_ts` when `receive_ts` is 0 (the default): recordings
    /// (Binance, DBN `ts_recv`, journals) carry when the data arrived.
    #[default]
    Receive,
    /// `exchange_ts` always: for sources whose receive time is the decode time, not a
    /// recorded one (ITCH files are stamped when read).
    Exchange,
}

/// Configuration of a [`Paced`] replay.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ReplayConfig {
    /// How fast. Default: [`Speed::Recorded`].
    pub speed: Speed,
    /// Overwrite `receive_ts` with the clock's time at injection (see the module docs).
    /// Default: false.
    pub restamp: bool,
    /// Drop events recorded before this time, ns since the Unix epoch (see the module
    /// docs). Default: none.
    pub from_time: Option<u64>,
    /// Which timestamp drives the schedule. Default: [`Schedule::Receive`].
    pub schedule: Schedule,
}

/// A feed replayed at a [`Speed`] (see the module docs).
pub struct Paced<F> {
    inner: F,
    name: String,
    config: ReplayConfig,
    clock: Arc<dyn Clock>,
    /// Decoded, not yet released events are `buf[head..len]`.
    buf: Box<[Event]>,
    head: usize,
    len: usize,
    /// (recorded ns, local ns) of the first released event.
    anchor: Option<(u64, u64)>,
    /// Still dropping events before `config.from_time`.
    skipping: bool,
    inner_done: bool,
    /// An error of the inner feed, returned once the events decoded before it are out.
    pending_error: Option<FeedError>,
    released: u64,
    skipped: u64,
}

impl<F: Feed> fmt::Debug for Paced<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Paced")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("buffered", &(self.len - self.head))
            .field("released", &self.released)
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

impl<F: Feed> Paced<F> {
    /// Replays `inner` as `config` says, on the wall clock.
    pub fn new(inner: F, config: ReplayConfig) -> Self {
        let capacity = PACED_BUFFER.max(inner.max_events_per_message());
        Self {
            name: format!("{} @{}", inner.name(), config.speed),
            inner,
            skipping: config.from_time.is_some(),
            config,
            clock: Arc::new(WallClock),
            buf: vec![Event::default(); capacity].into_boxed_slice(),
            head: 0,
            len: 0,
            anchor: None,
            inner_done: false,
            pending_error: None,
            released: 0,
            skipped: 0,
        }
    }

    /// Uses `clock` for the schedule and for re-stamping (a `ManualClock` in tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The wrapped feed.
    pub fn inner(&self) -> &F {
        &self.inner
    }

    /// The configuration.
    pub fn config(&self) -> &ReplayConfig {
        &self.config
    }

    /// Events released into sinks so far.
    pub fn released(&self) -> u64 {
        self.released
    }

    /// Events dropped as recorded before [`ReplayConfig::from_time`].
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The recorded time that schedules `event`, ns.
    #[inline]
    fn recorded_time(&self, event: &Event) -> u64 {
        match self.config.schedule {
            Schedule::Receive if event.receive_ts != 0 => event.receive_ts,
            _ => event.exchange_ts,
        }
    }

    /// The local time at which an event recorded at `t` is due (`now` anchors the first).
    #[inline]
    fn due_at(&mut self, t: u64, now: u64, factor: f64) -> u64 {
        let (recorded, local) = *self.anchor.get_or_insert((t, now));
        let ahead = t.saturating_sub(recorded);
        if factor == 1.0 {
            local.saturating_add(ahead)
        } else {
            // f64 is exact for offsets below 2^53 ns (104 days), beyond any recording.
            local.saturating_add((ahead as f64 / factor) as u64)
        }
    }

    /// Flat out, nothing buffered: the inner feed writes straight into the ring's slots.
    fn pass_through(&mut self, sink: &mut Sink<'_>) -> Result<FeedStatus, FeedError> {
        let start = sink.written();
        let status = self.inner.poll(sink);
        let end = sink.written();
        if self.config.restamp && end > start {
            let now = self.clock.now_ns();
            for i in start..end {
                if let Some(event) = sink.written_mut(i) {
                    event.receive_ts = now;
                }
            }
        }
        self.released += (end - start) as u64;
        if matches!(status, Ok(FeedStatus::End)) {
            self.inner_done = true;
        }
        status
    }

    /// Decodes the next message(s) of the inner feed into the empty local buffer.
    fn refill(&mut self) -> FeedStatus {
        let mut sink = Sink::from_slice(&mut self.buf);
        let status = self.inner.poll(&mut sink);
        self.head = 0;
        self.len = sink.written();
        match status {
            Ok(FeedStatus::End) => {
                self.inner_done = true;
                FeedStatus::End
            }
            Ok(status) => status,
            Err(e) => {
                self.pending_error = Some(e);
                FeedStatus::Active
            }
        }
    }
}

impl<F: Feed> Feed for Paced<F> {
    fn name(&self) -> &str {
        &self.name
    }

    fn max_events_per_message(&self) -> usize {
        self.inner.max_events_per_message()
    }

    fn poll(&mut self, sink: &mut Sink<'_>) -> Result<FeedStatus, FeedError> {
        let factor = self.config.speed.factor();
        loop {
            if self.head == self.len {
                if let Some(e) = self.pending_error.take() {
                    return Err(e);
                }
                if self.inner_done {
                    return Ok(FeedStatus::End);
                }
                if factor.is_none() && !self.skipping {
                    if sink.written() > 0 {
                        // The sink may no longer hold a whole message; come back.
                        return Ok(FeedStatus::Active);
                    }
                    return self.pass_through(sink);
                }
                if self.refill() == FeedStatus::Idle && self.len == 0 {
                    return Ok(if sink.written() > 0 {
                        FeedStatus::Active
                    } else {
                        FeedStatus::Idle
                    });
                }
                continue;
            }
            let event = self.buf[self.head];
            let t = self.recorded_time(&event);
            if self.skipping {
                if self.config.from_time.is_some_and(|from| t < from) {
                    self.head += 1;
                    self.skipped += 1;
                    continue;
                }
                self.skipping = false;
            }
            if sink.remaining() == 0 {
                return Ok(FeedStatus::Active);
            }
            let now = self.clock.now_ns();
            if let Some(factor) = factor {
                if now < self.due_at(t, now, factor) {
                    return Ok(if sink.written() > 0 {
                        FeedStatus::Active
                    } else {
                        FeedStatus::Idle
                    });
                }
            }
            let Some(slot) = sink.next_slot() else {
                return Ok(FeedStatus::Active);
            };
            *slot = event;
            if self.config.restamp {
                slot.receive_ts = now;
            }
            self.head += 1;
            self.released += 1;
        }
    }

    fn instruments(&self) -> &InstrumentRegistry {
        self.inner.instruments()
    }
}

#[cfg(test)]
mod tests {
    use tickwire_engine::clock::ManualClock;
    use tickwire_engine::event::{Trade, flags};

    use super::*;
    use crate::{FeedErrorKind, Position};

    /// A feed over a list of events, `per_poll` at a time, optionally failing at the end.
    struct ListFeed {
        events: Vec<Event>,
        next: usize,
        per_poll: usize,
        fail_at_end: bool,
        registry: InstrumentRegistry,
    }

    impl ListFeed {
        fn new(events: Vec<Event>) -> Self {
            Self {
                events,
                next: 0,
                per_poll: 3,
                fail_at_end: false,
                registry: InstrumentRegistry::default(),
            }
        }
    }

    impl Feed for ListFeed {
        fn name(&self) -> &str {
            "list"
        }

        fn poll(&mut self, sink: &mut Sink<'_>) -> Result<FeedStatus, FeedError> {
            let mut n = 0;
            while n < self.per_poll && self.next < self.events.len() && sink.remaining() > 0 {
                sink.push(self.events[self.next]);
                self.next += 1;
                n += 1;
            }
            if self.next == self.events.len() {
                if self.fail_at_end {
                    self.fail_at_end = false;
                    return Err(FeedError::new(
                        "list",
                        Position::Record(self.next as u64),
                        FeedErrorKind::Malformed("boom".into()),
                    ));
                }
                return Ok(FeedStatus::End);
            }
            Ok(FeedStatus::Active)
        }

        fn instruments(&self) -> &InstrumentRegistry {
            &self.registry
        }
    }

    const BASE: u64 = 1_700_000_000_000_000_000;

    /// Trades received at `BASE + offset` for each offset (ns), trade ids 1, 2, ...
    fn events_at(offsets: &[u64]) -> Vec<Event> {
        offsets
            .iter()
            .enumerate()
            .map(|(i, &offset)| {
                let mut e = Event::new(0, 0, BASE + offset - 500, BASE + offset);
                e.flags = flags::LAST;
                e.set_trade(Trade {
                    trade_id: i as u64 + 1,
                    ..Trade::default()
                });
                e
            })
            .collect()
    }

    fn paced(events: Vec<Event>, config: ReplayConfig, clock: &ManualClock) -> Paced<ListFeed> {
        Paced::new(ListFeed::new(events), config).with_clock(Arc::new(clock.clone()))
    }

    /// One poll into a 16-slot sink: status and the trade ids released.
    fn poll(feed: &mut impl Feed) -> (FeedStatus, Vec<u64>) {
        let mut buf = [Event::default(); 16];
        let mut sink = Sink::from_slice(&mut buf);
        let status = feed.poll(&mut sink).expect("list feed does not fail");
        let ids = sink
            .events()
            .iter()
            .filter_map(|e| e.trade().map(|t| t.trade_id))
            .collect();
        (status, ids)
    }

    const LOCAL: u64 = 5_000_000_000;

    #[test]
    fn recorded_pace_releases_each_event_at_its_offset() {
        let clock = ManualClock::new(LOCAL);
        let mut feed = paced(
            events_at(&[0, 1_000, 1_000, 5_000]),
            ReplayConfig::default(),
            &clock,
        );
        assert_eq!(poll(&mut feed), (FeedStatus::Active, vec![1]));
        assert_eq!(poll(&mut feed), (FeedStatus::Idle, vec![]));
        clock.advance(999);
        assert_eq!(poll(&mut feed), (FeedStatus::Idle, vec![]));
        clock.advance(1);
        assert_eq!(poll(&mut feed), (FeedStatus::Active, vec![2, 3]));
        clock.advance(3_999);
        assert_eq!(poll(&mut feed), (FeedStatus::Idle, vec![]));
        clock.advance(1);
        // The last event comes with the end.
        assert_eq!(poll(&mut feed), (FeedStatus::End, vec![4]));
        assert_eq!(feed.released(), 4);
    }

    #[test]
    fn ten_times_speed_divides_the_offsets() {
        let clock = ManualClock::new(LOCAL);
        let config = ReplayConfig {
            speed: Speed::Factor(10.0),
            ..ReplayConfig::default()
        };
        let mut feed = paced(events_at(&[0, 10_000, 50_000]), config, &clock);
        assert_eq!(poll(&mut feed), (FeedStatus::Active, vec![1]));
        clock.advance(999);
        assert_eq!(poll(&mut feed), (FeedStatus::Idle, vec![]));
        clock.advance(1);
        assert_eq!(poll(&mut feed), (FeedStatus::Active, vec![2]));
        clock.advance(3_999);
        assert_eq!(poll(&mut feed), (FeedStatus::Idle, vec![]));
        clock.advance(1);
        assert_eq!(poll(&mut feed), (FeedStatus::End, vec![3]));
    }

    #[test]
    fn a_late_poll_releases_everything_due_at_once() {
        let clock = ManualClock::new(LOCAL);
        let mut feed = paced(
            events_at(&[0, 1_000, 2_000, 3_000, 9_000]),
            ReplayConfig::default(),
            &clock,
        );
        assert_eq!(poll(&mut feed), (FeedStatus::Active, vec![1]));
        clock.advance(3_500);
        assert_eq!(poll(&mut feed), (FeedStatus::Active, vec![2, 3, 4]));
    }

    #[test]
    fn flat_out_passes_everything_without_the_clock_moving() {
        let clock = ManualClock::new(LOCAL);
        let events = events_at(&[0, 1_000_000, 2_000_000_000, 3_000_000_000]);
        let config = ReplayConfig {
            speed: Speed::Max,
            ..ReplayConfig::default()
        };
        let mut feed = paced(events.clone(), config, &clock);
        let mut buf = [Event::default(); 16];
        let mut sink = Sink::from_slice(&mut buf);
        // ListFeed writes 3 per poll; pass-through means exactly what the inner feed wrote.
        assert_eq!(feed.poll(&mut sink).ok(), Some(FeedStatus::Active));
        assert_eq!(
            sink.events(),
            &events[..3],
            "unchanged, receive_ts included"
        );
        let mut sink = Sink::from_slice(&mut buf);
        assert_eq!(feed.poll(&mut sink).ok(), Some(FeedStatus::End));
        assert_eq!(sink.events(), &events[3..]);
        assert_eq!(feed.released(), 4);
    }

    #[test]
    fn restamp_writes_the_injection_time_in_both_modes() {
        for speed in [Speed::Max, Speed::Recorded] {
            let clock = ManualClock::new(LOCAL);
            let config = ReplayConfig {
                speed,
                restamp: true,
                ..ReplayConfig::default()
            };
            let mut feed = paced(events_at(&[0, 0]), config, &clock);
            let mut buf = [Event::default(); 16];
            let mut sink = Sink::from_slice(&mut buf);
            feed.poll(&mut sink).expect("no error");
            assert_eq!(sink.written(), 2, "{speed}");
            assert!(
                sink.events().iter().all(|e| e.receive_ts == LOCAL),
                "{speed}"
            );
            assert!(sink.events().iter().all(|e| e.exchange_ts == BASE - 500));
        }
    }

    #[test]
    fn from_time_skips_earlier_events_then_paces_from_the_first_kept() {
        let clock = ManualClock::new(LOCAL);
        let config = ReplayConfig {
            from_time: Some(BASE + 2_000),
            ..ReplayConfig::default()
        };
        let mut feed = paced(events_at(&[0, 1_000, 2_000, 2_500, 1_500]), config, &clock);
        assert_eq!(poll(&mut feed), (FeedStatus::Active, vec![3]));
        assert_eq!(feed.skipped(), 2);
        clock.advance(500);
        // Event 5 went back in time: once started, it is due at once, not skipped.
        assert_eq!(poll(&mut feed), (FeedStatus::End, vec![4, 5]));

        // Flat out, skipping goes through the buffer, then passes through.
        let config = ReplayConfig {
            speed: Speed::Max,
            from_time: Some(BASE + 1_000),
            ..ReplayConfig::default()
        };
        let mut feed = paced(events_at(&[0, 1_000, 2_000, 3_000, 4_000]), config, &clock);
        let mut ids = Vec::new();
        loop {
            let (status, mut got) = poll(&mut feed);
            ids.append(&mut got);
            if status == FeedStatus::End {
                break;
            }
        }
        assert_eq!(ids, [2, 3, 4, 5]);
    }

    #[test]
    fn exchange_time_schedules_without_a_receive_time_or_when_asked() {
        let clock = ManualClock::new(LOCAL);
        let mut events = events_at(&[0, 1_000]);
        for e in &mut events {
            e.receive_ts = 0;
        }
        let mut feed = paced(events, ReplayConfig::default(), &clock);
        assert_eq!(poll(&mut feed).1, [1]);
        clock.advance(999);
        assert_eq!(poll(&mut feed).1, Vec::<u64>::new());
        clock.advance(1);
        assert_eq!(poll(&mut feed).1, [2]);

        let mut events = events_at(&[0, 1_000]);
        events[1].receive_ts = BASE; // a decode-time stamp, not a recorded one
        let config = ReplayConfig {
            schedule: Schedule::Exchange,
            ..ReplayConfig::default()
        };
        let mut feed = paced(events, config, &clock);
        assert_eq!(poll(&mut feed).1, [1]);
        assert_eq!(poll(&mut feed).1, Vec::<u64>::new());
    }

    #[test]
    fn an_inner_error_comes_after_the_events_decoded_before_it() {
        let clock = ManualClock::new(LOCAL);
        let mut inner = ListFeed::new(events_at(&[0, 0]));
        inner.fail_at_end = true;
        let mut feed = Paced::new(inner, ReplayConfig::default()).with_clock(Arc::new(clock));
        let mut buf = [Event::default(); 16];
        let mut sink = Sink::from_slice(&mut buf);
        let error = feed.poll(&mut sink).expect_err("the inner feed fails");
        assert_eq!(sink.written(), 2, "both events out before the error");
        assert!(error.to_string().contains("boom"), "{error}");
    }

    #[test]
    fn speeds_parse() {
        assert_eq!("max".parse(), Ok(Speed::Max));
        assert_eq!("Recorded".parse(), Ok(Speed::Recorded));
        assert_eq!("10x".parse(), Ok(Speed::Factor(10.0)));
        assert_eq!("0.5x".parse(), Ok(Speed::Factor(0.5)));
        assert_eq!("3".parse(), Ok(Speed::Factor(3.0)));
        for bad in ["0x", "-2x", "fast", "infx", "NaN", ""] {
            let error = bad.parse::<Speed>().expect_err(bad);
            assert!(error.to_string().contains("expected `max`"), "{error}");
        }
        assert_eq!(Speed::Factor(2.5).to_string(), "2.5x");
    }
}
