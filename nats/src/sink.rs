//! The sink: an agent that publishes rings of events to JetStream without ever making the
//! ring wait.
//!
//! [`NatsSink`] reads its sources (market data first, then execution reports and
//! notifications, any order after that) and groups consecutive events of one subject into
//! a message (at most [`max_batch`](NatsConfig::max_batch)); each message is encoded once,
//! on the agent's thread, as the QUIC protocol's event frame, and offered to a bounded
//! queue with `try_send`. A tokio task ([`NatsSinkHandle`]) publishes the queue in order,
//! with up to [`max_in_flight`](NatsConfig::max_in_flight) acknowledgements outstanding.
//!
//! **Order and exactly-once.** Every message carries `Nats-Msg-Id` and
//! `Nats-Expected-Last-Msg-Id` (the message before it in the same stream), so the server
//! stores messages of a stream only in the order the sink sent them, and never twice within
//! the duplicate window. When an acknowledgement fails (server gone, timeout, a refused
//! message), the task drops its outstanding futures, waits for the server, reads each
//! stream's last stored message, forgets the messages up to it (they were stored), and
//! publishes the rest again in order: it resumes from the last acknowledged sequence.
//!
//! **When NATS is slow or down** the queue fills. [`OverflowPolicy::Drop`] drops what does
//! not fit (counted); [`OverflowPolicy::CatchUp`] with a journal stops queueing the first
//! source and lets the task publish the missed events from the journal until it reaches
//! the ring again (a hand-over at a sequence both agree on), then return to the queue.
//!
//! Start it with a tokio runtime handle; run the agent like any other:
//!
//! ```no_run
//! use tickwire_engine::event::Event;
//! use tickwire_engine::instrument::InstrumentRegistry;
//! use tickwire_engine::ring::RingBuilder;
//! use tickwire_nats::{NatsConfig, NatsSink};
//!
//! let runtime = tokio::runtime::Runtime::new()?;
//! let mut ring = RingBuilder::<Event>::new(1024)?;
//! let source = ring.subscriber("nats");
//! let md = ring.build()?;
//! let (agent, handle) = NatsSink::new(
//!     NatsConfig::default(), vec![source], InstrumentRegistry::default(), runtime.handle())?;
//! // ... put `agent` on a thread of a Layout, publish into `md`, drop it, join ...
//! let stats = handle.finish(std::time::Duration::from_secs(10))?;
//! println!("{stats}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::IntoFuture;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use bytes::Bytes;
use tokio::sync::mpsc;

use tickwire_engine::agent::{Agent, AgentContext, AgentError};
use tickwire_engine::event::Event;
use tickwire_engine::instrument::InstrumentRegistry;
use tickwire_engine::journal::{JournalReader, OpenOptions, Verify};
use tickwire_engine::ring::Subscriber;

use crate::config::{NatsConfig, OverflowPolicy};
use crate::{Encoder, NatsError, headers};

/// `Shared::handover` when nothing is proposed.
const NONE: u64 = u64::MAX >> 1;
/// Bit set in `Shared::handover` by the agent when it took the proposed sequence.
const TAKEN: u64 = 1 << 63;

/// The sink's counters and state, readable from any thread (Relaxed: statistics).
#[derive(Debug, Default)]
pub struct NatsStats {
    /// Events read from the rings (orders, which are never published, excluded).
    pub events_in: AtomicU64,
    /// Messages offered to the queue and accepted.
    pub messages_queued: AtomicU64,
    /// Events the server holds, each counted once: acknowledged, or found stored when
    /// resynchronising.
    pub events_acked: AtomicU64,
    /// Messages the server acknowledged.
    pub messages_acked: AtomicU64,
    /// Acknowledgements flagged duplicate (a resent message the server already had).
    pub duplicates: AtomicU64,
    /// Events dropped because the queue was full (`drop` policy, or no journal).
    pub dropped_events: AtomicU64,
    /// Events not queued because the queue was full, to be published from the journal.
    pub overflowed_events: AtomicU64,
    /// Events published from the journal.
    pub journal_events: AtomicU64,
    /// Times the agent went back to the queue after a catch-up from the journal.
    pub rejoins: AtomicU64,
    /// Times the task resynchronised with the server after a failed acknowledgement.
    pub resyncs: AtomicU64,
    /// Whether the client is connected now.
    pub connected: AtomicBool,
    /// Whether the streams are set up (the task publishes only then).
    pub ready: AtomicBool,
    /// Sequence of the last acknowledged event of the first source (+1; 0: none).
    pub acked_through: AtomicU64,
    last_error: Mutex<String>,
}

