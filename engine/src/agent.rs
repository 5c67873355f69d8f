//! Agents and the threads that run them, after Aeron's agent model.
//!
//! A stage of the pipeline is an [`Agent`]: it does a bounded amount of work per
//! [`do_work`](Agent::do_work) call and says how much. A thread runs one or several agents
//! in turn, pinned to a core or not, and when a whole round did nothing it idles by its
//! [`IdleStrategy`]. Which agents share which thread, on which core, is configuration (a
//! [`Layout`]), so the same pipeline runs on 2 cores or 32.
//!
//! **Lifecycle.** Sources stop when the [`StopToken`] is raised; a ring's subscribers then
//! drain every event published before their writer went away, and an agent reports
//! [`is_done`](Agent::is_done) only then. A thread exits when all its agents are done. A
//! panicking agent is caught: its thread drops its agents (which halts their rings, so no
//! writer waits forever on them), raises the stop token, and [`Pipeline::join`] returns
//! the panic with the agent's name.
//!
//! ```
//! use std::time::Duration;
//! use tickwire_engine::agent::{HandlerAgent, Layout, ThreadSpec};
//! use tickwire_engine::idle::IdleStrategy;
//! use tickwire_engine::ring::RingBuilder;
//!
//! let mut ring = RingBuilder::<u64>::new(1024).expect("power of two");
//! let sum = ring.subscriber("sum");
//! let mut publisher = ring.build().expect("one subscriber");
//!
//! let mut total = 0u64;
//! let agent = HandlerAgent::new(sum, move |value: &u64, _seq, _eob| total += *value);
//! let pipeline = Layout::new()
//!     .thread(ThreadSpec::new("consumer").idle(IdleStrategy::YIELDING).agent(agent))
//!     .spawn()
//!     .expect("layout is valid");
//! for value in 1..=100 {
//!     publisher.publish(|slot| *slot = value).expect("not halted");
//! }
//! drop(publisher); // end of stream: the consumer drains, then its thread exits
//! let report = pipeline.join_timeout(Duration::from_secs(10)).expect("clean shutdown");
//! assert_eq!(report.threads[0].agents[0].name, "sum");
//! ```

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use crate::idle::{IdleStep, IdleStrategy, Idler};
use crate::ring::{Subscriber, WakeList};

/// An error an agent reports from its start or close hook, or from its work.
pub type AgentError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One stage of the pipeline, run by a thread among others.
pub trait Agent: Send {
    /// A name for logs, the thread layout printout and errors.
    fn name(&self) -> &str;

    /// Called once on the agent's thread before the first `do_work`.
    fn on_start(&mut self, _ctx: &mut AgentContext) -> Result<(), AgentError> {
        Ok(())
    }

    /// Does a bounded amount of work and returns how much (0 when there was none). Must
    /// not block: the thread idles by its strategy when a whole round did nothing.
    fn do_work(&mut self) -> usize;

    /// Whether the agent has finished for good (its input drained, or its source ended).
    /// The runner asks only after a `do_work` that returned 0, so a finished agent must
    /// report no work.
    fn is_done(&self) -> bool {
        false
    }

    /// Whether the agent only reads a stream another thread writes: its work units are
    /// events read, and nothing waits on what it does between rounds. On a
    /// [`BusySpin`](IdleStrategy::BusySpin) or [`NoOp`](IdleStrategy::NoOp) thread whose
    /// agents all say so, a round in which one read a burst is followed by a short settle
    /// (see [`crate::idle`]). `false` by default: an agent that writes (a feed, a stage that
    /// publishes) would have its writes delayed.
    fn only_reads(&self) -> bool {
        false
    }

    /// Called once on the agent's thread after it is done or the thread stops. An error
    /// returned here (for example a feed's decode error stored by `do_work`) becomes the
    /// pipeline's error.
    fn on_close(&mut self) -> Result<(), AgentError> {
        Ok(())
    }
}

