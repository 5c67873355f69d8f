//! Journal tests: round trips across segment rolls, random access, seek by time, torn
//! tails, corruption in the middle, arbitrary bytes, appending after recovery, and the
//! recorder agent in a pipeline.

use std::fs::{self, OpenOptions as FileOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;

use super::format::{BLOCK_HEADER_SIZE, RECORD_SIZE};
use super::*;
use crate::event::{Event, Quote, Trade};

/// A deterministic, varied event for sequence `i`: receive times advance by 1 µs with a
/// step back every 97 events (a clock correction), so seek-by-time meets non-monotonic
/// times.
fn event(i: u64) -> Event {
    let mix = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let receive_ts = 1_700_000_000_000_000_000 + i * 1_000 - if i % 97 == 0 { 5_000 } else { 0 };
    let mut e = Event::new(
        (mix >> 60) as u16,
        (mix % 13) as u32,
        receive_ts - 300,
        receive_ts,
    );
    if mix & 1 == 0 {
        e.set_quote(Quote {
            bid_px: (mix >> 8) as i64 & 0xffff_ffff,
            ask_px: ((mix >> 8) as i64 & 0xffff_ffff) + 10,
            bid_size: mix >> 20,
            ask_size: mix >> 24,
            seq: i,
        });
    } else {
        e.set_trade(Trade {
            price: (mix >> 4) as i64,
            size: mix >> 30,
            trade_id: i * 3,
            seq: i,
            aggressor: (mix >> 62) as u8,
            ..Trade::default()
        });
    }
    e
}

/// A small segment: 8 blocks (480 records) after a one-block header.
const SMALL_SEGMENT: u64 = 9 * BLOCK_SIZE as u64;

fn config(segment_bytes: u64) -> JournalConfig {
    JournalConfig {
        segment_bytes,
        fsync: FsyncPolicy::Never,
        write_buffer_bytes: 3 * BLOCK_SIZE,
        instruments: crate::instrument::InstrumentRegistry::from_symbols(["AAA", "BBB"]),
        ..JournalConfig::default()
    }
}

fn write_journal(dir: &Path, n: u64, config: JournalConfig) {
    let mut writer = JournalWriter::open(dir, config).expect("open writer");
    let first = writer.next_sequence();
    // Mixed batch sizes and flushes, so partial blocks are rewritten many times.
    let mut i = 0;
    while i < n {
        let batch = (1 + (i * 7) % 150).min(n - i);
        let events: Vec<Event> = (i..i + batch).map(|s| event(first + s)).collect();
        writer.append_batch(&events).expect("append");
        if i % 3 == 0 {
            writer.flush().expect("flush");
        }
        i += batch;
    }
    writer.close().expect("close");
}

fn assert_holds(reader: &JournalReader, first: u64, end: u64) {
    assert_eq!(reader.first_sequence(), first);
    assert_eq!(reader.end_sequence(), end);
    let mut count = 0;
    let mut events = reader.iter();
    while let Some(e) = {
        let s = events.sequence();
        events.next().map(|e| (s, e))
    } {
        assert_eq!(*e.1, event(e.0), "sequence {}", e.0);
        count += 1;
    }
    assert_eq!(count, end - first);
}

fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "twj"))
        .collect();
    paths.sort();
    paths
}

fn last_segment(dir: &Path) -> PathBuf {
    segment_paths(dir).pop().expect("a segment")
}