impl NatsStats {
    fn error(&self, message: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = message;
        }
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            events_in: r(&self.events_in),
            messages_queued: r(&self.messages_queued),
            events_acked: r(&self.events_acked),
            messages_acked: r(&self.messages_acked),
            duplicates: r(&self.duplicates),
            dropped_events: r(&self.dropped_events),
            overflowed_events: r(&self.overflowed_events),
            journal_events: r(&self.journal_events),
            rejoins: r(&self.rejoins),
            resyncs: r(&self.resyncs),
            connected: self.connected.load(Ordering::Relaxed),
            ready: self.ready.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default(),
        }
    }
}

/// A copy of [`NatsStats`] (see there for the fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct StatsSnapshot {
    pub events_in: u64,
    pub messages_queued: u64,
    pub events_acked: u64,
    pub messages_acked: u64,
    pub duplicates: u64,
    pub dropped_events: u64,
    pub overflowed_events: u64,
    pub journal_events: u64,
    pub rejoins: u64,
    pub resyncs: u64,
    pub connected: bool,
    pub ready: bool,
    pub last_error: String,
}

impl fmt::Display for StatsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nats: {} | in {} ev | queued {} msg | acked {} ev in {} msg | dup {} | dropped {} | overflowed {} | from journal {} (rejoins {}) | resyncs {}",
            if !self.connected {
                "disconnected"
            } else if self.ready {
                "connected"
            } else {
                "connected, streams not ready"
            },
            self.events_in,
            self.messages_queued,
            self.events_acked,
            self.messages_acked,
            self.duplicates,
            self.dropped_events,
            self.overflowed_events,
            self.journal_events,
            self.rejoins,
            self.resyncs
        )?;
        if !self.last_error.is_empty() {
            write!(f, " | last error: {}", self.last_error)?;
        }
        Ok(())
    }
}

/// State shared by the agent and the task: the counters and the journal hand-over.
#[derive(Debug)]
struct Shared {
    stats: NatsStats,
    /// Next sequence of the first source the agent will read.
    agent_next: AtomicU64,
    /// The agent stopped queueing the first source (catch-up policy).
    overflow: AtomicBool,
    /// First sequence not queued.
    overflow_from: AtomicU64,
    /// The hand-over from the journal back to the queue: the sequence at which the task
    /// asks the agent to queue again (`NONE`: not asked); the agent sets `TAKEN` on it when
    /// it did. Both sides change it only by compare-and-swap, so exactly one of "the agent
    /// took R" and "the task replaced R" happens.
    handover: AtomicU64,
    /// The agent finished (its sources ended); `agent_next` is final.
    agent_done: AtomicBool,
}

/// A message for the task.
#[derive(Debug)]
struct Outgoing {
    stream: usize,
    source: u32,
    subject: async_nats::Subject,
    first_seq: u64,
    count: u32,
    payload: Bytes,
}

/// The agent (see the module docs).
pub struct NatsSink {
    sources: Vec<Subscriber<Event>>,
    queue: Option<mpsc::Sender<Outgoing>>,
    encoder: Encoder,
    shared: Arc<Shared>,
    max_batch: usize,
    catch_up: bool,
    journal_offset: u64,
    overflow: bool,
    batch: Vec<Event>,
    batch_key: Option<((u8, u32, u8), usize)>,
    batch_first: u64,
}

impl fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSink")
            .field("sources", &self.sources.len())
            .field("overflow", &self.overflow)
            .finish()
    }
}

/// The task's side: counters, and the end of the run.
#[derive(Debug)]
pub struct NatsSinkHandle {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    runtime: tokio::runtime::Handle,
}