impl fmt::Debug for dyn Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent").field("name", &self.name()).finish()
    }
}

/// Raised to ask source agents to stop; shared by everything in a [`Pipeline`].
#[derive(Debug, Clone, Default)]
pub struct StopToken(Arc<AtomicBool>);

impl StopToken {
    /// A token that is not raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every source that watches this token to stop.
    pub fn stop(&self) {
        // Relaxed: the token carries no data; sources only need to see it eventually.
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`stop`](Self::stop) was called.
    #[inline]
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What an agent learns about the thread that runs it, in [`Agent::on_start`].
#[derive(Debug)]
pub struct AgentContext {
    thread: Thread,
    parks: bool,
    wake_lists: Vec<Arc<WakeList>>,
    stop: StopToken,
    core: Option<usize>,
}

impl AgentContext {
    /// Asks whoever `subscriber` waits for (the ring's writer, or its upstream subscribers)
    /// to wake this thread when it parks. Agents that read a ring call this in `on_start`;
    /// it does nothing when the thread never parks.
    pub fn wake_on<T>(&mut self, subscriber: &Subscriber<T>) {
        if self.parks {
            subscriber.register_parker(&self.thread);
            for list in subscriber.wait_lists() {
                if !self.wake_lists.iter().any(|l| Arc::ptr_eq(l, list)) {
                    self.wake_lists.push(Arc::clone(list));
                }
            }
        }
    }

    /// The pipeline's stop token, which sources watch.
    pub fn stop_token(&self) -> &StopToken {
        &self.stop
    }

    /// The core this thread is pinned to, if any.
    pub fn core(&self) -> Option<usize> {
        self.core
    }
}

/// A push-style consumer: called for every event of a ring, in order, in batches.
pub trait Handler<T>: Send {
    /// Handles one event. `end_of_batch` is true for the last event available in this
    /// batch: the place to flush anything batched.
    fn on_event(&mut self, event: &T, sequence: u64, end_of_batch: bool);

    /// Called once on the handler's thread before the first event.
    fn on_start(&mut self) {}

    /// Called once after the last event (the ring drained, or the pipeline stopped).
    fn on_shutdown(&mut self) {}
}

impl<T, F: FnMut(&T, u64, bool) + Send> Handler<T> for F {
    #[inline(always)]
    fn on_event(&mut self, event: &T, sequence: u64, end_of_batch: bool) {
        self(event, sequence, end_of_batch)
    }
}

/// Runs a [`Handler`] on a [`Subscriber`] as an agent: each `do_work` handles one batch
/// (everything available, up to `max_batch`). Done when the ring is drained.
pub struct HandlerAgent<T, H> {
    name: String,
    subscriber: Subscriber<T>,
    handler: H,
    max_batch: usize,
    shut_down: bool,
}

impl<T, H> fmt::Debug for HandlerAgent<T, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerAgent")
            .field("name", &self.name)
            .field("subscriber", &self.subscriber)
            .finish()
    }
}

impl<T, H: Handler<T>> HandlerAgent<T, H> {
    /// An agent named after the subscriber. Batches are capped at 4096 events so that a
    /// thread running several agents serves each in turn.
    pub fn new(subscriber: Subscriber<T>, handler: H) -> Self {
        Self {
            name: subscriber.name().to_owned(),
            subscriber,
            handler,
            max_batch: 4096,
            shut_down: false,
        }
    }

    /// Caps the events handled per `do_work`.
    pub fn with_max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch.max(1);
        self
    }

    /// The handler, for reading its results after the pipeline stopped.
    pub fn handler(&self) -> &H {
        &self.handler
    }
}

impl<T: Send + Sync, H: Handler<T>> Agent for HandlerAgent<T, H> {
    fn name(&self) -> &str {
        &self.name
    }

    fn on_start(&mut self, ctx: &mut AgentContext) -> Result<(), AgentError> {
        ctx.wake_on(&self.subscriber);
        self.handler.on_start();
        Ok(())
    }