#[test]
fn round_trip_across_segment_rolls_with_random_access() {
    let dir = tempfile::tempdir().expect("temp dir");
    let n = 480 * 5 + 123; // five full segments and part of a sixth
    write_journal(dir.path(), n, config(SMALL_SEGMENT));
    assert_eq!(segment_paths(dir.path()).len(), 6);
    let reader = JournalReader::open(dir.path()).expect("open");
    assert!(reader.recovery().is_none());
    assert_eq!(reader.len(), n);
    assert_eq!(reader.instruments().symbol(1), Some("BBB"));
    assert_holds(&reader, 0, n);
    let firsts: Vec<u64> = reader.segments().map(|s| s.1).collect();
    assert_eq!(firsts, [0, 480, 960, 1440, 1920, 2400]);
    assert_eq!(
        last_segment(dir.path())
            .file_name()
            .and_then(|n| n.to_str()),
        Some("00000000000000002400.twj")
    );
    // Pseudo-random sequences, plus every boundary.
    let mut probe = 12345u64;
    for _ in 0..2000 {
        probe = probe
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let s = (probe >> 33) % n;
        assert_eq!(reader.get(s), Some(&event(s)));
    }
    for s in [0, 59, 60, 479, 480, 481, n - 1] {
        assert_eq!(reader.get(s), Some(&event(s)));
        assert_eq!(reader.iter_from(s).next(), Some(&event(s)));
        assert_eq!(reader.iter_from(s).len() as u64, n - s);
    }
    assert_eq!(reader.get(n), None);
    assert_eq!(reader.iter_from(n).next(), None);
}

#[test]
fn seek_by_time_finds_the_first_record_at_or_after_the_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let n = 480 * 3 + 77;
    write_journal(dir.path(), n, config(SMALL_SEGMENT));
    let reader = JournalReader::open(dir.path()).expect("open");
    let expected = |t: u64| (0..n).find(|&s| event(s).receive_ts >= t).unwrap_or(n);
    let base = event(0).receive_ts;
    for t in [
        0,
        base,
        base + 1,
        event(97).receive_ts,
        event(96).receive_ts + 1,
        event(500).receive_ts,
        event(959).receive_ts,
        event(960).receive_ts,
        event(n - 1).receive_ts,
        event(n - 1).receive_ts + 1,
        u64::MAX,
    ] {
        assert_eq!(reader.seek_time(t), expected(t), "time {t}");
    }
    let mut probe = 7u64;
    for _ in 0..500 {
        probe = probe.wrapping_mul(6364136223846793005).wrapping_add(1);
        let t = base - 10_000 + (probe >> 40) % (n * 1_000 + 20_000);
        assert_eq!(reader.seek_time(t), expected(t), "time {t}");
    }
    let from = reader.iter_from_time(event(700).receive_ts).next();
    assert_eq!(from, Some(&event(700)));
}

#[test]
fn torn_tail_is_truncated_to_the_last_complete_record_at_any_length() {
    let dir = tempfile::tempdir().expect("temp dir");
    let n = 480 + 200; // a full segment, then 200 records (3 blocks and 20) in the last
    write_journal(dir.path(), n, config(SMALL_SEGMENT));
    let last = last_segment(dir.path());
    let pristine = fs::read(&last).expect("read");
    let header_len = BLOCK_SIZE;
    // Around every record and block-header boundary of the last two blocks (one byte
    // short, exact, one byte over), and a sweep at a stride prime to 64 through the rest.
    let near_end = pristine.len() - 2 * BLOCK_SIZE;
    let lengths: Vec<usize> = (header_len..=pristine.len())
        .filter(|&l| {
            let near_boundary = [l.saturating_sub(1), l, l + 1].iter().any(|&m| {
                let b = (m.max(header_len) - header_len) % BLOCK_SIZE;
                b == 0 || (b >= BLOCK_HEADER_SIZE && (b - BLOCK_HEADER_SIZE) % RECORD_SIZE == 0)
            });
            (l >= near_end && near_boundary) || l % 61 == 0
        })
        .collect();
    for len in lengths {
        fs::write(&last, &pristine[..len]).expect("write");
        let reader = JournalReader::open(dir.path()).expect("open after a tear");
        // The records wholly inside the cut survive.
        let data = len - header_len;
        let (block, rest) = (data / BLOCK_SIZE, data % BLOCK_SIZE);
        let in_block = rest.saturating_sub(BLOCK_HEADER_SIZE) / RECORD_SIZE;
        let survivors = 480 + (block * RECORDS_PER_BLOCK + in_block) as u64;
        assert_eq!(reader.end_sequence(), survivors, "cut at {len}");
        assert_holds(&reader, 0, survivors);
        let on_disk = fs::metadata(&last).expect("stat").len();
        let expected_len = if survivors == 480 {
            header_len as u64
        } else {
            let i = survivors - 480 - 1;
            (header_len
                + (i as usize / 60) * BLOCK_SIZE
                + BLOCK_HEADER_SIZE
                + (i as usize % 60 + 1) * RECORD_SIZE) as u64
        };
        assert_eq!(on_disk, expected_len, "cut at {len}");
        drop(reader);
        // Reopening the recovered journal finds nothing left to do.
        let again = JournalReader::open(dir.path()).expect("reopen");
        assert!(again.recovery().is_none(), "cut at {len}");
        assert_eq!(again.end_sequence(), survivors);
    }
}