impl NatsSinkHandle {
    /// The live counters.
    pub fn stats(&self) -> &NatsStats {
        &self.shared.stats
    }

    /// Waits until the task published and had acknowledged everything the agent read
    /// (call after the agent finished: its sources ended and its pipeline joined), then
    /// returns the final counters. Call it from outside the runtime. An error if it takes
    /// longer than `timeout` (the task keeps running).
    pub fn finish(self, timeout: Duration) -> Result<StatsSnapshot, NatsError> {
        let shared = Arc::clone(&self.shared);
        let done = self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, self.task).await });
        match done {
            Ok(_) => Ok(shared.stats.snapshot()),
            Err(_) => Err(NatsError::Unfinished {
                timeout,
                stats: shared.stats.snapshot().to_string(),
            }),
        }
    }
}

impl NatsSink {
    /// The agent reading `sources` (the first is the one the journal records, if any) and
    /// the handle of its publishing task, spawned on `runtime`. It connects in the
    /// background: an unreachable server is reported in the stats, not an error here.
    pub fn new(
        config: NatsConfig,
        sources: Vec<Subscriber<Event>>,
        instruments: InstrumentRegistry,
        runtime: &tokio::runtime::Handle,
    ) -> Result<(Self, NatsSinkHandle), NatsError> {
        config.validate()?;
        let (tx, rx) = mpsc::channel(config.queue_messages);
        let shared = Arc::new(Shared {
            stats: NatsStats::default(),
            agent_next: AtomicU64::new(config.journal_first_sequence),
            overflow: AtomicBool::new(false),
            overflow_from: AtomicU64::new(0),
            handover: AtomicU64::new(NONE),
            agent_done: AtomicBool::new(false),
        });
        let catch_up = config.policy == OverflowPolicy::CatchUp && config.journal.is_some();
        let agent = Self {
            sources,
            queue: Some(tx),
            encoder: Encoder::new(&config, instruments.clone()),
            shared: Arc::clone(&shared),
            max_batch: config.max_batch,
            catch_up,
            journal_offset: config.journal_first_sequence,
            overflow: false,
            batch: Vec::with_capacity(config.max_batch),
            batch_key: None,
            batch_first: 0,
        };
        let task = runtime.spawn(Task::new(config, rx, Arc::clone(&shared), instruments).run());
        Ok((
            agent,
            NatsSinkHandle {
                shared,
                task,
                runtime: runtime.clone(),
            },
        ))
    }

    /// The live counters.
    pub fn stats(&self) -> &NatsStats {
        &self.shared.stats
    }

    fn flush(&mut self, source: u32) {
        let Some((key, stream)) = self.batch_key.take() else {
            return;
        };
        let count = self.batch.len();
        let Some(queue) = &self.queue else {
            return;
        };
        let out = Outgoing {
            stream,
            source,
            subject: self.encoder.subject(key),
            first_seq: self.batch_first,
            count: count as u32,
            payload: Encoder::frame(&self.batch, self.batch_first, key),
        };
        self.batch.clear();
        match queue.try_send(out) {
            Ok(()) => {
                self.shared
                    .stats
                    .messages_queued
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(_) if source == 0 && self.catch_up => {
                self.overflow = true;
                self.shared
                    .stats
                    .overflowed_events
                    .fetch_add(count as u64, Ordering::Relaxed);
                self.shared
                    .overflow_from
                    .store(self.batch_first, Ordering::Relaxed);
                // Release pairs with the Acquire load in `Task::next_message`: it reads
                // `overflow_from` after seeing the flag.
                self.shared.overflow.store(true, Ordering::Release);
            }
            Err(_) => {
                self.shared
                    .stats
                    .dropped_events
                    .fetch_add(count as u64, Ordering::Relaxed);
            }
        }
    }

    fn close(&mut self) {
        if self.queue.is_none() {
            return;
        }
        // Release pairs with the Acquire load in `Task::catch_up_batch`.
        self.shared.agent_done.store(true, Ordering::Release);
        self.queue = None; // the task drains what is queued, then ends
    }
}

impl Agent for NatsSink {
    fn name(&self) -> &str {
        "nats-sink"
    }