    #[inline]
    fn do_work(&mut self) -> usize {
        let handler = &mut self.handler;
        self.subscriber
            .poll_up_to(self.max_batch, |event, sequence, end_of_batch| {
                handler.on_event(event, sequence, end_of_batch)
            })
    }

    fn only_reads(&self) -> bool {
        true
    }

    fn is_done(&self) -> bool {
        self.subscriber.is_finished()
    }

    fn on_close(&mut self) -> Result<(), AgentError> {
        if !self.shut_down {
            self.shut_down = true;
            self.handler.on_shutdown();
        }
        Ok(())
    }
}

/// Why a layout could not start or a pipeline did not finish cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// A thread asked for a core this machine does not have.
    #[error("thread `{thread}` asks for core {core}, but the available cores are {available:?}")]
    NoSuchCore {
        /// The thread's name.
        thread: String,
        /// The core it asked for.
        core: usize,
        /// The cores the operating system lets this process use.
        available: Vec<usize>,
    },
    /// Two threads asked for the same core.
    #[error("threads `{first}` and `{second}` are both pinned to core {core}")]
    CoreTaken {
        /// The core.
        core: usize,
        /// The first thread pinned to it.
        first: String,
        /// The second.
        second: String,
    },
    /// A thread has no agents.
    #[error("thread `{0}` has no agents")]
    EmptyThread(String),
    /// The operating system refused to start or pin a thread.
    #[error("could not start thread `{thread}`: {reason}")]
    Spawn {
        /// The thread's name.
        thread: String,
        /// What went wrong.
        reason: String,
    },
    /// An agent panicked.
    #[error("agent `{agent}` on thread `{thread}` panicked: {message}")]
    AgentPanicked {
        /// The agent's name.
        agent: String,
        /// Its thread's name.
        thread: String,
        /// The panic payload, if it was a string.
        message: String,
    },
    /// An agent's start or close hook reported an error.
    #[error("agent `{agent}` failed: {source}")]
    AgentFailed {
        /// The agent's name.
        agent: String,
        /// The error it returned.
        source: AgentError,
    },
    /// `join_timeout` ran out before every thread finished.
    #[error("pipeline did not finish within {timeout:?}; still running: {running:?}")]
    Timeout {
        /// The timeout.
        timeout: Duration,
        /// Threads still running.
        running: Vec<String>,
    },
}

/// One thread of a [`Layout`]: its name, its core, its idle strategy, its agents.
pub struct ThreadSpec {
    name: String,
    core: Option<usize>,
    idle: IdleStrategy,
    agents: Vec<Box<dyn Agent>>,
}

impl fmt::Debug for ThreadSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadSpec")
            .field("name", &self.name)
            .field("core", &self.core)
            .field("idle", &self.idle)
            .field("agents", &self.agents)
            .finish()
    }
}

impl ThreadSpec {
    /// An unpinned thread with the default ([`IdleStrategy::BACKOFF`]) idle strategy.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            core: None,
            idle: IdleStrategy::default(),
            agents: Vec::new(),
        }
    }

    /// Pins the thread to `core` (an index as the OS numbers them), or leaves it unpinned.
    pub fn core(mut self, core: Option<usize>) -> Self {
        self.core = core;
        self
    }

    /// Sets the idle strategy.
    pub fn idle(mut self, idle: IdleStrategy) -> Self {
        self.idle = idle;
        self
    }

    /// Adds an agent; agents run in the order added.
    pub fn agent(mut self, agent: impl Agent + 'static) -> Self {
        self.agents.push(Box::new(agent));
        self
    }

    /// Adds a boxed agent.
    pub fn boxed_agent(mut self, agent: Box<dyn Agent>) -> Self {
        self.agents.push(agent);
        self
    }
}

/// Which agents run on which threads, pinned where: the pipeline's thread layout.
#[derive(Debug, Default)]
pub struct Layout {
    threads: Vec<ThreadSpec>,
    stop: StopToken,
}