#[test]
fn garbage_after_the_tail_is_cut_and_appending_continues() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_journal(dir.path(), 500, config(SMALL_SEGMENT));
    let last = last_segment(dir.path());
    let good_len = fs::metadata(&last).expect("stat").len();
    for garbage in [
        vec![0u8; 1],
        vec![0u8; 64],
        vec![0xa5; 4000],
        vec![0x5a; 10_000],
    ] {
        let mut file = FileOptions::new().append(true).open(&last).expect("open");
        file.write_all(&garbage).expect("append garbage");
        drop(file);
        let reader = JournalReader::open(dir.path()).expect("open");
        let recovery = reader.recovery().expect("a recovery");
        assert!(recovery.truncated);
        assert_eq!(recovery.to_len, good_len);
        assert_holds(&reader, 0, 500);
    }
    // A garbled last block header with intact earlier records: the header is rewritten.
    let mut bytes = fs::read(&last).expect("read");
    let tail_block = BLOCK_SIZE; // header, then block 0 holds records 480..500
    bytes[tail_block + 19 * 4..tail_block + 20 * 4].fill(0xff); // crc of record 499
    fs::write(&last, &bytes).expect("write");
    let reader = JournalReader::open(dir.path()).expect("open");
    assert_holds(&reader, 0, 499);
    drop(reader);
    // The writer appends after the recovered end, rewriting the partial block.
    let mut writer = JournalWriter::open(dir.path(), config(SMALL_SEGMENT)).expect("reopen");
    assert_eq!(writer.next_sequence(), 499);
    for s in 499..1200 {
        writer.append(&event(s)).expect("append");
    }
    writer.close().expect("close");
    let reader = JournalReader::open(dir.path()).expect("open");
    assert!(reader.recovery().is_none());
    assert_holds(&reader, 0, 1200);
}

#[test]
fn corruption_before_the_last_valid_record_names_file_and_offset() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_journal(dir.path(), 480 + 300, config(SMALL_SEGMENT));
    let paths = segment_paths(dir.path());
    // Record 5 of the last segment: block 0, slot 5.
    let record_offset = (BLOCK_SIZE + BLOCK_HEADER_SIZE + 5 * RECORD_SIZE) as u64;
    let block = BLOCK_SIZE as u64;
    // (segment, byte to flip, offset the error must name)
    for (path, flip, expected) in [
        // a record early in the last segment
        (&paths[1], record_offset + 17, record_offset),
        // the same record in the sealed segment
        (&paths[0], record_offset + 17, record_offset),
        // the running max receive time in a block header of the last segment
        (&paths[1], block + 245, block),
        // a record checksum in a block header of the sealed segment
        (&paths[0], 2 * block + 3, 2 * block),
    ] {
        let pristine = fs::read(path).expect("read");
        let mut bytes = pristine.clone();
        bytes[flip as usize] ^= 0x04;
        fs::write(path, &bytes).expect("write");
        let error = JournalReader::open(dir.path()).expect_err("corruption is an error");
        let message = error.to_string();
        match &error {
            JournalError::Corrupt {
                path: at, offset, ..
            } => {
                assert_eq!((at, *offset), (path, expected), "{message}");
            }
            other => panic!("flip at {flip}: expected Corrupt, got {other:?}"),
        }
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(&format!("byte {expected}")), "{message}");
        fs::write(path, &pristine).expect("restore");
    }
    // With only the last segment verified at open, the sealed one is checked on demand.
    let mut bytes = fs::read(&paths[0]).expect("read");
    bytes[record_offset as usize] ^= 1;
    fs::write(&paths[0], &bytes).expect("write");
    let options = OpenOptions {
        verify: Verify::LastSegment,
        ..OpenOptions::default()
    };
    let reader = JournalReader::open_with(dir.path(), options).expect("fast open");
    assert!(matches!(
        reader.verify(),
        Err(JournalError::Corrupt { offset, .. }) if offset == record_offset
    ));
}

