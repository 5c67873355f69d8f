//! Crash test of the journal: a child process records synthetic events continuously; the
//! parent SIGKILLs it mid-write, then checks that reopening the journal keeps every record
//! the child had written and replays each one exactly (regenerated from the synthetic
//! feed's seed); then tears the last record as a power loss would and checks that reopening
//! cuts it; finally a writer appends after the recovered end.
//!
//! The child is this test binary run again with [`CHILD_ENV`] naming the journal
//! directory and a filter selecting this test, so it works under a plain
//! `cargo test --workspace` with nothing else built. Every wait is bounded.

use std::env;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tickwire_engine::event::Event;
use tickwire_engine::journal::{FsyncPolicy, JournalConfig, JournalReader, JournalWriter};
use tickwire_feeds::synthetic::{SyntheticConfig, SyntheticFeed};
use tickwire_feeds::{Feed, Sink};

/// Set in the child: the journal directory to record into.
const CHILD_ENV: &str = "TICKWIRE_JOURNAL_CRASH_CHILD_DIR";
/// The test's name, for the child's test filter.
const TEST_NAME: &str = "sigkill_mid_write_leaves_a_recoverable_journal";
/// Segment size: small, so the child rolls segments while it is being killed too.
const SEGMENT_BYTES: u64 = 256 << 10;
/// Largest batch the child appends and flushes in one write (about 1 MB): large writes,
/// flat out, keep the child inside `pwrite` much of the time, so the kill often tears one.
const MAX_BATCH: usize = 16_411;
/// The child writes at most this many events (about 270 MB), then idles until killed.
const CHILD_CAP: u64 = 4_000_000;
/// The parent kills the child once the files hold at least this many records.
const KILL_AFTER: u64 = 200_000;

fn synthetic() -> SyntheticFeed {
    SyntheticFeed::new(SyntheticConfig {
        seed: 0xc0ffee,
        instruments: 16,
        rate: 1_000_000,
        events: None,
        ..SyntheticConfig::default()
    })
}

fn journal_config(feed: &SyntheticFeed) -> JournalConfig {
    JournalConfig {
        segment_bytes: SEGMENT_BYTES,
        fsync: FsyncPolicy::Never,
        write_buffer_bytes: 1 << 20,
        instruments: feed.instruments().clone(),
        ..JournalConfig::default()
    }
}

/// The first `n` events of the deterministic stream.
fn expected_events(n: usize) -> Vec<Event> {
    let mut feed = synthetic();
    let mut events = vec![Event::default(); n];
    let mut sink = Sink::from_slice(&mut events);
    feed.poll(&mut sink).expect("synthetic never fails");
    assert_eq!(sink.written(), n);
    events
}

/// The child: records the stream flat out in batches of varying size, each flushed to the
/// file (one write per batch, more when the buffer fills). Never returns normally before its
/// deadline: the parent kills it.
fn run_writer(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut feed = synthetic();
    let mut writer = JournalWriter::open(dir, journal_config(&feed)).expect("child: open");
    let mut buf = vec![Event::default(); MAX_BATCH];
    let mut written = 0u64;
    let mut batch = 1usize;
    while written < CHILD_CAP && Instant::now() < deadline {
        batch = batch * 31 % MAX_BATCH + 1; // 1..=MAX_BATCH, varying
        let mut sink = Sink::from_slice(&mut buf[..batch]);
        feed.poll(&mut sink).expect("synthetic never fails");
        writer.append_batch(sink.events()).expect("child: append");
        writer.flush().expect("child: flush");
        written += batch as u64;
    }
    eprintln!("child: wrote {written} events without being killed");
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
}

/// Complete records in the directory's segments, judged by file sizes only (a lower
/// bound of what the files hold: a byte below a file's size has been written).
fn records_on_disk(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let header = 4096u64; // the one-block header of a 16-instrument table
    let mut records = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_str().is_some_and(|n| n.ends_with(".twj")) {
            continue;
        }
        let len = entry
            .metadata()
            .map_or(0, |m| m.len())
            .saturating_sub(header);
        let in_last = (len % 4096).saturating_sub(256) / 64;
        records += len / 4096 * 60 + in_last;
    }
    records
}