    fn on_start(&mut self, ctx: &mut AgentContext) -> Result<(), AgentError> {
        for source in &self.sources {
            ctx.wake_on(source);
        }
        Ok(())
    }

    fn do_work(&mut self) -> usize {
        let mut work = 0;
        let max = self.max_batch.max(64);
        for index in 0..self.sources.len() {
            let mut sources = std::mem::take(&mut self.sources);
            let offset = if index == 0 { self.journal_offset } else { 0 };
            work += sources[index].poll_up_to(max, |event, seq, _| {
                self.ingest(index as u32, event, seq + offset);
            });
            self.flush(index as u32);
            if index == 0 {
                // Release pairs with the Acquire loads in `Task::catch_up_batch`.
                self.shared
                    .agent_next
                    .store(sources[0].sequence() + offset, Ordering::Release);
            }
            self.sources = sources;
        }
        if self.sources.iter().all(|s| s.is_finished()) {
            self.close();
        }
        work
    }

    fn is_done(&self) -> bool {
        self.sources.iter().all(|s| s.is_finished())
    }

    fn on_close(&mut self) -> Result<(), AgentError> {
        self.close();
        Ok(())
    }
}

impl NatsSink {
    fn ingest(&mut self, source: u32, event: &Event, seq: u64) {
        let Some(key) = Encoder::key(event) else {
            return;
        };
        self.shared.stats.events_in.fetch_add(1, Ordering::Relaxed);
        if source == 0 && self.overflow {
            // AcqRel/Acquire pair with the compare-and-swaps in `Task::catch_up_batch`: the
            // task switches back to the queue, whose next first-source message starts here.
            let taken = self.shared.handover.load(Ordering::Acquire) == seq
                && self
                    .shared
                    .handover
                    .compare_exchange(seq, seq | TAKEN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
            if !taken {
                self.shared
                    .stats
                    .overflowed_events
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.overflow = false;
            self.shared.stats.rejoins.fetch_add(1, Ordering::Relaxed);
            self.shared.overflow.store(false, Ordering::Relaxed);
        }
        if self.batch_key != Some(key) || self.batch.len() >= self.max_batch {
            self.flush(source);
            if source == 0 && self.overflow {
                self.shared
                    .stats
                    .overflowed_events
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.batch_key = Some(key);
            self.batch_first = seq;
        }
        self.batch.push(*event);
    }
}

impl Drop for NatsSink {
    fn drop(&mut self) {
        self.close();
    }
}

struct InFlight {
    out: Outgoing,
    msg_id: String,
    ack: Option<PublishAckFuture>,
}

/// Where the task takes messages from.
enum Input {
    Queue,
    Journal {
        next: u64,
        reader: Option<JournalReader>,
    },
}

struct Task {
    config: NatsConfig,
    rx: mpsc::Receiver<Outgoing>,
    rx_open: bool,
    peeked: Option<Outgoing>,
    shared: Arc<Shared>,
    encoder: Encoder,
    input: Input,
    /// Epoch of message ids: the run's start for sources whose sequences restart with it.
    epoch: u64,
    /// Last message id sent per stream.
    chain: [Option<String>; 3],
    in_flight: VecDeque<InFlight>,
    batch: Vec<Event>,
}

impl Task {
    fn new(
        config: NatsConfig,
        rx: mpsc::Receiver<Outgoing>,
        shared: Arc<Shared>,
        instruments: InstrumentRegistry,
    ) -> Self {
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self {
            encoder: Encoder::new(&config, instruments),
            config,
            rx,
            rx_open: true,
            peeked: None,
            shared,
            input: Input::Queue,
            epoch,
            chain: [None, None, None],
            in_flight: VecDeque::new(),
            batch: Vec::new(),
        }
    }

    fn stats(&self) -> &NatsStats {
        &self.shared.stats
    }

    fn retry(&self) -> Duration {
        Duration::from_millis(self.config.retry_ms.max(1))
    }

    fn msg_id(&self, out: &Outgoing) -> String {
        if out.source == 0 && self.config.journal.is_some() {
            format!("j-0-{}", out.first_seq)
        } else {
            format!("{}-{}-{}", self.epoch, out.source, out.first_seq)
        }
    }

    async fn run(mut self) {
        let context = self.connect().await;
        self.setup_streams(&context).await;
        loop {
            while self.in_flight.len() < self.config.max_in_flight {
                let Some(out) = self.next_message() else {
                    break;
                };
                let msg_id = self.msg_id(&out);
                self.in_flight.push_back(InFlight {
                    out,
                    msg_id,
                    ack: None,
                });
                let last = self.in_flight.len() - 1;
                if let Err(e) = self.send(&context, last).await {
                    self.stats().error(format!("publish: {e}"));
                    self.resync(&context).await;
                }
            }
            let Some(front) = self.in_flight.front_mut() else {
                if !self.rx_open
                    && self.peeked.is_none()
                    && matches!(self.input, Input::Queue)
                    && !self.shared.overflow.load(Ordering::Acquire)
                {
                    break;
                }
                self.wait_for_input().await;
                continue;
            };
            let Some(ack) = front.ack.take() else {
                self.resync(&context).await;
                continue;
            };
            // Wait for the oldest acknowledgement, publishing what the agent queues
            // meanwhile: a message never waits for an acknowledgement of another.
            let mut ack = std::pin::pin!(ack.into_future());
            let result = loop {
                if self.in_flight.len() >= self.config.max_in_flight
                    || !matches!(self.input, Input::Queue)
                    || !self.rx_open
                    || self.peeked.is_some()
                {
                    break ack.await;
                }
                tokio::select! {
                    result = &mut ack => break result,
                    item = self.rx.recv() => match item {
                        Some(out) => {
                            let msg_id = self.msg_id(&out);
                            self.in_flight.push_back(InFlight { out, msg_id, ack: None });
                            let last = self.in_flight.len() - 1;
                            if let Err(e) = self.send(&context, last).await {
                                break Err(e);
                            }
                        }
                        None => self.rx_open = false,
                    },
                }
            };
            match result {
                Ok(ack) => {
                    let Some(done) = self.in_flight.pop_front() else {
                        continue;
                    };
                    let stats = self.stats();
                    if ack.duplicate {
                        stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    self.acked(&done);
                }
                Err(e) => {
                    self.stats().error(format!("acknowledgement: {e}"));
                    self.resync(&context).await;
                }
            }
        }
        let _ = context.client().flush().await;
    }

    fn acked(&self, done: &InFlight) {
        let stats = self.stats();
        stats.messages_acked.fetch_add(1, Ordering::Relaxed);
        stats
            .events_acked
            .fetch_add(u64::from(done.out.count), Ordering::Relaxed);
        if done.out.source == 0 {
            stats.acked_through.store(
                done.out.first_seq + u64::from(done.out.count),
                Ordering::Relaxed,
            );
        }
    }

    async fn connect(&mut self) -> jetstream::Context {
        loop {
            let shared = Arc::clone(&self.shared);
            let options = match self.config.connect_options().await {
                Ok(o) => o,
                Err(e) => {
                    // A bad credentials file does not heal by waiting, but the service
                    // runs on and says so.
                    self.stats().error(e.to_string());
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let retry_ms = self.config.retry_ms.max(1);
            let options = options
                .retry_on_initial_connect()
                // Linear back-off capped at 2 s (async-nats' default grows to seconds).
                .reconnect_delay_callback(move |attempts| {
                    Duration::from_millis((retry_ms * attempts.min(40) as u64).min(2000))
                })
                .max_reconnects(None)
                .connection_timeout(Duration::from_secs(2))
                .event_callback(move |event| {
                    let shared = Arc::clone(&shared);
                    async move {
                        match event {
                            async_nats::Event::Connected => {
                                shared.stats.connected.store(true, Ordering::Relaxed);
                            }
                            async_nats::Event::Disconnected => {
                                shared.stats.connected.store(false, Ordering::Relaxed);
                                shared.stats.error("disconnected".to_owned());
                            }
                            async_nats::Event::Closed => {
                                shared.stats.connected.store(false, Ordering::Relaxed);
                            }
                            other => shared.stats.error(other.to_string()),
                        }
                    }
                });
            match options.connect(self.config.url.as_str()).await {
                Ok(client) => {
                    if client.connection_state() == async_nats::connection::State::Connected {
                        self.stats().connected.store(true, Ordering::Relaxed);
                    }
                    let timeout = Duration::from_millis(self.config.ack_timeout_ms.max(1));
                    return jetstream::ContextBuilder::new()
                        .timeout(timeout)
                        // Futures a resync drops hold their permit until the client's
                        // acker gives up on them (ack_timeout, 30 s by default); twice the
                        // window lets the resync publish again meanwhile.
                        .ack_timeout(timeout)
                        .max_ack_inflight(2 * self.config.max_in_flight + 16)
                        .backpressure_on_inflight(true)
                        .build(client);
                }
                Err(e) => {
                    self.stats()
                        .error(format!("connect {}: {e}", self.config.url));
                    tokio::time::sleep(self.retry()).await;
                }
            }
        }
    }

    async fn setup_streams(&mut self, context: &jetstream::Context) {
        loop {
            match self.try_setup_streams(context).await {
                Ok(()) => {
                    self.stats().ready.store(true, Ordering::Relaxed);
                    return;
                }
                Err(e) => {
                    self.stats().error(e.to_string());
                    tokio::time::sleep(self.retry()).await;
                }
            }
        }
    }

    async fn try_setup_streams(&mut self, context: &jetstream::Context) -> Result<(), NatsError> {
        for (i, (settings, filter)) in self.config.streams().into_iter().enumerate() {
            let err = |reason: String| NatsError::Stream {
                stream: settings.name.clone(),
                reason,
            };
            let mut stream = if self.config.create_streams {
                context
                    .get_or_create_stream(settings.to_stream_config(vec![filter.clone()]))
                    .await
                    .map_err(|e| err(e.to_string()))?
            } else {
                context
                    .get_stream(&settings.name)
                    .await
                    .map_err(|e| err(e.to_string()))?
            };
            let info = stream.info().await.map_err(|e| err(e.to_string()))?;
            if !info
                .config
                .subjects
                .iter()
                .any(|s| s == &filter || s == ">")
            {
                return Err(err(format!(
                    "exists with subjects {:?}, not {filter}",
                    info.config.subjects
                )));
            }
            self.chain[i] = last_msg_id(&stream, settings.duplicate_window_s)
                .await
                .map_err(err)?;
        }
        Ok(())
    }

    /// Publishes in-flight message `index`.
    async fn send(
        &mut self,
        context: &jetstream::Context,
        index: usize,
    ) -> Result<(), async_nats::jetstream::context::PublishError> {
        let Some(m) = self.in_flight.get(index) else {
            return Ok(());
        };
        let mut publish = PublishMessage::build()
            .payload(m.out.payload.clone())
            .message_id(&m.msg_id)
            .header(headers::SEQ, m.out.first_seq.to_string())
            .header(headers::COUNT, m.out.count.to_string())
            .header(headers::SOURCE, m.out.source.to_string());
        if let Some(last) = &self.chain[m.out.stream] {
            publish = publish.expected_last_message_id(last);
        }
        let future = context.send_publish(m.out.subject.clone(), publish).await?;
        let stream = m.out.stream;
        self.chain[stream] = Some(m.msg_id.clone());
        if let Some(m) = self.in_flight.get_mut(index) {
            m.ack = Some(future);
        }
        Ok(())
    }

    /// After a failed acknowledgement: learn from each stream what it stored, forget
    /// those messages, publish the rest again in order.
    async fn resync(&mut self, context: &jetstream::Context) {
        self.stats().resyncs.fetch_add(1, Ordering::Relaxed);
        for m in &mut self.in_flight {
            m.ack = None;
        }
        'attempt: loop {
            tokio::time::sleep(self.retry()).await;
            let mut last = [None, None, None];
            for (i, (settings, _)) in self.config.streams().into_iter().enumerate() {
                let found = match context.get_stream(&settings.name).await {
                    Ok(stream) => last_msg_id(&stream, settings.duplicate_window_s).await,
                    Err(e) => Err(e.to_string()),
                };
                match found {
                    Ok(id) => last[i] = id,
                    Err(e) => {
                        self.stats()
                            .error(format!("resync: stream {}: {e}", settings.name));
                        continue 'attempt;
                    }
                }
            }
            for (stream, id) in last.iter().enumerate() {
                let Some(id) = id else { continue };
                let Some(pos) = self
                    .in_flight
                    .iter()
                    .rposition(|m| m.out.stream == stream && &m.msg_id == id)
                else {
                    continue;
                };
                let mut kept = VecDeque::with_capacity(self.in_flight.len());
                for (i, m) in std::mem::take(&mut self.in_flight).into_iter().enumerate() {
                    if i <= pos && m.out.stream == stream {
                        self.acked(&m);
                    } else {
                        kept.push_back(m);
                    }
                }
                self.in_flight = kept;
            }
            self.chain = last;
            for index in 0..self.in_flight.len() {
                if let Err(e) = self.send(context, index).await {
                    self.stats().error(format!("resync: publish: {e}"));
                    for m in &mut self.in_flight {
                        m.ack = None;
                    }
                    continue 'attempt;
                }
            }
            return;
        }
    }

    /// The next message to publish, if one is ready now.
    fn next_message(&mut self) -> Option<Outgoing> {
        loop {
            match &self.input {
                Input::Queue => {
                    if let Some(out) = self.peeked.take() {
                        return Some(out);
                    }
                    if self.rx_open {
                        match self.rx.try_recv() {
                            Ok(out) => return Some(out),
                            Err(mpsc::error::TryRecvError::Empty) => {}
                            Err(mpsc::error::TryRecvError::Disconnected) => self.rx_open = false,
                        }
                    }
                    // The queue is empty; Acquire pairs with the Release store in
                    // `NatsSink::flush`: everything queued before the overflow is read.
                    if !self.shared.overflow.load(Ordering::Acquire) {
                        return None;
                    }
                    if let Ok(out) = self.rx.try_recv() {
                        return Some(out);
                    }
                    let next = self.shared.overflow_from.load(Ordering::Relaxed);
                    // A proposal of an earlier overflow is void (the agent may have taken
                    // it already); `catch_up_batch` makes a new one.
                    self.shared.handover.store(NONE, Ordering::Release);
                    self.input = Input::Journal { next, reader: None };
                }
                Input::Journal { .. } => match self.catch_up_batch() {
                    CatchUp::Message(out) => return Some(out),
                    CatchUp::Wait => return None,
                    CatchUp::Rejoined => self.input = Input::Queue,
                },
            }
        }
    }

    async fn wait_for_input(&mut self) {
        match self.input {
            Input::Journal { .. } => tokio::time::sleep(Duration::from_millis(5)).await,
            Input::Queue if self.rx_open => {
                match tokio::time::timeout(Duration::from_millis(50), self.rx.recv()).await {
                    Ok(Some(out)) => self.peeked = Some(out),
                    Ok(None) => self.rx_open = false,
                    Err(_) => {}
                }
            }
            Input::Queue => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }

    /// One message from the journal, or why not.
    fn catch_up_batch(&mut self) -> CatchUp {
        let Input::Journal { next, reader } = &mut self.input else {
            return CatchUp::Rejoined;
        };
        let shared = &self.shared;
        // Acquire pairs with the Release stores in `NatsSink::close` and `do_work`.
        let done = shared.agent_done.load(Ordering::Acquire);
        let agent_next = shared.agent_next.load(Ordering::Acquire);
        let margin = 4 * self.config.max_batch.max(256) as u64;
        let target = loop {
            // Acquire pairs with the compare-and-swap in `NatsSink::ingest`.
            let handover = shared.handover.load(Ordering::Acquire);
            if handover & TAKEN != 0 {
                // The agent queues again from here: publish the journal up to it.
                let at = handover & !TAKEN;
                if *next >= at {
                    shared.handover.store(NONE, Ordering::Release);
                    return CatchUp::Rejoined;
                }
                break at;
            }
            if done {
                if *next >= agent_next {
                    // Everything the agent read is published: nothing to rejoin.
                    shared.overflow.store(false, Ordering::Relaxed);
                    return CatchUp::Rejoined;
                }
                break agent_next;
            }
            // Propose a sequence the agent has not reached: its next one when the journal
            // is level with it (an idle agent takes the very next event), a few of its
            // batches ahead otherwise. Replace a proposal it passed, or one that is too
            // far ahead of an agent that stopped.
            let level = *next >= agent_next;
            let want = if level {
                agent_next
            } else {
                agent_next + margin
            };
            let replace = handover == NONE
                || handover < *next
                || agent_next > handover
                || (level && want < handover);
            if !replace {
                break handover;
            }
            // Release pairs with the Acquire load in `NatsSink::ingest`; failing means the
            // agent just took `handover`: look again.
            if shared
                .handover
                .compare_exchange(handover, want, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                break want;
            }
        };
        if *next >= target {
            return CatchUp::Wait;
        }
        let journal = self.config.journal.clone().unwrap_or_default();
        if reader.as_ref().is_none_or(|r| r.end_sequence() <= *next) {
            let options = OpenOptions {
                verify: Verify::LastSegment,
                truncate_torn_tail: false,
                stop_at_damage: false,
            };
            match JournalReader::open_with(&journal, options) {
                Ok(r) => *reader = Some(r),
                Err(e) => {
                    shared.stats.error(format!("catch-up: {e}"));
                    return CatchUp::Wait;
                }
            }
        }
        let Some(r) = reader.as_ref() else {
            return CatchUp::Wait;
        };
        if *next < r.first_sequence() {
            shared.stats.error(format!(
                "catch-up: the journal {} starts at {}, events from {} are lost",
                journal.display(),
                r.first_sequence(),
                *next
            ));
            shared
                .stats
                .dropped_events
                .fetch_add(r.first_sequence() - *next, Ordering::Relaxed);
            *next = r.first_sequence();
        }
        let end = r.end_sequence().min(target);
        self.batch.clear();
        let mut key = None;
        let mut first = *next;
        while *next < end && self.batch.len() < self.config.max_batch {
            let Some(event) = r.get(*next) else { break };
            let Some(k) = Encoder::key(event) else {
                *next += 1;
                if self.batch.is_empty() {
                    first = *next;
                }
                continue;
            };
            if key.is_some_and(|key| key != k) {
                break;
            }
            key = Some(k);
            self.batch.push(*event);
            *next += 1;
        }
        let Some((key, stream)) = key else {
            return CatchUp::Wait;
        };
        shared
            .stats
            .journal_events
            .fetch_add(self.batch.len() as u64, Ordering::Relaxed);
        CatchUp::Message(Outgoing {
            stream,
            source: 0,
            subject: self.encoder.subject(key),
            first_seq: first,
            count: self.batch.len() as u32,
            payload: Encoder::frame(&self.batch, first, key),
        })
    }
}

enum CatchUp {
    Message(Outgoing),
    Wait,
    Rejoined,
}

/// The `Nats-Msg-Id` of a stream's last message, if it is recent enough for the server to
/// check `Nats-Expected-Last-Msg-Id` against it (it restores that id only from messages
/// within the duplicate window).
async fn last_msg_id(
    stream: &jetstream::stream::Stream,
    window_s: u64,
) -> Result<Option<String>, String> {
    let mut stream = stream.clone();
    let info = stream.info().await.map_err(|e| e.to_string())?;
    let last = info.state.last_sequence;
    if info.state.messages == 0 || last == 0 {
        return Ok(None);
    }
    let message = stream
        .get_raw_message(last)
        .await
        .map_err(|e| format!("message {last}: {e}"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    let age_ns = now - message.time.unix_timestamp_nanos();
    if age_ns > i128::from(window_s) * 1_000_000_000 - 5_000_000_000 {
        return Ok(None);
    }
    Ok(message
        .headers
        // The typed name: a `&str` lookup does not find the standard header.
        .get(async_nats::header::NATS_MESSAGE_ID)
        .map(|v| v.as_str().to_owned()))
}