#[test]
fn stop_at_damage_serves_every_record_before_the_damage_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_journal(dir.path(), 480 * 2 + 300, config(SMALL_SEGMENT));
    let paths = segment_paths(dir.path());
    assert_eq!(paths.len(), 3, "0..480, 480..960, 960..1260");
    let to_damage = OpenOptions {
        stop_at_damage: true,
        ..OpenOptions::default()
    };
    let block = BLOCK_SIZE as u64;
    // Record `index` of a small segment (one header block, then blocks of 60).
    let record = |index: u64| {
        block
            + (index / 60) * block
            + (BLOCK_HEADER_SIZE + (index % 60) as usize * RECORD_SIZE) as u64
    };
    // (segment, byte to flip, the end sequence served, what the damage is)
    let cases = [
        (
            1,
            record(100) + 17,
            480 + 100,
            "record checksum mismatch at sequence 580",
        ),
        (
            2,
            record(30) + 17,
            960 + 30,
            "record checksum mismatch at sequence 990",
        ),
        (
            0,
            record(0) + 17,
            0,
            "record checksum mismatch at sequence 0",
        ),
        // A block header of the sealed segment: its whole block goes.
        (
            1,
            block + 2 * block + 3,
            480 + 120,
            "block 2 header checksum mismatch",
        ),
    ];
    for (segment, flip, end, what) in cases {
        let path = &paths[segment];
        let pristine = fs::read(path).expect("read");
        let mut bytes = pristine.clone();
        bytes[flip as usize] ^= 0x04;
        fs::write(path, &bytes).expect("write");
        assert!(
            JournalReader::open(dir.path()).is_err(),
            "refused by default"
        );
        let reader = JournalReader::open_with(dir.path(), to_damage).expect("opens to the damage");
        assert_holds(&reader, 0, end);
        let damage = reader.damage().map(ToString::to_string).unwrap_or_default();
        assert!(
            damage.contains(&path.display().to_string()) && damage.contains(what),
            "{damage}"
        );
        if end > 0 {
            // The time index holds up to the damage.
            let last = event(end - 1).receive_ts;
            let first_at = (0..end)
                .find(|&s| event(s).receive_ts >= last)
                .expect("the last one at least");
            assert_eq!(reader.seek_time(last), first_at);
            assert_eq!(reader.seek_time(last + 1), end);
        }
        assert_eq!(
            fs::read(path).expect("read"),
            bytes,
            "nothing on disk changed"
        );
        fs::write(path, &pristine).expect("restore");
    }
    // A missing middle segment: the first is served whole, nothing after the gap.
    fs::remove_file(&paths[1]).expect("remove");
    let reader = JournalReader::open_with(dir.path(), to_damage).expect("opens to the gap");
    assert_holds(&reader, 0, 480);
    assert!(matches!(
        reader.damage(),
        Some(JournalError::Discontinuous {
            expected: 480,
            found: 960,
            ..
        })
    ));
    // Undamaged, nothing is reported.
    let clean = tempfile::tempdir().expect("temp dir");
    write_journal(clean.path(), 700, config(SMALL_SEGMENT));
    let reader = JournalReader::open_with(clean.path(), to_damage).expect("opens");
    assert!(reader.damage().is_none());
    assert_holds(&reader, 0, 700);
}

