//! Binance recording throughput: lines per second through [`BinanceFeed`], gzip
//! decompression included, on one core, into a 256-event sink (the ingest agent's batch).
//!
//! Reads `../shared/data/binance/spot_btcusdt_20240808.gz` (41,249 lines); prints a notice
//! and measures nothing when the data directory is absent.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flate2::read::MultiGzDecoder;
use tickwire_engine::event::Event;
use tickwire_feeds::binance::{BinanceConfig, BinanceFeed};
use tickwire_feeds::{Feed, FeedStatus, INGEST_BATCH, Sink};

fn recording() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/binance/spot_btcusdt_20240808.gz");
    path.is_file().then_some(path)
}

/// Decodes the whole file; returns (lines, events).
fn replay(path: &Path, buf: &mut [Event]) -> (u64, u64) {
    let mut feed = BinanceFeed::open(path, BinanceConfig::default()).expect("recording opens");
    let mut events = 0;
    loop {
        let mut sink = Sink::from_slice(buf);
        let status = feed.poll(&mut sink).expect("recording decodes");
        events += sink.written() as u64;
        if status == FeedStatus::End {
            return (feed.line(), events);
        }
    }
}

fn binance(c: &mut Criterion) {
    let Some(path) = recording() else {
        eprintln!("binance bench SKIPPED: ../shared/data/binance is absent");
        return;
    };
    let mut buf = vec![Event::default(); INGEST_BATCH];
    let (lines, events) = replay(&path, &mut buf);
    eprintln!(
        "{}: {lines} lines, {events} events per pass",
        path.display()
    );
    let mut group = c.benchmark_group("binance");
    group.throughput(Throughput::Elements(lines));
    group.sample_size(20);
    group.bench_function("spot_btcusdt_lines", |b| {
        b.iter(|| replay(&path, &mut buf));
    });
    // The two halves: gzip alone, and decoding already-decompressed text.
    let mut text = Vec::new();
    MultiGzDecoder::new(File::open(&path).expect("recording opens"))
        .read_to_end(&mut text)
        .expect("gzip");
    group.bench_function("spot_btcusdt_gunzip_only", |b| {
        b.iter(|| {
            let mut gz = MultiGzDecoder::new(File::open(&path).expect("recording opens"));
            io::copy(&mut gz, &mut io::sink()).expect("gzip")
        });
    });
    group.bench_function("spot_btcusdt_decode_only", |b| {
        b.iter(|| {
            let mut feed = BinanceFeed::from_reader("memory", &text[..], BinanceConfig::default());
            loop {
                let mut sink = Sink::from_slice(&mut buf);
                if feed.poll(&mut sink).expect("recording decodes") == FeedStatus::End {
                    return feed.line();
                }
            }
        });
    });
    group.finish();
}

criterion_group!(benches, binance);
criterion_main!(benches);
