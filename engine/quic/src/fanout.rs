//! The fan-out, independent of the transport: per-channel sequences, frames encoded once
//! and shared, one bounded queue per subscriber, policies for falling behind, resume from a
//! retained window.
//!
//! [`PublisherAgent`] is an [`Agent`]: it reads rings of [`Event`]s, assigns each published
//! event the next sequence of its channel ([`ChannelKind::of_event`]), keeps the last
//! `retain_per_channel` events of every channel for resume, encodes each channel's part of
//! a batch **once** into a [`Bytes`] frame and offers a clone (a reference count) of it to
//! every subscribed connection's bounded queue with `try_send`. It never waits: a full
//! queue applies the subscription's [`Policy`]. A transport (the QUIC server today, a
//! WebTransport session later) talks to the agent through a [`FanoutHandle`]: it
//! [`attach`](FanoutHandle::attach)es a connection with the sending half of its queue and a
//! [`Closer`], subscribes on its behalf, and writes whatever arrives on the queue's
//! receiving half to its stream.
//!
//! **Smart batching.** A channel's batch normally goes out at the end of the `do_work` that
//! read it, so an idle subscriber sees an event as soon as the agent does. But when more
//! than half of a channel's subscribers still have frames queued (their writers, or the
//! network, or the subscribers themselves are behind), sending one small frame per poll
//! only lengthens their queues: each frame costs a queue slot, a stream write and a parse
//! on the subscriber whatever it holds. So the agent then **holds the batch back** and
//! lets later events join it, until most of those subscribers have drained their queues,
//! the batch reaches `max_batch` events (it may then hold up to `2 * max_batch - 1`), or
//! it has been held for [`FanoutConfig::linger`] (500 µs by default; the agent's idle
//! strategy re-checks while parked, so add its longest park). Fewer, larger frames let
//! the subscribers catch up instead of falling further behind. Within a channel the order
//! and the sequences are unchanged; across channels, an event may now reach a subscriber
//! up to `linger` after an event published later on another channel (channels were
//! already sent one after another per batch). A subscriber joining a channel first
//! flushes what is held, so its retained-window replay and the live frames never overlap.
//!
//! **Sequences and the journal.** Without a journal every channel counts from 1 when the
//! agent starts, and a resume is served from the retained window only. With
//! [`FanoutConfig::journal`] (the journal the service's recorder writes the market-data
//! ring into, which must be the agent's first source), a **market-data channel's
//! sequence is defined by the journal**: the event's rank among the journal's market-data
//! events of its instrument (its 1st quote/trade/book delta/status is sequence 1, and so
//! on, over every run the journal holds). At creation the agent scans the journal once
//! (memory-mapped, sequential), counts each instrument's events, and keeps a sparse index:
//! the journal sequence of every 1024th channel sequence (8 bytes per 1024 events). Live,
//! ring sequence `r` of the first source is journal sequence `end + r`, `end` being the
//! journal's end at creation, so the index grows as events pass. A resume older than the
//! window reads the journal from the index mark at or before the wanted sequence (O(1)
//! seek by journal sequence, then at most 1024 of the channel's events skipped), up to
//! the window, then the window, then live: no gap, no duplicate. A journal snapshot is
//! reopened when a resume needs records appended since (the recorder flushes each batch
//! to the page cache), on a thread of its own: opening checks the last segment's checksums
//! (tens of ms for a full segment), which would hold up every other subscriber on the
//! publisher's thread. The request waits (unanswered, nothing changed) until the snapshot
//! is ready, then runs as if it had just arrived (a snapshot that still falls short is
//! reopened again, up to three times per request). Too old for both (the journal does not
//! reach back, or lags behind the window, or more than
//! [`FanoutConfig::max_journal_replay`] events) is
//! `RESUME_TOO_OLD`. Notifications and execution reports are not journaled: they count
//! from 1 per run and resume from the window only.
//!
//! ```
//! use tickwire_engine::agent::Agent;
//! use tickwire_engine::event::{Event, Quote};
//! use tickwire_engine::ring::RingBuilder;
//! use tickwire_quic::fanout::{FanoutConfig, PublisherAgent};
//!
//! let mut ring = RingBuilder::<Event>::new(64).expect("power of two");
//! let source = ring.subscriber("publisher");
//! let mut md = ring.build().expect("has a subscriber");
//! let (mut agent, _handle) = PublisherAgent::new(vec![source], FanoutConfig::default());
//! md.publish(|e| { e.instrument = 1; e.set_quote(Quote::default()) }).expect("room");
//! assert_eq!(agent.do_work(), 1);
//! assert_eq!(agent.last_sequence(tickwire_quic::protocol::ChannelId {
//!     kind: tickwire_quic::protocol::ChannelKind::MarketData, key: 1 }), 1);
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use tokio::sync::{mpsc, oneshot};

use tickwire_engine::agent::{Agent, AgentContext, AgentError, unpin_current_thread};
use tickwire_engine::clock::wall_ns;
use tickwire_engine::event::{Event, EventKind};
use tickwire_engine::instrument::InstrumentRegistry;
use tickwire_engine::journal::{JournalError, JournalReader, OpenOptions, Verify};
use tickwire_engine::ring::Subscriber;

use crate::protocol::{
    ChannelId, ChannelKind, ErrorCode, EventBatch, Policy, SubscribeRequest, batch_flags,
    encode_event_frame, pattern_matches,
};

/// A connection id, unique per transport instance.
pub type ConnId = u64;

/// Closes a subscriber's connection with a code and reason. Must not block (quinn's
/// `Connection::close` only queues the close).
pub trait Closer: Send + Sync + 'static {
    /// Closes the connection.
    fn close(&self, code: ErrorCode, reason: &str);
}

/// The fan-out's settings.
#[derive(Debug, Clone)]
pub struct FanoutConfig {
    /// Events read from each source ring per `do_work` (default 1024): also the largest live
    /// frame (64 KiB of events).
    pub max_batch: usize,
    /// Events retained per channel for resume (default 16 384, 1 MiB per channel).
    pub retain_per_channel: usize,
    /// Events per replay frame (default 8192: 512 KiB, under the 4 MiB frame limit).
    pub replay_frame_events: usize,
    /// Symbols of market-data instruments, for patterns; ids in decimal otherwise.
    pub instruments: InstrumentRegistry,
    /// The journal the service records the market-data ring into (default: none, so a
    /// resume older than the window is refused). When set, the **first source ring must be
    /// that market-data ring**, recorded from its first event on at the journal's end as
    /// it is when the agent is created (the service's `RecorderAgent` on the same ring);
    /// market-data sequences are then defined by the journal (see the module docs), so
    /// they continue across restarts, and a resume older than the window is served from
    /// the journal. The service keeps it in `tickwire-data/journal/`.
    pub journal: Option<PathBuf>,
    /// The most events one resume may read from the journal (default 1 048 576: 64 MiB of
    /// events, 128 replay frames, well inside the default 1024-frame queue); a resume
    /// further behind is refused with `RESUME_TOO_OLD`. The events are copied out of the
    /// journal on the publisher's thread, between ring batches, so this also bounds how long
    /// one resume holds up live delivery (memory-mapped reads, plus page faults when cold;
    /// reopening the journal, the costly part, runs on a thread of its own).
    pub max_journal_replay: usize,
    /// The longest a channel's batch is held back while more than half of its subscribers
    /// have frames queued (default 500 µs; zero never holds): see **smart batching** in the
    /// module docs.
    pub linger: Duration,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        Self {
            max_batch: 1024,
            retain_per_channel: 16_384,
            replay_frame_events: 8192,
            instruments: InstrumentRegistry::default(),
            journal: None,
            max_journal_replay: 1 << 20,
            linger: Duration::from_micros(500),
        }
    }
}