impl Layout {
    /// An empty layout with a fresh stop token.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `stop` as the pipeline's stop token (share it with sources built earlier).
    pub fn with_stop_token(mut self, stop: StopToken) -> Self {
        self.stop = stop;
        self
    }

    /// Adds a thread.
    pub fn thread(mut self, thread: ThreadSpec) -> Self {
        self.threads.push(thread);
        self
    }

    /// A table of thread, core, idle strategy and agents, for printing at start.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for t in &self.threads {
            let core = t
                .core
                .map_or_else(|| "unpinned".to_owned(), |c| format!("core {c}"));
            let agents: Vec<&str> = t.agents.iter().map(|a| a.name()).collect();
            out.push_str(&format!(
                "  thread {:<12} {:<9} idle {:<22} agents: {}\n",
                t.name,
                core,
                t.idle.to_string(),
                agents.join(", ")
            ));
        }
        out
    }

    /// Checks the layout (cores exist and are distinct, no empty thread) and starts every
    /// thread. Nothing starts if the layout is invalid.
    pub fn spawn(self) -> Result<Pipeline, PipelineError> {
        let available = available_cores();
        let mut pinned: Vec<(usize, &str)> = Vec::new();
        for t in &self.threads {
            if t.agents.is_empty() {
                return Err(PipelineError::EmptyThread(t.name.clone()));
            }
            if let Some(core) = t.core {
                if !available.contains(&core) {
                    return Err(PipelineError::NoSuchCore {
                        thread: t.name.clone(),
                        core,
                        available: available.clone(),
                    });
                }
                if let Some((_, first)) = pinned.iter().find(|(c, _)| *c == core) {
                    return Err(PipelineError::CoreTaken {
                        core,
                        first: (*first).to_owned(),
                        second: t.name.clone(),
                    });
                }
                pinned.push((core, &t.name));
            }
        }
        let mut handles = Vec::with_capacity(self.threads.len());
        for spec in self.threads {
            let name = spec.name.clone();
            let stop = self.stop.clone();
            let handle = thread::Builder::new()
                .name(name.clone())
                .spawn(move || run_thread(spec, stop))
                .map_err(|e| PipelineError::Spawn {
                    thread: name.clone(),
                    reason: e.to_string(),
                });
            match handle {
                Ok(handle) => handles.push((name, handle)),
                Err(e) => {
                    // Stop what already started before reporting.
                    self.stop.stop();
                    return Err(e);
                }
            }
        }
        Ok(Pipeline {
            handles,
            stop: self.stop,
        })
    }
}

/// The cores this process may run on, as the OS numbers them.
pub fn available_cores() -> Vec<usize> {
    let mut cores: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    cores.sort_unstable();
    cores
}

