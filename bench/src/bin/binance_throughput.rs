//! Binance recording throughput per core, in CPU time as well as wall time (see
//! `itch_throughput.rs` for why): the whole replay through [`BinanceFeed`] with gzip, gzip
//! alone, and decoding already-decompressed text, each the best of `ROUNDS` rounds, in
//! lines per second.
//!
//! `cargo run --release -p tickwire-bench --bin binance_throughput [FILE]`; `FILE` defaults
//! to `../shared/data/binance/spot_btcusdt_20240808.gz` (the criterion bench's recording).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use tickwire_bench::best_of;
use tickwire_engine::event::Event;
use tickwire_feeds::binance::{BinanceConfig, BinanceFeed};
use tickwire_feeds::{Feed, FeedStatus, INGEST_BATCH, Sink};

/// Rounds per scenario; the best is reported (the least disturbed by other processes).
const ROUNDS: usize = 7;

fn measure(name: &str, lines: u64, mut run: impl FnMut() -> u64) {
    let (best_wall, best_cpu) = best_of(ROUNDS, &mut run);
    let rate = |ns: u64| lines as f64 / (ns as f64 / 1e9) / 1e6;
    println!(
        "{name:<12} wall {:>7.1} ms {:>6.2} M lines/s   cpu {:>7.1} ms {:>6.2} M lines/s",
        best_wall as f64 / 1e6,
        rate(best_wall),
        best_cpu as f64 / 1e6,
        rate(best_cpu),
    );
}

/// Polls `feed` to the end into `buf`-sized sinks; returns the lines read.
fn drain<R: io::BufRead + Send>(mut feed: BinanceFeed<R>, buf: &mut [Event]) -> u64 {
    loop {
        let mut sink = Sink::from_slice(buf);
        if feed.poll(&mut sink).expect("recording decodes") == FeedStatus::End {
            return feed.line();
        }
    }
}

fn main() {
    let path = std::env::args().nth(1).map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/data/binance/spot_btcusdt_20240808.gz")
        },
        PathBuf::from,
    );
    let mut text = Vec::new();
    MultiGzDecoder::new(File::open(&path).expect("recording opens"))
        .read_to_end(&mut text)
        .expect("gzip");
    let lines = text.iter().filter(|&&b| b == b'\n').count() as u64;
    println!(
        "{}: {lines} lines, {} bytes of text; best of {ROUNDS} rounds",
        path.display(),
        text.len()
    );
    let mut buf = vec![Event::default(); INGEST_BATCH];
    measure("replay", lines, || {
        let feed = BinanceFeed::open(&path, BinanceConfig::default()).expect("recording opens");
        drain(feed, &mut buf)
    });
    measure("gunzip_only", lines, || {
        let mut gz = MultiGzDecoder::new(File::open(&path).expect("recording opens"));
        io::copy(&mut gz, &mut io::sink()).expect("gzip")
    });
    measure("decode_only", lines, || {
        let feed = BinanceFeed::from_reader("memory", &text[..], BinanceConfig::default());
        drain(feed, &mut buf)
    });
}