/// Counters, readable from any thread (Relaxed: statistics only).
#[derive(Debug, Default)]
pub struct FanoutStats {
    /// Events read from the rings and sequenced.
    pub events: AtomicU64,
    /// Frames encoded (once per channel per batch, shared by every subscriber).
    pub frames_encoded: AtomicU64,
    /// Frames queued to subscribers (clones of shared frames).
    pub frames_queued: AtomicU64,
    /// Times a quote was conflated for a slow subscriber.
    pub conflated: AtomicU64,
    /// Connections closed for falling behind.
    pub slow_disconnects: AtomicU64,
    /// Events replayed from the journal (resumes older than the window).
    pub journal_replayed: AtomicU64,
    /// Journal snapshots reopened for resumes (each on a thread of its own).
    pub journal_reopens: AtomicU64,
    /// Times a subscribe request waited for such a reopen.
    pub resumes_deferred: AtomicU64,
}

/// Why a subscription was refused: a code for the `Error` frame and a message.
pub type Refusal = (ErrorCode, String);

enum Command {
    Attach {
        conn: ConnId,
        queue: mpsc::Sender<Bytes>,
        closer: Arc<dyn Closer>,
    },
    Detach {
        conn: ConnId,
    },
    Subscribe {
        conn: ConnId,
        request: SubscribeRequest,
        entitled: Vec<String>,
        resume: Vec<(u32, u64)>,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    Unsubscribe {
        conn: ConnId,
        id: u32,
        reply: oneshot::Sender<bool>,
    },
    /// A fresh journal snapshot, opened off the publisher's thread (see
    /// [`Core::start_reopen`]).
    Reopened(Result<JournalReader, Refusal>),
}

/// The reopen thread's answer: sent once, by `send` or, if the thread unwinds first, as
/// an error when dropped.
struct AnswerOnce(Option<Sender<Command>>);

impl AnswerOnce {
    fn send(&mut self, snapshot: Result<JournalReader, Refusal>) {
        if let Some(to) = self.0.take() {
            // The agent may have stopped meanwhile: nobody waits then.
            let _ = to.send(Command::Reopened(snapshot));
        }
    }
}

impl Drop for AnswerOnce {
    fn drop(&mut self) {
        self.send(Err((
            ErrorCode::Internal,
            "reopening the journal failed (its thread panicked)".to_owned(),
        )));
    }
}

/// A subscribe request waiting for a fresher journal snapshot than the one held.
struct Deferred {
    conn: ConnId,
    request: SubscribeRequest,
    entitled: Vec<String>,
    resume: Vec<(u32, u64)>,
    reply: oneshot::Sender<Result<(), Refusal>>,
    /// Reopens it may still wait for: a snapshot can fall short of what it needs (it
    /// arrived while an older reopen ran, or the window moved on during the reopen).
    reopens_left: u8,
}

/// Reopens one subscribe request may wait for before it is refused (each takes tens of
/// ms): bounds how long a resume waits when the journal cannot catch up.
const REOPENS_PER_REQUEST: u8 = 3;

/// What [`Core::subscribe`] did.
enum Subscribed {
    /// Answered (subscribed, or refused).
    Done(Result<(), Refusal>),
    /// A resume needs journal records newer than the snapshot held: nothing was changed,
    /// and the request is to be run again on a fresher one.
    Stale,
}

/// Why [`JournalIndex::collect`] could not serve a range.
enum Collect {
    /// Refused outright.
    Refused(Refusal),
    /// The snapshot ends before the range does: the refusal to give if a fresher snapshot
    /// cannot be had.
    Stale(Refusal),
}

/// How a transport talks to the [`PublisherAgent`]: cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct FanoutHandle {
    commands: Sender<Command>,
    stats: Arc<FanoutStats>,
    epoch: u64,
    durable: u8,
}

impl fmt::Debug for FanoutHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanoutHandle")
            .field("stats", &self.stats)
            .finish()
    }
}

impl FanoutHandle {
    /// This run's sequence space (see `Welcome` in `docs/protocol.md`): the wall clock in ns
    /// when the publisher was built, so a restarted server has another.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The channel kinds whose sequences survive a restart, as a bit mask (bit `kind - 1`):
    /// market data when a journal backs it. Execution reports and notifications count
    /// from 1 in every run.
    pub fn durable_kinds(&self) -> u8 {
        self.durable
    }

    /// Registers a connection: frames for it go to `queue` (its bound is the subscriber's
    /// queue); `closer` ends it when it falls behind.
    pub fn attach(&self, conn: ConnId, queue: mpsc::Sender<Bytes>, closer: Arc<dyn Closer>) {
        // A send fails only when the agent is gone; the connection then gets nothing, and
        // its subscribe calls report `Internal`.
        let _ = self.commands.send(Command::Attach {
            conn,
            queue,
            closer,
        });
    }

    /// Forgets a connection (it closed).
    pub fn detach(&self, conn: ConnId) {
        let _ = self.commands.send(Command::Detach { conn });
    }

    /// Subscribes `conn`, restricted to channels whose name matches one of `entitled`,
    /// replaying `(key, last_sequence)` resume points first.
    pub async fn subscribe(
        &self,
        conn: ConnId,
        request: SubscribeRequest,
        entitled: Vec<String>,
        resume: Vec<(u32, u64)>,
    ) -> Result<(), Refusal> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Subscribe {
                conn,
                request,
                entitled,
                resume,
                reply,
            })
            .map_err(|_| (ErrorCode::Internal, "publisher stopped".to_owned()))?;
        answer
            .await
            .unwrap_or_else(|_| Err((ErrorCode::Internal, "publisher stopped".to_owned())))
    }

    /// Ends subscription `id` of `conn`; false if it was unknown.
    pub async fn unsubscribe(&self, conn: ConnId, id: u32) -> bool {
        let (reply, answer) = oneshot::channel();
        if self
            .commands
            .send(Command::Unsubscribe { conn, id, reply })
            .is_err()
        {
            return false;
        }
        answer.await.unwrap_or(false)
    }

    /// The agent's counters.
    pub fn stats(&self) -> &FanoutStats {
        &self.stats
    }
}