/// Lets the calling thread run on every core the process may use, undoing a pin it
/// inherited from the thread that spawned it (on Linux a new thread starts with its
/// creator's affinity). Elsewhere a no-op.
pub fn unpin_current_thread() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `set` is a zeroed `cpu_set_t` owned by this frame (all-zero is a valid,
        // empty set); `CPU_SET` writes bits inside it for CPUs below `CPU_SETSIZE`, and
        // `sched_setaffinity` only reads `size_of::<cpu_set_t>()` bytes of it during the
        // call. The kernel keeps the CPUs the process's cpuset allows.
        let rc = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for cpu in 0..libc::CPU_SETSIZE as usize {
                libc::CPU_SET(cpu, &mut set);
            }
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What one agent did, reported when its thread ends.
#[derive(Debug, Clone)]
pub struct AgentReport {
    /// The agent's name.
    pub name: String,
    /// Sum of its `do_work` results.
    pub work: u64,
}

/// What one thread did.
#[derive(Debug, Clone)]
pub struct ThreadReport {
    /// The thread's name.
    pub name: String,
    /// The core it was pinned to.
    pub core: Option<usize>,
    /// Its agents.
    pub agents: Vec<AgentReport>,
}

/// What the whole pipeline did, returned by [`Pipeline::join`].
#[derive(Debug, Clone, Default)]
pub struct PipelineReport {
    /// One entry per thread, in layout order.
    pub threads: Vec<ThreadReport>,
}

/// Running threads; join them to learn how they ended.
#[derive(Debug)]
pub struct Pipeline {
    handles: Vec<(String, JoinHandle<Result<ThreadReport, PipelineError>>)>,
    stop: StopToken,
}

impl Pipeline {
    /// The stop token: raise it to stop the sources (the rest drains and ends).
    pub fn stop_token(&self) -> &StopToken {
        &self.stop
    }

    /// Whether every thread has ended.
    pub fn is_finished(&self) -> bool {
        self.handles.iter().all(|(_, h)| h.is_finished())
    }

    /// Waits for every thread. Returns the first error in layout order (a panic carries the
    /// agent's name), or every thread's report.
    pub fn join(self) -> Result<PipelineReport, PipelineError> {
        let mut report = PipelineReport::default();
        let mut first_error = None;
        for (name, handle) in self.handles {
            match handle.join() {
                Ok(Ok(thread)) => report.threads.push(thread),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(payload) => {
                    first_error.get_or_insert(PipelineError::AgentPanicked {
                        agent: "<runner>".into(),
                        thread: name,
                        message: panic_message(payload.as_ref()),
                    });
                }
            }
        }
        first_error.map_or(Ok(report), Err)
    }

    /// As [`join`](Self::join), but gives up after `timeout`: then raises the stop token
    /// and reports the threads still running (they are left to finish on their own).
    pub fn join_timeout(self, timeout: Duration) -> Result<PipelineReport, PipelineError> {
        let deadline = Instant::now() + timeout;
        while !self.is_finished() {
            if Instant::now() >= deadline {
                self.stop.stop();
                let running = self
                    .handles
                    .iter()
                    .filter(|(_, h)| !h.is_finished())
                    .map(|(n, _)| n.clone())
                    .collect();
                return Err(PipelineError::Timeout { timeout, running });
            }
            thread::sleep(Duration::from_millis(1));
        }
        self.join()
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// The body of every pipeline thread.
fn run_thread(spec: ThreadSpec, stop: StopToken) -> Result<ThreadReport, PipelineError> {
    let ThreadSpec {
        name,
        core,
        idle,
        mut agents,
    } = spec;
    if let Some(core) = core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
            stop.stop();
            return Err(PipelineError::Spawn {
                thread: name,
                reason: format!("the OS refused to pin it to core {core}"),
            });
        }
    }
    let mut ctx = AgentContext {
        thread: thread::current(),
        parks: idle.parks(),
        wake_lists: Vec::new(),
        stop: stop.clone(),
        core,
    };
    let mut work = vec![0u64; agents.len()];
    let mut done = vec![false; agents.len()];
    // Index of the agent being called, read after a panic to name it.
    let mut current = 0usize;
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<(), PipelineError> {
        for (i, agent) in agents.iter_mut().enumerate() {
            current = i;
            agent
                .on_start(&mut ctx)
                .map_err(|source| PipelineError::AgentFailed {
                    agent: agent.name().to_owned(),
                    source,
                })?;
        }
        let mut idler = Idler::new(idle);
        // The dense-round settle is for threads that only read (see `Agent::only_reads`).
        let settles = agents.iter().all(|agent| agent.only_reads());
        loop {
            // The most one agent did this round: zero when the round did nothing, and
            // "dense" is per reader, not summed.
            let mut most = 0usize;
            let mut all_done = true;
            let checkpoint = idler.at_checkpoint();
            for (i, agent) in agents.iter_mut().enumerate() {
                if done[i] {
                    continue;
                }
                current = i;
                let n = agent.do_work();
                most = most.max(n);
                work[i] += n as u64;
                // An agent that just did work is asked next round: `is_done` is off the busy
                // path (it reads the ring's shared flags), and a spinning thread asks only at
                // checkpoints (`Idler::at_checkpoint`).
                if n == 0 && checkpoint && agent.is_done() {
                    done[i] = true;
                    agent
                        .on_close()
                        .map_err(|source| PipelineError::AgentFailed {
                            agent: agent.name().to_owned(),
                            source,
                        })?;
                } else {
                    all_done = false;
                }
            }
            if all_done {
                return Ok(());
            }
            if most > 0 {
                idler.reset();
                idler.settle_after(most, settles).run();
                continue;
            }
            match idler.step() {
                IdleStep::Retry => {}
                IdleStep::Spin => core::hint::spin_loop(),
                IdleStep::Yield => thread::yield_now(),
                IdleStep::Park(duration) => park(
                    &ctx.wake_lists,
                    duration,
                    &mut agents,
                    &mut done,
                    &mut work,
                    &mut current,
                ),
                IdleStep::Sleep(duration) => thread::sleep(duration),
            }
        }
    }));
    let result = match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(payload) => Err(PipelineError::AgentPanicked {
            agent: agents
                .get(current)
                .map_or_else(|| "?".to_owned(), |a| a.name().to_owned()),
            thread: name.clone(),
            message: panic_message(payload.as_ref()),
        }),
    };
    if let Err(e) = result {
        // Let the sources know, and drop our agents now: their subscribers halt their rings,
        // so no writer waits for them.
        stop.stop();
        drop(agents);
        return Err(e);
    }
    Ok(ThreadReport {
        name,
        core,
        agents: agents
            .iter()
            .zip(work)
            .map(|(a, work)| AgentReport {
                name: a.name().to_owned(),
                work,
            })
            .collect(),
    })
}

