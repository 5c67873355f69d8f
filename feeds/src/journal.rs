//! The journal feed: replays a recorded journal into the ring, from a sequence or a
//! receive time, as fast as the ring takes it.
//!
//! It reads a [`JournalReader`] (memory-mapped, checksums verified when the reader
//! opened) and copies events into the sink a block at a time; events keep their recorded
//! timestamps, so a replay driven by event time gives the same results twice.
//!
//! ```
//! use tickwire_engine::event::Event;
//! use tickwire_engine::journal::{JournalConfig, JournalWriter};
//! use tickwire_feeds::journal::JournalFeed;
//! use tickwire_feeds::{Feed, FeedStatus, Sink};
//!
//! let dir = std::env::temp_dir().join(format!("tickwire-feed-doc-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! let mut writer = JournalWriter::open(&dir, JournalConfig::default())?;
//! for i in 0..100 {
//!     writer.append(&Event::new(0, 0, i, 1_000 + i))?; // receive_ts 1000.., ns
//! }
//! writer.close()?;
//!
//! let mut feed = JournalFeed::open(&dir)?.from_time(1_090);
//! let mut buf = [Event::default(); 64];
//! let mut sink = Sink::from_slice(&mut buf);
//! assert_eq!(feed.poll(&mut sink)?, FeedStatus::End);
//! assert_eq!(sink.written(), 10);
//! assert_eq!(sink.events()[0].receive_ts, 1_090);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;

use tickwire_engine::instrument::InstrumentRegistry;
use tickwire_engine::journal::{JournalError, JournalReader, OpenOptions};

use crate::{Feed, FeedError, FeedErrorKind, FeedStatus, Position, Sink};

/// A [`Feed`] reading a journal from a sequence (or time) to its end (or a sequence).
#[derive(Debug)]
pub struct JournalFeed {
    name: String,
    reader: JournalReader,
    next: u64,
    end: u64,
    /// The reader stopped at damage that this feed has not reported yet.
    damage_pending: bool,
}

impl JournalFeed {
    /// Opens the journal in `dir` ([`JournalReader::open`]: verified, torn tail cut) and
    /// replays it from its first record.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, JournalError> {
        JournalReader::open(dir).map(Self::new)
    }

    /// Opens the journal in `dir` up to its first damage, if it has any
    /// ([`OpenOptions::stop_at_damage`]): every record before the damage is replayed, then
    /// the feed ends with an error naming it (the file, the byte and what is wrong), instead
    /// of refusing the whole journal. Changes nothing on disk (a torn tail is skipped).
    pub fn open_to_damage(dir: impl AsRef<Path>) -> Result<Self, JournalError> {
        // A replay only reads: a torn tail is skipped, not cut, and no LOCK is taken.
        let options = OpenOptions {
            stop_at_damage: true,
            truncate_torn_tail: false,
            ..OpenOptions::default()
        };
        JournalReader::open_with(dir, options).map(Self::new)
    }

    /// Replays `reader` from its first record to its end.
    pub fn new(reader: JournalReader) -> Self {
        Self {
            name: format!("journal:{}", reader.dir().display()),
            next: reader.first_sequence(),
            end: reader.end_sequence(),
            damage_pending: reader.damage().is_some(),
            reader,
        }
    }

    /// Starts at sequence `sequence` (clamped to the journal).
    pub fn from_sequence(mut self, sequence: u64) -> Self {
        self.next = sequence.clamp(self.reader.first_sequence(), self.reader.end_sequence());
        self
    }

    /// Starts at the first record received at or after `receive_ns` (ns since the Unix
    /// epoch), by [`JournalReader::seek_time`].
    pub fn from_time(mut self, receive_ns: u64) -> Self {
        self.next = self.reader.seek_time(receive_ns);
        self
    }

    /// Stops before sequence `end` (clamped to the journal; short of damage, which is then
    /// not reported).
    pub fn until_sequence(mut self, end: u64) -> Self {
        self.end = end.min(self.reader.end_sequence());
        self.damage_pending &= end > self.reader.end_sequence();
        self
    }

    /// The sequence of the next event the feed writes.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The journal.
    pub fn reader(&self) -> &JournalReader {
        &self.reader
    }
}