/// The newest segment file.
fn last_segment(dir: &Path) -> std::path::PathBuf {
    let mut segments: Vec<_> = fs::read_dir(dir)
        .expect("list")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "twj"))
        .collect();
    segments.sort();
    segments.pop().expect("a segment")
}

/// Waits for `child` to exit, at most `timeout`.
fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(5));
    }
    None
}

#[test]
fn sigkill_mid_write_leaves_a_recoverable_journal() {
    if let Some(dir) = env::var_os(CHILD_ENV) {
        run_writer(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env::current_exe().expect("own path"))
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the writer");

    // Wait (bounded) until the child has written enough, then kill it at once.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while seen < KILL_AFTER {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the writer exited on its own ({status}) after {seen} records");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the writer wrote only {seen} records in 60 s");
        }
        thread::sleep(Duration::from_millis(1));
        seen = records_on_disk(dir.path());
    }
    child.kill().expect("SIGKILL the writer"); // SIGKILL on Unix
    let status = wait_bounded(&mut child, Duration::from_secs(10)).expect("the writer died");
    assert!(!status.success(), "killed, not exited: {status}");
    let at_kill = records_on_disk(dir.path());

    // Reopen: the torn tail (if the kill tore a write) is cut; every complete record reads
    // back exactly as generated.
    let reader = JournalReader::open(dir.path()).expect("a killed journal reopens");
    let recovered = reader.len();
    eprintln!(
        "killed after >= {seen} records; files hold {at_kill} by size; recovered {recovered}; recovery: {:?}",
        reader.recovery()
    );
    assert!(
        recovered >= seen,
        "lost records: {recovered} < {seen} seen before the kill"
    );
    assert!(recovered <= at_kill, "{recovered} > {at_kill} on disk");
    assert!(recovered < CHILD_CAP, "the kill did not land mid-stream");
    let expected = expected_events(recovered as usize + 10_000);
    let mut n = 0;
    for (i, event) in reader.iter().enumerate() {
        assert_eq!(*event, expected[i], "record {i}");
        n += 1;
    }
    assert_eq!(n, recovered);
    assert_eq!(reader.instruments().len(), 16);
    drop(reader);

    // A SIGKILL cannot tear a record: a block is one page, and the kernel copies a write
    // into the page cache page by page, stopping for a fatal signal only between pages.
    // A power loss can, so tear the last record as it would (cut it short, then garbage)
    // and check that reopening cuts it and keeps every record before it.
    let last = last_segment(dir.path());
    let len = fs::metadata(&last).expect("stat").len();
    let recovered = if len > 4096 + 256 {
        let mut bytes = fs::read(&last).expect("read");
        bytes.truncate(len as usize - 23);
        bytes.extend_from_slice(&[0xa5; 1000]);
        fs::write(&last, &bytes).expect("tear");
        let reader = JournalReader::open(dir.path()).expect("a torn journal reopens");
        let recovery = reader.recovery().expect("the torn tail was found");
        assert!(
            recovery.truncated && recovery.to_len == len - 64,
            "{recovery:?}"
        );
        assert_eq!(reader.len(), recovered - 1);
        assert!(
            reader
                .iter()
                .eq(expected.iter().take(recovered as usize - 1))
        );
        recovered - 1
    } else {
        recovered // the kill landed just after a roll: the last segment is empty
    };

    // A writer continues after the recovered end; the whole journal is the stream.
    let feed = synthetic();
    let mut writer = JournalWriter::open(dir.path(), journal_config(&feed)).expect("reopen");
    assert_eq!(writer.next_sequence(), recovered);
    let more = &expected[recovered as usize..];
    writer.append_batch(more).expect("append");
    writer.close().expect("close");
    let reader = JournalReader::open(dir.path()).expect("reopen after append");
    assert!(reader.recovery().is_none());
    assert_eq!(reader.len(), expected.len() as u64);
    assert!(reader.iter().eq(expected.iter()));
}