#[test]
fn damage_under_a_stale_last_block_header_keeps_the_records_before_it() {
    // The last segment holds one full block whose header is stale (a crash between writing
    // records and their header), and its record 10 is damaged: records 0..10 stay.
    let dir = tempfile::tempdir().expect("temp dir");
    write_journal(dir.path(), 480 + 60, config(SMALL_SEGMENT));
    let path = last_segment(dir.path());
    let mut bytes = fs::read(&path).expect("read");
    let block = BLOCK_SIZE;
    // The block header's count (after 60 record checksums and the max receive time): stale,
    // so the header no longer verifies, while the records' own checksums still do.
    bytes[block + 60 * 4 + 8] ^= 0x01;
    bytes[block + BLOCK_HEADER_SIZE + 10 * RECORD_SIZE + 17] ^= 0x01; // record 10
    fs::write(&path, &bytes).expect("write");
    assert!(JournalReader::open(dir.path()).is_err());
    let to_damage = OpenOptions {
        stop_at_damage: true,
        truncate_torn_tail: false,
        ..OpenOptions::default()
    };
    let reader = JournalReader::open_with(dir.path(), to_damage).expect("opens");
    assert_holds(&reader, 0, 480 + 10);
    assert!(
        reader
            .damage()
            .is_some_and(|d| d.to_string().contains("at sequence 490")),
        "{:?}",
        reader.damage()
    );
}

#[test]
fn a_missing_or_short_sealed_segment_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_journal(dir.path(), 480 * 3 + 10, config(SMALL_SEGMENT));
    let paths = segment_paths(dir.path());
    let middle = fs::read(&paths[1]).expect("read");
    fs::write(&paths[1], &middle[..middle.len() - 64]).expect("shorten");
    let error = JournalReader::open(dir.path()).expect_err("short");
    assert!(matches!(error, JournalError::Corrupt { .. }));
    let last = paths[3]
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    assert!(
        error.to_string().contains(&format!(
            "(it is not the last segment: {} follows)",
            last.unwrap_or_default()
        )),
        "{error}"
    );
    fs::remove_file(&paths[1]).expect("remove");
    assert!(matches!(
        JournalReader::open(dir.path()),
        Err(JournalError::Discontinuous {
            expected: 480,
            found: 960,
            ..
        })
    ));
    let empty = tempfile::tempdir().expect("temp dir");
    assert!(matches!(
        JournalReader::open(empty.path()),
        Err(JournalError::NoSegments { .. })
    ));
}

#[test]
fn a_live_writer_locks_out_a_second_writer_and_truncation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut writer = JournalWriter::open(dir.path(), config(SMALL_SEGMENT)).expect("open");
    assert!(matches!(
        JournalWriter::open(dir.path(), config(SMALL_SEGMENT)),
        Err(JournalError::Locked { .. })
    ));
    for s in 0..100 {
        writer.append(&event(s)).expect("append");
    }
    writer.flush().expect("flush");
    // Garbage after the live writer's data: skipped, not cut, while it holds the lock.
    let last = last_segment(dir.path());
    let mut file = FileOptions::new().append(true).open(&last).expect("open");
    file.write_all(&[0xee; 100]).expect("garbage");
    let reader = JournalReader::open(dir.path()).expect("open");
    assert_holds(&reader, 0, 100);
    assert_eq!(reader.recovery().map(|r| r.truncated), Some(false));
    drop(writer);
}