impl Feed for JournalFeed {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll(&mut self, sink: &mut Sink<'_>) -> Result<FeedStatus, FeedError> {
        while self.next < self.end && sink.remaining() > 0 {
            let run = self.reader.run(self.next);
            let take = run
                .len()
                .min(sink.remaining())
                .min((self.end - self.next) as usize);
            if take == 0 {
                break; // the reader holds no more (cannot happen below its end sequence)
            }
            for event in &run[..take] {
                sink.push(*event);
            }
            self.next += take as u64;
        }
        if self.next < self.end {
            return Ok(FeedStatus::Active);
        }
        if std::mem::take(&mut self.damage_pending)
            && let Some(damage) = self.reader.damage()
        {
            return Err(FeedError::new(
                &self.name,
                Position::Record(self.next),
                FeedErrorKind::Malformed(format!(
                    "the journal is damaged here, every record before was replayed: {damage}"
                )),
            ));
        }
        Ok(FeedStatus::End)
    }

    fn instruments(&self) -> &InstrumentRegistry {
        self.reader.instruments()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tickwire_engine::agent::{HandlerAgent, Layout, ThreadSpec};
    use tickwire_engine::event::Event;
    use tickwire_engine::idle::IdleStrategy;
    use tickwire_engine::journal::{FsyncPolicy, JournalConfig, JournalWriter};
    use tickwire_engine::ring::RingBuilder;

    use super::*;
    use crate::IngestAgent;
    use crate::synthetic::{SyntheticConfig, SyntheticFeed};

    /// `n` synthetic events and the feed's instruments.
    fn synthetic(n: usize) -> (Vec<Event>, InstrumentRegistry) {
        let mut feed = SyntheticFeed::new(SyntheticConfig {
            rate: 1_000_000, // 1 µs apart in simulated time
            events: Some(n as u64),
            ..SyntheticConfig::default()
        });
        let mut events = vec![Event::default(); n];
        let mut sink = Sink::from_slice(&mut events);
        feed.poll(&mut sink).expect("synthetic never fails");
        assert_eq!(sink.written(), n);
        (events, feed.instruments().clone())
    }

    fn record(dir: &Path, events: &[Event], instruments: InstrumentRegistry) {
        let mut writer = JournalWriter::open(
            dir,
            JournalConfig {
                segment_bytes: 64 << 10, // rolls every 900 events
                fsync: FsyncPolicy::Never,
                instruments,
                ..JournalConfig::default()
            },
        )
        .expect("open writer");
        writer.append_batch(events).expect("append");
        writer.close().expect("close");
    }

    fn drain(feed: &mut JournalFeed, chunk: usize) -> Vec<Event> {
        let mut out = Vec::new();
        let mut buf = vec![Event::default(); chunk];
        loop {
            let mut sink = Sink::from_slice(&mut buf);
            let status = feed.poll(&mut sink).expect("journal feed never fails");
            out.extend_from_slice(sink.events());
            if status == FeedStatus::End {
                return out;
            }
        }
    }

    #[test]
    fn replays_the_recorded_events_from_a_sequence_or_a_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (events, instruments) = synthetic(5_000);
        record(dir.path(), &events, instruments.clone());

        let mut feed = JournalFeed::open(dir.path()).expect("open");
        assert_eq!(feed.instruments(), &instruments);
        assert_eq!(drain(&mut feed, 37), events);

        let mut feed = JournalFeed::open(dir.path())
            .expect("open")
            .from_sequence(1234)
            .until_sequence(4000);
        assert_eq!(drain(&mut feed, 256), events[1234..4000]);

        let t = events[3210].receive_ts;
        let mut feed = JournalFeed::open(dir.path()).expect("open").from_time(t);
        assert_eq!(feed.position(), 3210);
        assert_eq!(drain(&mut feed, 1000), events[3210..]);
    }