struct Channel {
    name: String,
    /// Last sequence assigned (0: none yet).
    last: u64,
    /// The last events, sequences `last - window.len() + 1 ..= last`.
    window: VecDeque<Event>,
    /// Events for subscribers not yet sent: this do_work's, plus any held back (see
    /// [`FanoutConfig::linger`]); encoded once when flushed.
    batch: EventBatch,
    /// When the first event of a held `batch` was held back.
    held_since: Option<Instant>,
    subscribers: Vec<ConnId>,
    /// With a journal, market data only: `marks[i]` is the journal sequence of this
    /// channel's sequence `i * MARK_EVERY + 1`.
    marks: Vec<u64>,
}

/// Channel sequences between two journal marks (see [`Channel::marks`]): a journal
/// resume scans at most this many of the channel's events past the one it wants, and the
/// index costs 8 bytes per this many events.
const MARK_EVERY: u64 = 1024;

/// The journal side of market-data resume (see the module docs).
struct JournalIndex {
    dir: PathBuf,
    /// A snapshot of the journal, reopened when a resume needs records appended since.
    reader: Option<JournalReader>,
    /// Journal sequence of the first source ring's sequence 0.
    base: u64,
}

impl JournalIndex {
    /// Opens the journal at `dir` (a missing or empty one is an empty journal), counts
    /// every market-data channel's events in it and marks every [`MARK_EVERY`]th.
    fn open(
        dir: &Path,
        config: &FanoutConfig,
    ) -> Result<(Self, HashMap<ChannelId, Channel>), FanoutError> {
        let reader = match JournalReader::open(dir) {
            Ok(r) => Some(r),
            Err(JournalError::NoSegments { .. }) => None,
            Err(JournalError::Io { ref source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                None
            }
            Err(source) => {
                return Err(FanoutError::Journal {
                    dir: dir.to_owned(),
                    source,
                });
            }
        };
        let mut channels: HashMap<ChannelId, Channel> = HashMap::new();
        let base = reader.as_ref().map_or(0, JournalReader::end_sequence);
        if let Some(r) = &reader {
            for (seq, event) in (r.first_sequence()..).zip(r.iter()) {
                let id = ChannelKind::of_event(event).filter(|c| c.kind == ChannelKind::MarketData);
                if let Some(id) = id {
                    let ch = channels
                        .entry(id)
                        .or_insert_with(|| Channel::new(id, config));
                    if ch.last % MARK_EVERY == 0 {
                        ch.marks.push(seq);
                    }
                    ch.last += 1;
                }
            }
        }
        Ok((
            Self {
                dir: dir.to_owned(),
                reader,
                base,
            },
            channels,
        ))
    }

    /// A fresh snapshot of the journal in `dir`. Checks the last segment's checksums (up to
    /// a whole segment, tens of ms), so it runs on a thread of its own, never the
    /// publisher's.
    fn snapshot(dir: &Path) -> Result<JournalReader, Refusal> {
        let options = OpenOptions {
            verify: Verify::LastSegment,
            truncate_torn_tail: false,
            stop_at_damage: false,
        };
        JournalReader::open_with(dir, options).map_err(|e| {
            (
                ErrorCode::Internal,
                format!("reading the journal {}: {e}", dir.display()),
            )
        })
    }

    /// Appends channel `id`'s events with sequences `from..to` to `out`, from the journal.
    /// Stale when the snapshot held ends first: the caller gets a fresher one (off this
    /// thread) and asks again.
    fn collect(
        &self,
        id: ChannelId,
        marks: &[u64],
        from: u64,
        to: u64,
        out: &mut Vec<Event>,
    ) -> Result<(), Collect> {
        let index = ((from - 1) / MARK_EVERY) as usize;
        let Some(&start) = marks.get(index) else {
            return Err(Collect::Refused((
                ErrorCode::ResumeTooOld,
                format!(
                    "channel {} has no journal record of sequence {from}",
                    id.key
                ),
            )));
        };
        let mut sequence = index as u64 * MARK_EVERY + 1;
        let mut at = start;
        while sequence < to {
            let Some(reader) = self.reader.as_ref().filter(|r| at < r.end_sequence()) else {
                let end = self.reader.as_ref().map_or(0, JournalReader::end_sequence);
                return Err(Collect::Stale((
                    ErrorCode::ResumeTooOld,
                    format!(
                        "the journal {} ends at {end}, before sequence {sequence} of channel {}",
                        self.dir.display(),
                        id.key
                    ),
                )));
            };
            if at < reader.first_sequence() {
                return Err(Collect::Refused((
                    ErrorCode::ResumeTooOld,
                    format!(
                        "the journal {} starts at {}, after sequence {sequence} of channel {}",
                        self.dir.display(),
                        reader.first_sequence(),
                        id.key
                    ),
                )));
            }
            let run = reader.run(at);
            if at == start && run.first().and_then(ChannelKind::of_event) != Some(id) {
                return Err(Collect::Refused((
                    ErrorCode::Internal,
                    format!(
                        "journal record {at} in {} is not sequence {sequence} of channel {}: \
                         the journal is not the market-data ring's",
                        self.dir.display(),
                        id.key
                    ),
                )));
            }
            for event in run {
                at += 1;
                if ChannelKind::of_event(event) == Some(id) {
                    if sequence >= from {
                        out.push(*event);
                    }
                    sequence += 1;
                    if sequence == to {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Why [`PublisherAgent::try_new`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FanoutError {
    /// The journal could not be read.
    #[error("reading the journal {dir}: {source}")]
    Journal {
        /// The journal directory.
        dir: PathBuf,
        /// The error.
        source: JournalError,
    },
}

impl Channel {
    fn new(id: ChannelId, config: &FanoutConfig) -> Self {
        Channel {
            name: channel_name(config, id),
            last: 0,
            window: VecDeque::new(),
            batch: EventBatch {
                key: id.key,
                channel: id.kind as u8,
                ..EventBatch::default()
            },
            held_since: None,
            subscribers: Vec::new(),
            marks: Vec::new(),
        }
    }
}

struct Subscription {
    kind: ChannelKind,
    patterns: Vec<String>,
    entitled: Vec<String>,
    policy: Policy,
}

impl Subscription {
    fn matches(&self, id: ChannelId, name: &str) -> bool {
        id.kind == self.kind
            && self.patterns.iter().any(|p| pattern_matches(p, name))
            && self.entitled.iter().any(|p| pattern_matches(p, name))
    }
}

struct Delivery {
    policy: Policy,
    /// Latest quote (sequence, event) not delivered because the queue was full.
    pending: Option<(u64, Event)>,
}

struct Conn {
    queue: mpsc::Sender<Bytes>,
    closer: Arc<dyn Closer>,
    subs: HashMap<u32, Subscription>,
    delivery: HashMap<ChannelId, Delivery>,
    pending: usize,
    closed: bool,
}

impl Conn {
    fn close(&mut self, code: ErrorCode, reason: &str, stats: &FanoutStats) {
        if !self.closed {
            self.closed = true;
            stats.slow_disconnects.fetch_add(1, Ordering::Relaxed);
            self.closer.close(code, reason);
        }
    }

    /// The policy for a channel given the subscriptions matching it: `disconnect` wins.
    fn policy_for(&self, id: ChannelId, name: &str) -> Option<Policy> {
        let mut policy = None;
        for sub in self.subs.values().filter(|s| s.matches(id, name)) {
            if sub.policy == Policy::Disconnect || policy.is_none() {
                policy = Some(sub.policy);
            }
        }
        policy
    }
}

/// Everything but the sources, so a source's poll closure can borrow it.
struct Core {
    channels: HashMap<ChannelId, Channel>,
    conns: HashMap<ConnId, Conn>,
    touched: Vec<ChannelId>,
    config: FanoutConfig,
    stats: Arc<FanoutStats>,
    journal: Option<JournalIndex>,
    /// Subscribe requests waiting for a fresher journal snapshot: a reopen is running
    /// exactly while this is not empty.
    deferred: Vec<Deferred>,
    /// The agent's own command queue, for the reopen thread's answer.
    commands: Sender<Command>,
}

/// The ring consumer that publishes to subscribers (see the module docs).
pub struct PublisherAgent {
    name: String,
    sources: Vec<Subscriber<Event>>,
    commands: Receiver<Command>,
    core: Core,
}

impl fmt::Debug for PublisherAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublisherAgent")
            .field("name", &self.name)
            .field("channels", &self.core.channels.len())
            .field("connections", &self.core.conns.len())
            .finish()
    }
}

impl PublisherAgent {
    /// An agent reading `sources` (market data, execution reports, notifications rings),
    /// and the handle transports use to reach it. With a [`FanoutConfig::journal`], see
    /// [`try_new`](Self::try_new): if the journal cannot be read, this agent runs without
    /// it (sequences from 1, resumes from the window only).
    pub fn new(sources: Vec<Subscriber<Event>>, config: FanoutConfig) -> (Self, FanoutHandle) {
        let mut config = config;
        let opened = match config
            .journal
            .as_deref()
            .map(|dir| JournalIndex::open(dir, &config))
        {
            Some(Ok(opened)) => Some(opened),
            Some(Err(e)) => {
                eprintln!("quic publisher: {e}; resumes are served from the window only");
                config.journal = None;
                None
            }
            None => None,
        };
        Self::build(sources, config, opened)
    }

    /// As [`new`](Self::new), reading the journal of [`FanoutConfig::journal`] (if any)
    /// first: market-data channels start at the sequences it defines. Must be called before
    /// the first event is published to the market-data ring (its recorder may have opened
    /// the journal already, but not appended to it).
    pub fn try_new(
        sources: Vec<Subscriber<Event>>,
        config: FanoutConfig,
    ) -> Result<(Self, FanoutHandle), FanoutError> {
        let opened = config
            .journal
            .as_deref()
            .map(|dir| JournalIndex::open(dir, &config))
            .transpose()?;
        Ok(Self::build(sources, config, opened))
    }

    fn build(
        sources: Vec<Subscriber<Event>>,
        config: FanoutConfig,
        opened: Option<(JournalIndex, HashMap<ChannelId, Channel>)>,
    ) -> (Self, FanoutHandle) {
        let (journal, channels) = match opened {
            Some((index, channels)) => (Some(index), channels),
            None => (None, HashMap::new()),
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        let stats = Arc::new(FanoutStats::default());
        let durable = if journal.is_some() {
            ChannelKind::MarketData.bit()
        } else {
            0
        };
        let handle = FanoutHandle {
            commands: tx,
            stats: Arc::clone(&stats),
            // Distinct across restarts (a clock that went backwards would need two runs in
            // the same nanosecond to collide).
            epoch: wall_ns(),
            durable,
        };
        let agent = Self {
            name: "quic-publisher".to_owned(),
            sources,
            commands: rx,
            core: Core {
                channels,
                conns: HashMap::new(),
                touched: Vec::new(),
                config,
                stats,
                journal,
                deferred: Vec::new(),
                commands: handle.commands.clone(),
            },
        };
        (agent, handle)
    }

    /// The last sequence assigned on `channel` (0 if none).
    pub fn last_sequence(&self, channel: ChannelId) -> u64 {
        self.core.channels.get(&channel).map_or(0, |c| c.last)
    }
}

impl Agent for PublisherAgent {
    fn name(&self) -> &str {
        &self.name
    }

    fn on_start(&mut self, ctx: &mut AgentContext) -> Result<(), AgentError> {
        for source in &self.sources {
            ctx.wake_on(source);
        }
        Ok(())
    }

    fn do_work(&mut self) -> usize {
        let mut work = 0;
        while let Ok(command) = self.commands.try_recv() {
            if work == 0 {
                // A subscriber joining a channel gets the retained window, which already
                // holds the held events: they go out to the current subscribers first.
                self.core.flush_batches(true);
            }
            self.core.apply(command);
            work += 1;
        }
        let max = self.core.config.max_batch;
        for (i, source) in self.sources.iter_mut().enumerate() {
            let core = &mut self.core;
            // The journal records the first source ring: ring sequence r is journal
            // sequence base + r.
            let base = core.journal.as_ref().filter(|_| i == 0).map(|j| j.base);
            work += source.poll_up_to(max, |event, seq, _| {
                core.ingest(event, base.map(|b| b + seq));
            });
        }
        self.core.flush_batches(false);
        work += self.core.flush_pending();
        work
    }

    fn is_done(&self) -> bool {
        self.sources.iter().all(|s| s.is_finished())
    }

    fn on_close(&mut self) -> Result<(), AgentError> {
        // The stream ended: what was pending goes out, then every connection's queue is
        // dropped, so its writer finishes the event stream after the last frame.
        self.core.flush_batches(true);
        self.core.flush_pending();
        self.core.refuse_deferred();
        self.core.conns.clear();
        Ok(())
    }
}

fn channel_name(config: &FanoutConfig, id: ChannelId) -> String {
    match id.kind {
        ChannelKind::MarketData => config
            .instruments
            .symbol(id.key)
            .map_or_else(|| id.key.to_string(), str::to_owned),
        _ => id.key.to_string(),
    }
}

impl Core {
    /// Sequences `event` on its channel; `journal_seq` is its journal sequence when it
    /// comes from the journaled market-data ring.
    fn ingest(&mut self, event: &Event, journal_seq: Option<u64>) {
        let Some(id) = ChannelKind::of_event(event) else {
            return;
        };
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        let ch = match self.channels.get_mut(&id) {
            Some(ch) => ch,
            None => {
                let name = channel_name(&self.config, id);
                let mut subscribers = Vec::new();
                for (conn_id, conn) in &mut self.conns {
                    if let Some(policy) = conn.policy_for(id, &name) {
                        conn.delivery.insert(
                            id,
                            Delivery {
                                policy,
                                pending: None,
                            },
                        );
                        subscribers.push(*conn_id);
                    }
                }
                let mut ch = Channel::new(id, &self.config);
                ch.name = name;
                ch.subscribers = subscribers;
                self.channels.entry(id).or_insert(ch)
            }
        };
        if let Some(at) = journal_seq.filter(|_| id.kind == ChannelKind::MarketData) {
            if ch.last % MARK_EVERY == 0 {
                ch.marks.push(at);
            }
        }
        ch.last += 1;
        if ch.window.len() == self.config.retain_per_channel {
            ch.window.pop_front();
        }
        if self.config.retain_per_channel > 0 {
            ch.window.push_back(*event);
        }
        if !ch.subscribers.is_empty() {
            if ch.batch.events.is_empty() {
                ch.batch.first_sequence = ch.last;
                self.touched.push(id);
            }
            ch.batch.events.push(*event);
        }
    }

    /// Encodes each touched channel's batch once and offers it to every subscriber, but
    /// holds back (unless `force`) a batch most of whose subscribers are busy, for up to
    /// [`FanoutConfig::linger`] (see the module docs).
    fn flush_batches(&mut self, force: bool) {
        let mut now = None;
        let mut touched = std::mem::take(&mut self.touched);
        touched.retain(|id| {
            let Some(ch) = self.channels.get_mut(id) else {
                return false;
            };
            if !force && hold(ch, &self.conns, &self.config, &mut now) {
                return true;
            }
            ch.held_since = None;
            let Some(latest) = ch.batch.events.last().copied() else {
                return false;
            };
            let frame = encode_event_frame(&ch.batch);
            self.stats.frames_encoded.fetch_add(1, Ordering::Relaxed);
            let quotes_only = ch
                .batch
                .events
                .iter()
                .all(|e| e.kind == EventKind::Quote as u8);
            ch.batch.events.clear();
            for conn_id in &ch.subscribers {
                if let Some(conn) = self.conns.get_mut(conn_id) {
                    offer(
                        conn,
                        *id,
                        &frame,
                        quotes_only,
                        (ch.last, latest),
                        &self.stats,
                    );
                }
            }
            false
        });
        self.touched = touched;
    }

    /// Sends conflated quotes to connections whose queues have room again.
    fn flush_pending(&mut self) -> usize {
        let mut sent = 0;
        for conn in self.conns.values_mut() {
            if conn.pending == 0 || conn.closed {
                continue;
            }
            let Conn {
                queue,
                delivery,
                pending,
                ..
            } = conn;
            for (id, d) in delivery.iter_mut() {
                if d.pending.is_some() {
                    if !send_pending(queue, *id, d) {
                        break;
                    }
                    *pending -= 1;
                    sent += 1;
                }
            }
        }
        sent
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Attach {
                conn,
                queue,
                closer,
            } => {
                self.conns.insert(
                    conn,
                    Conn {
                        queue,
                        closer,
                        subs: HashMap::new(),
                        delivery: HashMap::new(),
                        pending: 0,
                        closed: false,
                    },
                );
            }
            Command::Detach { conn } => {
                if let Some(c) = self.conns.remove(&conn) {
                    for id in c.delivery.keys() {
                        if let Some(ch) = self.channels.get_mut(id) {
                            ch.subscribers.retain(|s| *s != conn);
                        }
                    }
                }
            }
            Command::Subscribe {
                conn,
                request,
                entitled,
                resume,
                reply,
            } => self.subscribe_or_defer(Deferred {
                conn,
                request,
                entitled,
                resume,
                reply,
                reopens_left: REOPENS_PER_REQUEST,
            }),
            Command::Unsubscribe { conn, id, reply } => {
                let _ = reply.send(self.unsubscribe(conn, id));
            }
            Command::Reopened(snapshot) => {
                let snapshot = match (snapshot, self.journal.as_mut()) {
                    (Ok(reader), Some(journal)) => {
                        journal.reader = Some(reader);
                        self.stats.journal_reopens.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                    (Err(refusal), _) => Err(refusal),
                    (Ok(_), None) => Err((ErrorCode::Internal, "no journal".to_owned())),
                };
                // Emptied first: a request that needs a later snapshot starts the next reopen.
                for waiting in std::mem::take(&mut self.deferred) {
                    match &snapshot {
                        Err(refusal) => {
                            let _ = waiting.reply.send(Err(refusal.clone()));
                        }
                        Ok(()) => self.subscribe_or_defer(waiting),
                    }
                }
            }
        }
    }

    /// Refuses every deferred request (the agent is stopping).
    fn refuse_deferred(&mut self) {
        for waiting in std::mem::take(&mut self.deferred) {
            let _ = waiting
                .reply
                .send(Err((ErrorCode::Internal, "publisher stopped".to_owned())));
        }
    }

    /// Subscribes now, or, when a resume needs journal records newer than the snapshot
    /// held, keeps the request and has the journal reopened on another thread: the
    /// publisher's thread never checks a segment's checksums, so a resume does not hold
    /// up live delivery for longer than it takes to copy its events.
    fn subscribe_or_defer(&mut self, waiting: Deferred) {
        let outcome = self.subscribe(
            waiting.conn,
            &waiting.request,
            &waiting.entitled,
            &waiting.resume,
            waiting.reopens_left > 0,
        );
        match outcome {
            Subscribed::Done(answer) => {
                let _ = waiting.reply.send(answer);
            }
            Subscribed::Stale => {
                self.stats.resumes_deferred.fetch_add(1, Ordering::Relaxed);
                let running = !self.deferred.is_empty();
                self.deferred.push(Deferred {
                    reopens_left: waiting.reopens_left - 1,
                    ..waiting
                });
                if !running {
                    self.start_reopen();
                }
            }
        }
    }

    /// Opens a fresh journal snapshot on a thread of its own; the answer comes back as
    /// [`Command::Reopened`]. Called when the first request starts waiting, so one runs at
    /// a time.
    fn start_reopen(&mut self) {
        let Some(journal) = self.journal.as_ref() else {
            // Only a journal resume waits; answered all the same, never left waiting.
            let no_journal = (ErrorCode::Internal, "no journal".to_owned());
            self.apply(Command::Reopened(Err(no_journal)));
            return;
        };
        let dir = journal.dir.clone();
        let shown = dir.display().to_string();
        let answer = self.commands.clone();
        let spawned = std::thread::Builder::new()
            .name("quic-journal-reopen".to_owned())
            .spawn(move || {
                // Answers even if opening panics, or the requests would wait for good.
                let mut answer = AnswerOnce(Some(answer));
                // Off the publisher's core, if its thread is pinned (a new thread
                // inherits the pin); where it cannot, it still runs.
                let _ = unpin_current_thread();
                let snapshot = JournalIndex::snapshot(&dir);
                answer.send(snapshot);
            });
        if let Err(e) = spawned {
            self.apply(Command::Reopened(Err((
                ErrorCode::Internal,
                format!("cannot start a thread to reopen the journal {shown}: {e}"),
            ))));
        }
    }

    /// Subscribes `conn_id`, replaying from `resume` first. With `may_defer`, a resume that
    /// needs journal records newer than the snapshot held changes nothing and is
    /// [`Subscribed::Stale`]; without, it is refused.
    fn subscribe(
        &mut self,
        conn_id: ConnId,
        request: &SubscribeRequest,
        entitled: &[String],
        resume: &[(u32, u64)],
        may_defer: bool,
    ) -> Subscribed {
        let refuse = |code, message: &str| Subscribed::Done(Err((code, message.to_owned())));
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return refuse(ErrorCode::Internal, "connection not attached");
        };
        if conn.subs.contains_key(&request.id) {
            return refuse(ErrorCode::DuplicateSubscription, "id in use");
        }
        let sub = Subscription {
            kind: request.kind,
            patterns: request.patterns.clone(),
            entitled: entitled.to_vec(),
            policy: request.policy,
        };
        // Check every resume point before changing anything. One request may replay at
        // most `max_journal_replay` events from the journal in all, and each channel once:
        // a hostile client repeating a resume point cannot make the publisher read more.
        let mut replays: Vec<(ChannelId, u64, Vec<Event>)> = Vec::new();
        let mut journal_budget = self.config.max_journal_replay as u64;
        for &(key, last) in resume {
            let id = ChannelId {
                kind: sub.kind,
                key,
            };
            if replays.iter().any(|(seen, _, _)| *seen == id) {
                continue;
            }
            let Some(ch) = self.channels.get(&id) else {
                if last > 0 {
                    return Subscribed::Done(Err((
                        ErrorCode::ResumeAhead,
                        format!("channel {key} has published nothing; asked after {last}"),
                    )));
                }
                continue;
            };
            if !sub.matches(id, &ch.name) || conn.delivery.contains_key(&id) {
                continue;
            }
            if last > ch.last {
                return Subscribed::Done(Err((
                    ErrorCode::ResumeAhead,
                    format!("channel {key} is at {}; asked after {last}", ch.last),
                )));
            }
            let first_retained = ch.last - ch.window.len() as u64 + 1;
            // Older than the window: from the journal up to the window (market data only).
            let mut from_journal = Vec::new();
            if last + 1 < first_retained {
                let journal = self
                    .journal
                    .as_ref()
                    .filter(|_| id.kind == ChannelKind::MarketData);
                let Some(journal) = journal else {
                    return Subscribed::Done(Err((
                        ErrorCode::ResumeTooOld,
                        format!("channel {key} retains from {first_retained}; asked after {last}"),
                    )));
                };
                let wanted = first_retained - (last + 1);
                if wanted > journal_budget {
                    return Subscribed::Done(Err((
                        ErrorCode::ResumeTooOld,
                        format!(
                            "channel {key} is at {}; asked after {last}: {wanted} events from the \
                             journal, over what is left of the limit of {} per request",
                            ch.last, self.config.max_journal_replay
                        ),
                    )));
                }
                journal_budget -= wanted;
                match journal.collect(id, &ch.marks, last + 1, first_retained, &mut from_journal) {
                    Ok(()) => {}
                    Err(Collect::Stale(_)) if may_defer => return Subscribed::Stale,
                    Err(Collect::Stale(refusal) | Collect::Refused(refusal)) => {
                        return Subscribed::Done(Err(refusal));
                    }
                }
            }
            replays.push((id, last, from_journal));
        }
        // Join every matching channel, present ones now, future ones in `ingest`.
        conn.subs.insert(request.id, sub);
        for (id, ch) in &mut self.channels {
            if id.kind != request.kind {
                continue;
            }
            if let Some(policy) = conn.policy_for(*id, &ch.name) {
                match conn.delivery.get_mut(id) {
                    Some(d) => d.policy = policy,
                    None => {
                        conn.delivery.insert(
                            *id,
                            Delivery {
                                policy,
                                pending: None,
                            },
                        );
                        ch.subscribers.push(conn_id);
                    }
                }
            }
        }
        // Replay, ahead of any live frame (commands run between batches).
        for (id, last, mut events) in replays {
            let Some(ch) = self.channels.get(&id) else {
                continue;
            };
            self.stats
                .journal_replayed
                .fetch_add(events.len() as u64, Ordering::Relaxed);
            let first_retained = ch.last - ch.window.len() as u64 + 1;
            let skip = (last + 1).saturating_sub(first_retained) as usize;
            events.extend(ch.window.iter().skip(skip).copied());
            for (i, chunk) in events
                .chunks(self.config.replay_frame_events.max(1))
                .enumerate()
            {
                let frame = encode_event_frame(&EventBatch {
                    first_sequence: last + 1 + (i * self.config.replay_frame_events.max(1)) as u64,
                    key: id.key,
                    channel: id.kind as u8,
                    flags: batch_flags::REPLAY,
                    events: chunk.to_vec(),
                });
                if conn.queue.try_send(frame).is_err() {
                    conn.close(
                        ErrorCode::SlowConsumer,
                        "replay does not fit the subscriber queue",
                        &self.stats,
                    );
                    return Subscribed::Done(Ok(()));
                }
            }
        }
        Subscribed::Done(Ok(()))
    }

    fn unsubscribe(&mut self, conn_id: ConnId, sub_id: u32) -> bool {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return false;
        };
        if conn.subs.remove(&sub_id).is_none() {
            return false;
        }
        let ids: Vec<ChannelId> = conn.delivery.keys().copied().collect();
        for id in ids {
            let Some(ch) = self.channels.get_mut(&id) else {
                continue;
            };
            match conn.policy_for(id, &ch.name) {
                Some(policy) => {
                    if let Some(d) = conn.delivery.get_mut(&id) {
                        d.policy = policy;
                    }
                }
                None => {
                    if let Some(d) = conn.delivery.remove(&id) {
                        if d.pending.is_some() {
                            conn.pending -= 1;
                        }
                    }
                    ch.subscribers.retain(|s| *s != conn_id);
                }
            }
        }
        true
    }
}

/// Whether to hold back `ch`'s batch for now (smart batching, see the module docs): it is
/// short of `max_batch` events, more than half of its subscribers still have frames queued,
/// and it has been held for less than `linger`. `now` is read once per flush, when needed.
fn hold(
    ch: &mut Channel,
    conns: &HashMap<ConnId, Conn>,
    config: &FanoutConfig,
    now: &mut Option<Instant>,
) -> bool {
    let subscribers = ch.subscribers.len();
    if config.linger.is_zero() || subscribers == 0 || ch.batch.events.len() >= config.max_batch {
        return false;
    }
    // Stop looking as soon as half are idle: the common case (everyone keeping up) costs
    // half the lookups, on top of the ones the send makes.
    let mut idle = 0;
    for conn in &ch.subscribers {
        let busy = conns
            .get(conn)
            .is_some_and(|c| !c.closed && c.queue.capacity() < c.queue.max_capacity());
        if !busy {
            idle += 1;
            if idle * 2 >= subscribers {
                return false;
            }
        }
    }
    let now = *now.get_or_insert_with(Instant::now);
    match ch.held_since {
        None => {
            ch.held_since = Some(now);
            true
        }
        Some(since) => now.duration_since(since) < config.linger,
    }
}

/// Sends a delivery's conflated quote; false if the queue is still full.
fn send_pending(queue: &mpsc::Sender<Bytes>, id: ChannelId, d: &mut Delivery) -> bool {
    let Some((sequence, event)) = d.pending else {
        return true;
    };
    let frame = encode_event_frame(&EventBatch {
        first_sequence: sequence,
        key: id.key,
        channel: id.kind as u8,
        flags: batch_flags::CONFLATED,
        events: vec![event],
    });
    match queue.try_send(frame) {
        Ok(()) => {
            d.pending = None;
            true
        }
        Err(mpsc::error::TrySendError::Full(_)) => false,
        // The connection is gone; its detach follows.
        Err(mpsc::error::TrySendError::Closed(_)) => {
            d.pending = None;
            true
        }
    }
}

/// Offers a shared frame to one connection, applying its policy when the queue is full.
fn offer(
    conn: &mut Conn,
    id: ChannelId,
    frame: &Bytes,
    quotes_only: bool,
    latest: (u64, Event),
    stats: &FanoutStats,
) {
    if conn.closed {
        return;
    }
    let Some(d) = conn.delivery.get_mut(&id) else {
        return;
    };
    let had_pending = d.pending.is_some();
    let mut full = had_pending && !send_pending(&conn.queue, id, d);
    if had_pending && !full {
        conn.pending -= 1;
    }
    if !full {
        match conn.queue.try_send(frame.clone()) {
            Ok(()) => {
                stats.frames_queued.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(mpsc::error::TrySendError::Full(_)) => full = true,
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
    debug_assert!(full);
    match d.policy {
        Policy::Disconnect => conn.close(ErrorCode::SlowConsumer, "subscriber queue full", stats),
        Policy::Conflate if quotes_only => {
            if d.pending.is_none() {
                conn.pending += 1;
            }
            d.pending = Some(latest);
            stats.conflated.fetch_add(1, Ordering::Relaxed);
        }
        Policy::Conflate => conn.close(
            ErrorCode::Undeliverable,
            "subscriber queue full and a non-quote event cannot be conflated",
            stats,
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tickwire_engine::event::Quote;
    use tickwire_engine::ring::{Publisher, RingBuilder};

    use super::*;
    use crate::protocol::{HEADER_LEN, access_event_batch, aligned_payload, decode_header};

    /// Records the codes it was asked to close with.
    #[derive(Default)]
    struct Closes(Mutex<Vec<ErrorCode>>);

    impl Closer for Closes {
        fn close(&self, code: ErrorCode, _reason: &str) {
            self.0.lock().expect("not poisoned").push(code);
        }
    }

    struct Rig {
        md: Publisher<Event>,
        agent: PublisherAgent,
        handle: FanoutHandle,
        runtime: tokio::runtime::Runtime,
        closes: Arc<Closes>,
    }

    impl Rig {
        fn new(linger: Duration) -> Self {
            let mut ring = RingBuilder::<Event>::new(64).expect("power of two");
            let source = ring.subscriber("publisher");
            let md = ring.build().expect("has a subscriber");
            let config = FanoutConfig {
                linger,
                ..FanoutConfig::default()
            };
            let (agent, handle) = PublisherAgent::new(vec![source], config);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("runtime");
            Self {
                md,
                agent,
                handle,
                runtime,
                closes: Arc::default(),
            }
        }

        fn quote(&mut self) {
            self.md
                .publish(|e| {
                    *e = Event::new(0, 7, 0, 0);
                    e.set_quote(Quote::default());
                })
                .expect("room");
        }

        /// Attaches `conn` with a queue of 16 frames and subscribes it to all market data,
        /// resuming after `resume` when given; returns the queue's receiving end.
        fn subscriber(&mut self, conn: ConnId, resume: Option<u64>) -> mpsc::Receiver<Bytes> {
            let (tx, rx) = mpsc::channel(16);
            self.handle
                .attach(conn, tx, Arc::clone(&self.closes) as Arc<dyn Closer>);
            let request = SubscribeRequest {
                id: 1,
                kind: ChannelKind::MarketData,
                policy: Policy::Disconnect,
                patterns: vec!["*".into()],
            };
            let handle = self.handle.clone();
            let resume = resume.map(|last| vec![(7, last)]).unwrap_or_default();
            let agent = &mut self.agent;
            self.runtime.block_on(async move {
                let reply = tokio::spawn(async move {
                    handle
                        .subscribe(conn, request, vec!["*".into()], resume)
                        .await
                });
                for _ in 0..1000 {
                    tokio::task::yield_now().await;
                    agent.do_work();
                    if reply.is_finished() {
                        break;
                    }
                }
                let answer = tokio::time::timeout(Duration::from_secs(5), reply).await;
                answer
                    .expect("subscribe answered in time")
                    .expect("subscribe task")
                    .expect("subscribed");
            });
            rx
        }
    }

    /// The sequences a queue holds now, one `Vec` per frame.
    fn frames(rx: &mut mpsc::Receiver<Bytes>) -> Vec<Vec<u64>> {
        let mut out = Vec::new();
        while let Ok(frame) = rx.try_recv() {
            let header: &[u8; HEADER_LEN] = frame[..HEADER_LEN].try_into().expect("header");
            let (_, len) = decode_header(header, u32::MAX).expect("valid header");
            let mut payload = aligned_payload(len);
            payload.copy_from_slice(&frame[HEADER_LEN..]);
            let batch = access_event_batch(&payload).expect("valid batch");
            let first = batch.first_sequence.to_native();
            out.push((first..first + batch.events.len() as u64).collect());
        }
        out
    }

    #[test]
    fn a_reopen_thread_that_unwinds_still_answers() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let unwound = std::thread::spawn(move || {
            let _answer = AnswerOnce(Some(tx));
            panic!("opening the journal panicked");
        })
        .join();
        assert!(unwound.is_err());
        match rx.try_recv() {
            Ok(Command::Reopened(Err((ErrorCode::Internal, message)))) => {
                assert!(message.contains("panicked"), "{message}");
            }
            _ => panic!("no error answer from the unwound thread"),
        }
    }

    #[test]
    fn a_resume_waits_for_a_journal_reopen_off_the_thread_while_live_delivery_goes_on() {
        use tickwire_engine::journal::{FsyncPolicy, JournalConfig, JournalWriter};
        let dir = tempfile::tempdir().expect("temp dir");
        let mut journal = JournalWriter::open(
            dir.path(),
            JournalConfig {
                fsync: FsyncPolicy::Never,
                ..JournalConfig::default()
            },
        )
        .expect("journal");
        let quote = |i: u64| {
            let mut e = Event::new(0, 7, i, i);
            e.set_quote(Quote {
                seq: i,
                ..Quote::default()
            });
            e
        };
        // A previous run: channel md/7 sequences 1..=3000.
        for i in 1..=3000 {
            journal.append(&quote(i)).expect("append");
        }
        journal.flush().expect("flush");
        let mut ring = RingBuilder::<Event>::new(4096).expect("power of two");
        let source = ring.subscriber("publisher");
        let mut md = ring.build().expect("has a subscriber");
        let (mut agent, handle) = PublisherAgent::try_new(
            vec![source],
            FanoutConfig {
                retain_per_channel: 100,
                journal: Some(dir.path().to_owned()),
                linger: Duration::ZERO,
                ..FanoutConfig::default()
            },
        )
        .expect("journal readable");
        // Its own thread, so that the subscribe tasks run while this one drives the agent.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .expect("runtime");
        let closes: Arc<Closes> = Arc::default();
        /// Calls `do_work` until `done`, failing after 10 s.
        fn drive(agent: &mut PublisherAgent, what: &str, done: impl Fn(&PublisherAgent) -> bool) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !done(agent) {
                assert!(Instant::now() < deadline, "{what}: not in 10 s");
                std::thread::sleep(Duration::from_micros(200));
                agent.do_work();
            }
        }
        let request = SubscribeRequest {
            id: 1,
            kind: ChannelKind::MarketData,
            policy: Policy::Disconnect,
            patterns: vec!["*".into()],
        };
        // `a` is live from the start; this run's events are journaled as the recorder would.
        let (tx, mut a) = mpsc::channel(1024);
        handle.attach(1, tx, Arc::clone(&closes) as Arc<dyn Closer>);
        let subscribe = |conn, resume: Vec<(u32, u64)>| {
            let handle = handle.clone();
            let request = request.clone();
            runtime.spawn(async move {
                handle
                    .subscribe(conn, request, vec!["*".into()], resume)
                    .await
            })
        };
        let live_a = subscribe(1, Vec::new());
        drive(&mut agent, "a subscribed", |_| live_a.is_finished());
        let mut publish = |i: u64, agent: &mut PublisherAgent| {
            md.publish(|e| *e = quote(i)).expect("room");
            journal.append(&quote(i)).expect("append");
            journal.flush().expect("flush");
            agent.do_work();
        };
        for i in 3001..=4000 {
            publish(i, &mut agent);
        }
        runtime.block_on(async { live_a.await.expect("task").expect("a subscribed") });
        let seen_a: Vec<u64> = frames(&mut a).into_iter().flatten().collect();
        assert_eq!(seen_a, (3001..=4000).collect::<Vec<_>>());

        // `b` held 3100: 3101..3900 are in the journal, but not in the agent's snapshot
        // (taken at 3000), and the window holds 3901..=4000.
        let (tx, mut b) = mpsc::channel(1024);
        handle.attach(2, tx, Arc::clone(&closes) as Arc<dyn Closer>);
        let resumed_b = subscribe(2, vec![(7, 3100)]);
        // The request waits for a reopen on another thread (its answer may come back at
        // once if that thread is quick: the deferral is what counts).
        drive(&mut agent, "b's request deferred", |agent| {
            agent.core.stats.resumes_deferred.load(Ordering::Relaxed) == 1
        });
        // Live events keep flowing to `a` meanwhile.
        publish(4001, &mut agent);
        assert_eq!(frames(&mut a), vec![vec![4001]]);
        drive(&mut agent, "b's resume answered", |_| {
            resumed_b.is_finished()
        });
        runtime.block_on(async { resumed_b.await.expect("task").expect("b resumed") });
        publish(4002, &mut agent);
        let seen_b: Vec<u64> = frames(&mut b).into_iter().flatten().collect();
        assert_eq!(
            seen_b,
            (3101..=4002).collect::<Vec<_>>(),
            "no gap, no duplicate"
        );
        assert_eq!(frames(&mut a), vec![vec![4002]]);
        assert_eq!(handle.stats().journal_reopens.load(Ordering::Relaxed), 1);
        // 3101..=3901 when 4001 moved the window on before the snapshot came back (it then
        // reached `b` in the replay), 3101..=3900 when the snapshot came first (4001 then
        // reached `b` live): both without a gap or a duplicate, checked above.
        let replayed = handle.stats().journal_replayed.load(Ordering::Relaxed);
        assert!(replayed == 800 || replayed == 801, "{replayed}");
        assert!(closes.0.lock().expect("not poisoned").is_empty());
    }

    #[test]
    fn a_batch_is_held_while_its_subscriber_is_behind_then_sent_whole() {
        let mut rig = Rig::new(Duration::from_secs(3600));
        let mut rx = rig.subscriber(1, None);
        rig.quote();
        assert_eq!(rig.agent.do_work(), 1);
        // Frame 1 stays queued: the subscriber is behind, so 2..=4 wait and join up.
        for _ in 0..3 {
            rig.quote();
            assert_eq!(rig.agent.do_work(), 1);
        }
        let first = rx.try_recv().expect("frame 1 was sent at once");
        assert_eq!(first.len(), HEADER_LEN + 8 + 64 + 8 + 8, "one event");
        // The queue is empty now: the held batch goes out whole at the next look.
        rig.agent.do_work();
        assert_eq!(frames(&mut rx), vec![vec![2, 3, 4]]);
        // Keeping up again, every poll's events are sent at once.
        rig.quote();
        rig.agent.do_work();
        assert_eq!(frames(&mut rx), vec![vec![5]]);
        assert!(rig.closes.0.lock().expect("not poisoned").is_empty());
    }

    #[test]
    fn a_held_batch_goes_out_after_linger_even_when_the_subscriber_stays_behind() {
        let mut rig = Rig::new(Duration::from_millis(20));
        let mut rx = rig.subscriber(1, None);
        rig.quote();
        rig.agent.do_work();
        rig.quote();
        rig.agent.do_work();
        // Frame 1 is still queued, so event 2 is held...
        assert_eq!(rx.len(), 1);
        std::thread::sleep(Duration::from_millis(40));
        // ...until linger has passed.
        rig.agent.do_work();
        assert_eq!(frames(&mut rx), vec![vec![1], vec![2]]);
    }

    #[test]
    fn zero_linger_never_holds() {
        let mut rig = Rig::new(Duration::ZERO);
        let mut rx = rig.subscriber(1, None);
        for _ in 0..3 {
            rig.quote();
            rig.agent.do_work();
        }
        assert_eq!(frames(&mut rx), vec![vec![1], vec![2], vec![3]]);
    }

    #[test]
    fn a_subscriber_resuming_while_a_batch_is_held_gets_each_event_once() {
        let mut rig = Rig::new(Duration::from_secs(3600));
        let mut behind = rig.subscriber(1, None);
        rig.quote();
        rig.agent.do_work();
        rig.quote();
        rig.quote();
        rig.agent.do_work();
        assert_eq!(behind.len(), 1, "events 2 and 3 are held");
        // A second subscriber resumes after sequence 1: the window replays 2 and 3, and
        // the held frame went to the first subscriber only, before it joined.
        let mut late = rig.subscriber(2, Some(1));
        let mut seen: Vec<u64> = frames(&mut late).into_iter().flatten().collect();
        rig.quote();
        rig.agent.do_work();
        seen.extend(frames(&mut late).into_iter().flatten());
        assert_eq!(seen, vec![2, 3, 4]);
        let first: Vec<u64> = frames(&mut behind).into_iter().flatten().collect();
        assert_eq!(first, vec![1, 2, 3, 4]);
    }
}