#[test]
fn fsync_policies_sync_when_they_say() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut every = JournalWriter::open(
        dir.path().join("every"),
        JournalConfig {
            fsync: FsyncPolicy::EveryBatch,
            ..config(SMALL_SEGMENT)
        },
    )
    .expect("open");
    every.append(&event(0)).expect("append");
    assert_eq!(every.synced_sequence(), 0);
    every.flush().expect("flush");
    assert_eq!(every.synced_sequence(), 1);

    let mut never =
        JournalWriter::open(dir.path().join("never"), config(SMALL_SEGMENT)).expect("open");
    never.append(&event(0)).expect("append");
    never.flush().expect("flush");
    assert_eq!((never.written_sequence(), never.synced_sequence()), (1, 0));
    never.sync().expect("sync");
    assert_eq!(never.synced_sequence(), 1);

    let mut interval = JournalWriter::open(
        dir.path().join("interval"),
        JournalConfig {
            fsync: FsyncPolicy::Interval(Duration::from_secs(3600)),
            ..config(SMALL_SEGMENT)
        },
    )
    .expect("open");
    interval.append(&event(0)).expect("append");
    interval.flush().expect("flush");
    assert_eq!(interval.synced_sequence(), 0, "an hour has not passed");
}

#[test]
fn recorder_agent_records_a_ring_through_a_pipeline() {
    use crate::agent::{Layout, ThreadSpec};
    use crate::idle::IdleStrategy;
    use crate::ring::RingBuilder;

    let dir = tempfile::tempdir().expect("temp dir");
    let mut ring = RingBuilder::<Event>::new(1024).expect("power of two");
    let subscriber = ring.subscriber("recorder");
    let mut publisher = ring.build().expect("one subscriber");
    let writer = JournalWriter::open(dir.path(), config(SMALL_SEGMENT)).expect("open");
    let recorder = RecorderAgent::new(subscriber, writer).with_max_batch(100);
    let pipeline = Layout::new()
        .thread(
            ThreadSpec::new("io")
                .idle(IdleStrategy::YIELDING)
                .agent(recorder),
        )
        .spawn()
        .expect("spawn");
    let n = 10_000;
    for s in 0..n {
        publisher
            .publish(|slot| *slot = event(s))
            .expect("not halted");
    }
    drop(publisher);
    pipeline
        .join_timeout(Duration::from_secs(30))
        .expect("clean shutdown");
    let reader = JournalReader::open(dir.path()).expect("open");
    assert!(reader.recovery().is_none());
    assert_holds(&reader, 0, n);
}