    #[test]
    fn open_to_damage_replays_up_to_it_reports_it_once_and_changes_nothing() {
        use tickwire_engine::journal::{BLOCK_SIZE, RECORDS_PER_BLOCK};
        let dir = tempfile::tempdir().expect("temp dir");
        let (events, instruments) = synthetic(5_000);
        record(dir.path(), &events, instruments);
        let mut segments: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "twj"))
            .collect();
        segments.sort();
        // Segment 2 holds sequences 1800..2700 (900 records: 15 blocks after its header).
        let mut bytes = std::fs::read(&segments[2]).expect("read");
        let header_len = bytes.len() - 15 * BLOCK_SIZE;
        let record = 200; // sequence 2000
        let block_header = BLOCK_SIZE - RECORDS_PER_BLOCK * 64;
        let at = header_len
            + record / RECORDS_PER_BLOCK * BLOCK_SIZE
            + block_header
            + record % RECORDS_PER_BLOCK * 64;
        bytes[at + 9] ^= 0x20;
        std::fs::write(&segments[2], &bytes).expect("damage");
        // And a torn tail on the last segment.
        let last = segments.last().expect("segments").clone();
        let mut tail = std::fs::read(&last).expect("read");
        tail.extend_from_slice(&[0xab; 100]);
        std::fs::write(&last, &tail).expect("tear");
        let before: Vec<Vec<u8>> = segments
            .iter()
            .map(|p| std::fs::read(p).expect("read"))
            .collect();

        let mut feed = JournalFeed::open_to_damage(dir.path()).expect("opens");
        let (got, end) = crate::test_util::drain(&mut feed, 333);
        let error = end.expect_err("the damage was not reported");
        assert_eq!(got, events[..2000], "every record before the damage");
        assert_eq!(error.position, Position::Record(2000));
        assert!(error.to_string().contains("at sequence 2000"), "{error}");
        let mut buf = [Event::default(); 4];
        let mut sink = Sink::from_slice(&mut buf);
        assert_eq!(
            feed.poll(&mut sink).expect("reported once"),
            FeedStatus::End
        );
        // Nothing on disk changed: the torn tail is still there, every byte as it was.
        for (path, bytes) in segments.iter().zip(&before) {
            assert_eq!(
                &std::fs::read(path).expect("read"),
                bytes,
                "{}",
                path.display()
            );
        }

        // Asked to stop at or before the damage, there is nothing to report.
        for end in [2000, 1500] {
            let mut feed = JournalFeed::open_to_damage(dir.path())
                .expect("opens")
                .until_sequence(end);
            assert_eq!(drain(&mut feed, 256), events[..end as usize]);
        }
    }

    #[test]
    fn replays_through_the_ingest_agent_into_a_ring() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (events, instruments) = synthetic(20_000);
        record(dir.path(), &events, instruments);

        let mut ring = RingBuilder::<Event>::new(1024).expect("power of two");
        let subscriber = ring.subscriber("check");
        let publisher = ring.build().expect("one subscriber");
        let feed = JournalFeed::open(dir.path()).expect("open");
        let expected = events.clone();
        let seen = Arc::new(AtomicUsize::new(0));
        let mismatches = Arc::new(AtomicUsize::new(0));
        let (seen_in, mismatches_in) = (Arc::clone(&seen), Arc::clone(&mismatches));
        let check = HandlerAgent::new(subscriber, move |e: &Event, sequence: u64, _| {
            if expected.get(sequence as usize) != Some(e) {
                mismatches_in.fetch_add(1, Ordering::Relaxed);
            }
            seen_in.fetch_add(1, Ordering::Relaxed);
        });
        let pipeline = Layout::new()
            .thread(
                ThreadSpec::new("replay")
                    .idle(IdleStrategy::YIELDING)
                    .agent(IngestAgent::new(feed, publisher))
                    .agent(check),
            )
            .spawn()
            .expect("spawn");
        pipeline
            .join_timeout(Duration::from_secs(30))
            .expect("clean shutdown");
        // Relaxed: `join` ordered the handler thread's writes before these loads.
        assert_eq!(seen.load(Ordering::Relaxed), events.len());
        assert_eq!(mismatches.load(Ordering::Relaxed), 0);
    }
}