/// Parks the thread unless a last look finds work; the writers of the rings in
/// `wake_lists` unpark it when they publish.
fn park(
    wake_lists: &[Arc<WakeList>],
    duration: Duration,
    agents: &mut [Box<dyn Agent>],
    done: &mut [bool],
    work: &mut [u64],
    current: &mut usize,
) {
    for list in wake_lists {
        list.begin_sleep();
    }
    // The last look, after announcing the sleep (see `WakeList::begin_sleep`).
    let mut found = 0;
    for (i, agent) in agents.iter_mut().enumerate() {
        if !done[i] {
            *current = i;
            let n = agent.do_work();
            work[i] += n as u64;
            found += n;
        }
    }
    if found == 0 {
        thread::park_timeout(duration);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::RingBuilder;

    const TIMEOUT: Duration = Duration::from_secs(20);

    #[test]
    fn a_thread_spawned_by_a_pinned_one_can_unpin_itself() {
        let all = available_cores();
        let [first, ..] = all[..] else {
            println!("SKIPPED: no cores reported");
            return;
        };
        if all.len() < 2 {
            println!("SKIPPED: one core; nothing to unpin to");
            return;
        }
        let seen = std::thread::spawn(move || {
            assert!(core_affinity::set_for_current(core_affinity::CoreId {
                id: first
            }));
            let pinned = available_cores();
            let child = std::thread::spawn(|| {
                let inherited = available_cores();
                unpin_current_thread().expect("unpinned");
                (inherited, available_cores())
            })
            .join()
            .expect("child thread");
            (pinned, child)
        })
        .join()
        .expect("pinned thread");
        let (pinned, (inherited, unpinned)) = seen;
        assert_eq!(pinned, [first]);
        assert_eq!(
            inherited,
            [first],
            "a new thread inherits its creator's pin"
        );
        assert_eq!(unpinned, all);
    }

    #[test]
    fn pinning_to_a_missing_core_names_the_available_ones() {
        let mut ring = RingBuilder::<u64>::new(8).expect("power of two");
        let sub = ring.subscriber("s");
        let _publisher = ring.build().expect("has a subscriber");
        let err = Layout::new()
            .thread(
                ThreadSpec::new("t")
                    .core(Some(4096))
                    .agent(HandlerAgent::new(sub, |_: &u64, _, _| {})),
            )
            .spawn()
            .expect_err("core 4096 does not exist");
        let text = err.to_string();
        assert!(text.contains("core 4096"), "{text}");
        assert!(text.contains("available cores are ["), "{text}");
    }

    #[test]
    fn a_panicking_handler_surfaces_with_its_name_and_halts_the_writer() {
        let mut ring = RingBuilder::<u64>::new(16).expect("power of two");
        let bad = ring.subscriber("bad-handler");
        let good = ring.subscriber("good-handler");
        let mut publisher = ring.build().expect("has subscribers");
        let pipeline = Layout::new()
            .thread(
                ThreadSpec::new("a")
                    .idle(IdleStrategy::YIELDING)
                    .agent(HandlerAgent::new(bad, |v: &u64, _, _| {
                        assert!(*v != 5, "boom at five")
                    })),
            )
            .thread(
                ThreadSpec::new("b")
                    .idle(IdleStrategy::BLOCKING)
                    .agent(HandlerAgent::new(good, |_: &u64, _, _| {})),
            )
            .spawn()
            .expect("valid layout");
        // The writer must not hang: once the bad handler is gone it gets `Halted`.
        let mut halted = false;
        for v in 0..1_000_000u64 {
            if publisher.publish(|slot| *slot = v).is_err() {
                halted = true;
                break;
            }
        }
        assert!(
            halted,
            "writer kept publishing into a ring whose subscriber died"
        );
        drop(publisher);
        let err = pipeline
            .join_timeout(TIMEOUT)
            .expect_err("a handler panicked");
        let text = err.to_string();
        assert!(
            text.contains("bad-handler") && text.contains("boom at five"),
            "{text}"
        );
    }

    #[test]
    fn shutdown_drains_every_published_event_through_a_pipeline() {
        let mut ring = RingBuilder::<u64>::new(64).expect("power of two");
        let first = ring.subscriber("first");
        let second = ring.subscriber_after("second", &[&first]);
        let mut publisher = ring.build().expect("has subscribers");
        let (tx, rx) = std::sync::mpsc::channel();
        let last = HandlerAgent::new(second, |v: &u64, seq, _| assert_eq!(*v, seq));
        let pipeline = Layout::new()
            .thread(
                ThreadSpec::new("one")
                    .idle(IdleStrategy::BACKOFF)
                    .agent(HandlerAgent::new(first, |_: &u64, _, _| {})),
            )
            .thread(
                ThreadSpec::new("two")
                    .idle(IdleStrategy::BLOCKING)
                    .agent(CountOnClose(last, tx)),
            )
            .spawn()
            .expect("valid layout");
        for v in 0..10_000u64 {
            publisher.publish(|slot| *slot = v).expect("not halted");
        }
        drop(publisher);
        pipeline.join_timeout(TIMEOUT).expect("clean shutdown");
        assert_eq!(rx.recv_timeout(TIMEOUT).expect("reported"), 10_000);
    }

    /// Sends the number of events it handled when closed.
    struct CountOnClose<H>(HandlerAgent<u64, H>, std::sync::mpsc::Sender<u64>);

    impl<H: Handler<u64>> Agent for CountOnClose<H> {
        fn name(&self) -> &str {
            self.0.name()
        }
        fn on_start(&mut self, ctx: &mut AgentContext) -> Result<(), AgentError> {
            self.0.on_start(ctx)
        }
        fn do_work(&mut self) -> usize {
            self.0.do_work()
        }
        fn is_done(&self) -> bool {
            self.0.is_done()
        }
        fn on_close(&mut self) -> Result<(), AgentError> {
            self.1.send(self.0.subscriber.sequence())?;
            Ok(())
        }
    }
}