#[test]
fn a_journal_can_start_at_any_sequence() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = 1_000_000_007;
    let mut writer = JournalWriter::open(
        dir.path(),
        JournalConfig {
            first_sequence: first,
            ..config(SMALL_SEGMENT)
        },
    )
    .expect("open");
    for s in first..first + 1000 {
        writer.append(&event(s)).expect("append");
    }
    writer.close().expect("close");
    let reader = JournalReader::open(dir.path()).expect("open");
    assert_holds(&reader, first, first + 1000);
    assert_eq!(reader.get(first - 1), None);
    assert_eq!(reader.get(first + 500), Some(&event(first + 500)));
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 256 },
        ..ProptestConfig::default()
    })]

    /// Arbitrary bytes as a segment never panic the reader: a clear error, or a journal
    /// whose every record verifies.
    #[test]
    fn arbitrary_bytes_as_a_segment_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..10_000)) {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join(segment_file_name(0)), &bytes).expect("write");
        if let Ok(reader) = JournalReader::open(dir.path()) {
            prop_assert!(reader.verify().is_ok());
            prop_assert_eq!(reader.iter().count() as u64, reader.len());
        }
    }

    /// A valid header followed by arbitrary bytes (the likeliest shape of damage): never
    /// a panic; when it opens, every record it serves verifies.
    #[test]
    fn a_valid_header_and_arbitrary_blocks_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..3 * BLOCK_SIZE),
        records in 0u64..200,
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        write_journal(dir.path(), records, config(SMALL_SEGMENT));
        let path = last_segment(dir.path());
        let mut bytes = fs::read(&path).expect("read");
        bytes.truncate(BLOCK_SIZE);
        bytes.extend_from_slice(&tail);
        fs::write(&path, &bytes).expect("write");
        if let Ok(reader) = JournalReader::open(dir.path()) {
            prop_assert!(reader.verify().is_ok());
            prop_assert_eq!(reader.iter().count() as u64, reader.len());
        }
        // Read up to the damage: never a panic either, and what it serves verifies.
        let to_damage = OpenOptions { stop_at_damage: true, ..OpenOptions::default() };
        if let Ok(reader) = JournalReader::open_with(dir.path(), to_damage) {
            prop_assert!(reader.verify().is_ok());
            prop_assert_eq!(reader.iter().count() as u64, reader.len());
            let _ = reader.seek_time(event(records / 2).receive_ts);
        }
    }

    /// One flipped byte anywhere in a three-segment journal: read up to the damage, every
    /// record served is the one written, and an undamaged open agrees on the end.
    #[test]
    fn any_flipped_byte_is_read_up_to(
        at in any::<proptest::sample::Index>(),
        segment in 0usize..3,
        bit in 0u8..8,
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        write_journal(dir.path(), 480 * 2 + 200, config(SMALL_SEGMENT));
        let path = segment_paths(dir.path())[segment].clone();
        let mut bytes = fs::read(&path).expect("read");
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        fs::write(&path, &bytes).expect("write");
        let to_damage = OpenOptions {
            stop_at_damage: true,
            truncate_torn_tail: false,
            ..OpenOptions::default()
        };
        // Only a flip in the first segment's header leaves nothing to read; otherwise every
        // segment before the flipped one, and its blocks before the flipped block, are kept.
        let header_len = BLOCK_SIZE;
        let kept_at_least = 480 * segment as u64
            + if i < header_len { 0 } else { ((i - header_len) / BLOCK_SIZE) as u64 * 60 };
        let opened = JournalReader::open_with(dir.path(), to_damage);
        prop_assert!(opened.is_ok() || (segment == 0 && i < header_len), "flip at {}", i);
        if let Ok(reader) = opened {
            prop_assert!(reader.end_sequence() >= kept_at_least, "flip at {} of segment {}", i, segment);
            for (sequence, e) in (reader.first_sequence()..).zip(reader.iter()) {
                prop_assert_eq!(*e, event(sequence), "sequence {}", sequence);
            }
            let plain = OpenOptions { truncate_torn_tail: false, ..OpenOptions::default() };
            if let Ok(undamaged) = JournalReader::open_with(dir.path(), plain) {
                prop_assert!(reader.damage().is_none());
                prop_assert_eq!(undamaged.end_sequence(), reader.end_sequence());
            } else {
                prop_assert!(reader.damage().is_some());
            }
        }
    }

    /// A journal cut at any length, with any bytes appended: it opens, keeps exactly the
    /// records wholly before the cut, and serves them intact.
    #[test]
    fn any_tear_keeps_exactly_the_complete_records(
        records in 1u64..400,
        cut in any::<proptest::sample::Index>(),
        garbage in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        write_journal(dir.path(), records, config(SMALL_SEGMENT));
        let path = last_segment(dir.path());
        let original = fs::read(&path).expect("read");
        let mut bytes = original.clone();
        let len = BLOCK_SIZE + cut.index(bytes.len() - BLOCK_SIZE + 1);
        bytes.truncate(len);
        bytes.extend_from_slice(&garbage);
        fs::write(&path, &bytes).expect("write");
        let reader = JournalReader::open(dir.path()).expect("a tear is recoverable");
        // A record survives when every byte up to its end is as written: the "garbage" may
        // put back exactly the bytes the cut removed (seen: a record's last byte was 0 and
        // the garbage was one 0 byte), and then the record is whole, not torn. Any other
        // change before its end fails its checksum (2^-32 per slot by chance).
        let intact = bytes.iter().zip(&original).take_while(|(a, b)| a == b).count();
        let data = intact - BLOCK_SIZE;
        let in_block = (data % BLOCK_SIZE).saturating_sub(BLOCK_HEADER_SIZE) / RECORD_SIZE;
        let complete = ((data / BLOCK_SIZE) * RECORDS_PER_BLOCK + in_block) as u64;
        prop_assert_eq!(reader.len(), complete.min(records));
        for (s, e) in reader.iter().enumerate() {
            prop_assert_eq!(*e, event(s as u64));
        }
    }
}
