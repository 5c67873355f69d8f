//! Journal throughput: appending events (the recorder's path), opening with full checksum
//! verification, and reading sequentially and at random (the replay feed's path).
//!
//! Everything runs against the page cache (`FsyncPolicy::Never`, files in a temp dir):
//! these are CPU and memory-bandwidth figures, not disk figures. Run with
//! `cargo bench -p tickwire-bench --bench journal`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tickwire_engine::event::Event;
use tickwire_engine::journal::{FsyncPolicy, JournalConfig, JournalReader, JournalWriter};
use tickwire_feeds::synthetic::{SyntheticConfig, SyntheticFeed};
use tickwire_feeds::{Feed, Sink};

/// Events per iteration: 1 M events = 68 MB of journal, large enough to roll segments and
/// to dwarf per-iteration setup.
const EVENTS: usize = 1 << 20;

fn events() -> (Vec<Event>, JournalConfig) {
    let mut feed = SyntheticFeed::new(SyntheticConfig {
        events: Some(EVENTS as u64),
        rate: 1_000_000,
        ..SyntheticConfig::default()
    });
    let mut events = vec![Event::default(); EVENTS];
    let mut sink = Sink::from_slice(&mut events);
    feed.poll(&mut sink).expect("synthetic never fails");
    let config = JournalConfig {
        segment_bytes: 32 << 20, // 8 segments per iteration
        fsync: FsyncPolicy::Never,
        instruments: feed.instruments().clone(),
        ..JournalConfig::default()
    };
    (events, config)
}

fn journal(c: &mut Criterion) {
    let (events, config) = events();
    let mut group = c.benchmark_group("journal");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));

    group.bench_function("write_append_each", |b| {
        b.iter_batched(
            || tempfile::tempdir().expect("temp dir"),
            |dir| {
                let mut writer =
                    JournalWriter::open(dir.path(), config.clone()).expect("open writer");
                for event in &events {
                    writer.append(event).expect("append");
                }
                writer.close().expect("close");
                dir // dropped (deleted) outside the measurement
            },
            BatchSize::PerIteration,
        )
    });

    let dir = tempfile::tempdir().expect("temp dir");
    let mut writer = JournalWriter::open(dir.path(), config.clone()).expect("open writer");
    writer.append_batch(&events).expect("append");
    writer.close().expect("close");

    group.bench_function("open_verify_all", |b| {
        b.iter(|| black_box(JournalReader::open(dir.path()).expect("open").len()))
    });

    let reader = JournalReader::open(dir.path()).expect("open");
    group.bench_function("read_sequential", |b| {
        b.iter(|| {
            // Touch every event: sum receive times and instrument ids.
            reader.iter().fold(0u64, |acc, e| {
                acc.wrapping_add(e.receive_ts ^ u64::from(e.instrument))
            })
        })
    });

    group.bench_function("read_random_get", |b| {
        b.iter(|| {
            let mut probe = 0x2545_f491_4f6c_dd1du64;
            let mut acc = 0u64;
            for _ in 0..EVENTS {
                probe ^= probe << 13;
                probe ^= probe >> 7;
                probe ^= probe << 17;
                let sequence = probe % EVENTS as u64;
                acc = acc.wrapping_add(reader.get(sequence).map_or(0, |e| e.receive_ts));
            }
            acc
        })
    });
    group.finish();
}

criterion_group!(benches, journal);
criterion_main!(benches);
