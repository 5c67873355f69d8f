//! The recorder: an agent that writes a ring's events into a journal.

use std::fmt;

use crate::agent::{Agent, AgentContext, AgentError};
use crate::event::Event;
use crate::ring::Subscriber;

use super::{JournalError, JournalWriter};

/// Records every event of a ring into a [`JournalWriter`], in batches: each
/// [`do_work`](Agent::do_work) appends what is available (up to `max_batch`), then
/// [`flush`](JournalWriter::flush)es, which fsyncs per the writer's policy. An idle round
/// flushes too, so an interval fsync happens even when the market is quiet.
///
/// Done when the ring is drained (or on a write error, after which it drops its
/// subscriber, which halts the ring so that the writer upstream stops instead of waiting).
/// [`on_close`](Agent::on_close) syncs and closes the journal and reports the first error.
pub struct RecorderAgent {
    name: String,
    subscriber: Option<Subscriber<Event>>,
    writer: Option<JournalWriter>,
    max_batch: usize,
    error: Option<JournalError>,
    recorded: u64,
}

impl fmt::Debug for RecorderAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecorderAgent")
            .field("name", &self.name)
            .field("recorded", &self.recorded)
            .field("error", &self.error)
            .finish()
    }
}

impl RecorderAgent {
    /// An agent named after the subscriber, recording into `writer`. Batches are capped at
    /// 4096 events, as for [`HandlerAgent`](crate::agent::HandlerAgent).
    pub fn new(subscriber: Subscriber<Event>, writer: JournalWriter) -> Self {
        Self {
            name: subscriber.name().to_owned(),
            subscriber: Some(subscriber),
            writer: Some(writer),
            max_batch: 4096,
            error: None,
            recorded: 0,
        }
    }

    /// Caps the events appended per `do_work`.
    pub fn with_max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch.max(1);
        self
    }

    /// Events recorded so far.
    pub fn recorded(&self) -> u64 {
        self.recorded
    }

    fn fail(&mut self, error: JournalError) {
        if self.error.is_none() {
            self.error = Some(error);
        }
        // Halts the ring: the upstream writer sees `Halted` rather than a full ring forever.
        self.subscriber = None;
    }
}

impl Agent for RecorderAgent {
    fn name(&self) -> &str {
        &self.name
    }

    fn on_start(&mut self, ctx: &mut AgentContext) -> Result<(), AgentError> {
        if let Some(subscriber) = &self.subscriber {
            ctx.wake_on(subscriber);
        }
        Ok(())
    }

    fn do_work(&mut self) -> usize {
        let (Some(subscriber), Some(writer)) = (self.subscriber.as_mut(), self.writer.as_mut())
        else {
            return 0;
        };
        let mut error = None;
        let n = subscriber.poll_up_to(self.max_batch, |event, _sequence, _end_of_batch| {
            if error.is_none() {
                error = writer.append(event).err();
            }
        });
        let flushed = writer.flush();
        self.recorded += n as u64;
        if let Some(e) = error.or(flushed.err()) {
            self.fail(e);
        }
        n
    }

    fn is_done(&self) -> bool {
        self.subscriber.as_ref().is_none_or(Subscriber::is_finished)
    }

    fn on_close(&mut self) -> Result<(), AgentError> {
        if let Some(mut writer) = self.writer.take() {
            // `close` fsyncs unless the policy is `Never`; sync first so that a clean
            // shutdown is durable whatever the policy.
            let result = writer.sync().and_then(|()| writer.close());
            if let Err(e) = result {
                self.fail(e);
            }
        }
        match self.error.take() {
            Some(e) => Err(Box::new(e)),
            None => Ok(()),
        }
    }
}
