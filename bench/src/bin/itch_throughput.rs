//! ITCH throughput per core, in CPU time as well as wall time: on a shared machine the
//! wall-clock figures of `benches/feeds.rs` count the time other processes held the core,
//! while the thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`) counts only ours.
//!
//! Runs each scenario of `benches/feeds.rs` (same generated day) `ROUNDS` times and prints
//! the best round in messages per second of wall time and of CPU time, with `itchy` in the
//! same run. `cargo run --release -p tickwire-bench --bin itch_throughput [FILTER]`: with
//! `FILTER`, only the scenarios whose name contains it run (e.g. `book/` under a profiler).

use std::hint::black_box;

use tickwire_bench::best_of;
use tickwire_engine::event::Event;
use tickwire_feeds::itch::{
    Frames, GeneratorConfig, ItchBookBuilder, ItchConfig, ItchFileFeed, MAX_EVENTS_PER_MESSAGE,
    decode, generate_file,
};
use tickwire_feeds::{Feed, FeedStatus, Sink};

/// Rounds per scenario; the best is reported (the least disturbed by other processes).
const ROUNDS: usize = 5;

fn measure(name: &str, messages: u64, mut run: impl FnMut() -> u64) {
    if let Some(filter) = std::env::args().nth(1) {
        if !name.contains(&filter) {
            return;
        }
    }
    let (best_wall, best_cpu) = best_of(ROUNDS, &mut run);
    let rate = |ns: u64| messages as f64 / (ns as f64 / 1e9) / 1e6;
    println!(
        "{name:<28} wall {:>7.1} ms {:>7.1} M msg/s   cpu {:>7.1} ms {:>7.1} M msg/s",
        best_wall as f64 / 1e6,
        rate(best_wall),
        best_cpu as f64 / 1e6,
        rate(best_cpu),
    );
}

fn main() {
    let config = GeneratorConfig {
        seed: 2024,
        stocks: 200,
        messages: 2_000_000,
        extended_types: false,
        ..GeneratorConfig::default()
    };
    let bytes = generate_file(&config).expect("the generator writes valid messages");
    let messages = Frames::new(&bytes).count() as u64;
    println!(
        "day: {messages} messages, {} bytes, {} stocks; best of {ROUNDS} rounds",
        bytes.len(),
        config.stocks
    );

    measure("decode/tickwire_view", messages, || {
        let mut acc = 0u64;
        for frame in Frames::new(black_box(&bytes)) {
            let (_, frame) = frame.expect("valid frames");
            let header = decode(frame).expect("valid messages").header();
            acc = acc.wrapping_add(header.timestamp ^ u64::from(header.stock_locate));
        }
        acc
    });
    measure("decode/tickwire_all_fields", messages, || {
        let mut n = 0;
        for frame in Frames::new(black_box(&bytes)) {
            let (_, frame) = frame.expect("valid frames");
            black_box(decode(frame).expect("valid messages").to_data());
            n += 1;
        }
        n
    });
    measure("decode/itchy", messages, || {
        let mut n = 0;
        for message in itchy::MessageStream::from_reader(black_box(bytes.as_slice())) {
            black_box(message.expect("itchy parses the generated day"));
            n += 1;
        }
        n
    });
    let mut slots = vec![Event::default(); 256];
    measure("book/tickwire_file_feed", messages, || {
        let mut feed = ItchFileFeed::new("bench", bytes.as_slice(), ItchConfig::default());
        let mut events = 0;
        loop {
            let mut sink = Sink::from_slice(&mut slots);
            let status = feed.poll(&mut sink).expect("a valid day");
            events += sink.written() as u64;
            if status == FeedStatus::End {
                break;
            }
        }
        assert_eq!(feed.messages(), messages);
        events
    });
    // The bare builder over in-memory frames, without and with the prefetch of the next
    // message's order that the file feed does.
    for (name, prefetch) in [
        ("book/tickwire_builder", false),
        ("book/tickwire_builder_prefetch", true),
    ] {
        measure(name, messages, || {
            let mut builder = ItchBookBuilder::new(ItchConfig::default());
            let mut frames = Frames::new(&bytes);
            let (mut events, mut seq) = (0, 0);
            'day: loop {
                let mut sink = Sink::from_slice(&mut slots);
                while sink.remaining() >= MAX_EVENTS_PER_MESSAGE {
                    let Some(frame) = frames.next() else {
                        events += sink.written() as u64;
                        break 'day;
                    };
                    let (_, frame) = frame.expect("valid frames");
                    if prefetch {
                        if let Some(Ok((_, next))) = frames.clone().next() {
                            builder.prefetch(next);
                        }
                    }
                    seq += 1;
                    builder
                        .apply(&decode(frame).expect("valid"), seq, 0, &mut sink)
                        .expect("a valid day");
                }
                events += sink.written() as u64;
            }
            events
        });
    }
}
