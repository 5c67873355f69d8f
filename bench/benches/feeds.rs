//! Feed decoding and book building: tickwire's ITCH 5.0 path against the `itchy` crate,
//! on the same generated day, in memory.
//!
//! * `itch_decode/*` — framing and decoding only. `tickwire_view` is what the book builder
//!   pays (type and length checked, fields read lazily; the timestamp and locate are read
//!   here so the work is not optimised away); `tickwire_all_fields` copies every field out
//!   (`to_data`), the like-for-like comparison with `itchy`, which parses every field into
//!   its `Message`.
//! * `itch_book/*` — decoding plus order books and events: the `ItchFileFeed` as the
//!   ingest agent drives it (through `Read`, into 256-slot sinks), and the bare builder
//!   over in-memory frames, without and with [`ItchBookBuilder::prefetch`] of the next
//!   message (which the file feed does).
//!
//! Throughput is in messages. Run with
//! `cargo bench -p tickwire-bench --bench feeds -- --measurement-time 3`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tickwire_engine::event::Event;
use tickwire_feeds::itch::{
    Frames, GeneratorConfig, ItchBookBuilder, ItchConfig, ItchFileFeed, MAX_EVENTS_PER_MESSAGE,
    decode, generate_file,
};
use tickwire_feeds::{Feed, FeedStatus, Sink};

/// The benchmark day: 200 stocks, 2 million order-flow messages (~70 MB). `itchy` 0.3
/// panics on the 2020 message types (`h`, `O`), so the generator leaves them out.
fn day() -> (Vec<u8>, u64) {
    let config = GeneratorConfig {
        seed: 2024,
        stocks: 200,
        messages: 2_000_000,
        extended_types: false,
        ..GeneratorConfig::default()
    };
    let bytes = generate_file(&config).expect("the generator writes valid messages");
    let messages = Frames::new(&bytes).count() as u64;
    (bytes, messages)
}

fn decode_only(c: &mut Criterion) {
    let (bytes, messages) = day();
    let mut group = c.benchmark_group("itch_decode");
    group.throughput(Throughput::Elements(messages));
    group.sample_size(10);

    group.bench_function("tickwire_view", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for frame in Frames::new(black_box(&bytes)) {
                let (_, frame) = frame.expect("valid frames");
                let message = decode(frame).expect("valid messages");
                let header = message.header();
                acc = acc.wrapping_add(header.timestamp ^ u64::from(header.stock_locate));
            }
            assert_ne!(acc, 0);
            acc
        })
    });

    group.bench_function("tickwire_all_fields", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for frame in Frames::new(black_box(&bytes)) {
                let (_, frame) = frame.expect("valid frames");
                black_box(decode(frame).expect("valid messages").to_data());
                n += 1;
            }
            assert_eq!(n, messages);
            n
        })
    });

    group.bench_function("itchy", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for message in itchy::MessageStream::from_reader(black_box(bytes.as_slice())) {
                black_box(message.expect("itchy parses the generated day"));
                n += 1;
            }
            assert_eq!(n, messages);
            n
        })
    });
    group.finish();
}

fn decode_and_book(c: &mut Criterion) {
    let (bytes, messages) = day();
    let mut group = c.benchmark_group("itch_book");
    group.throughput(Throughput::Elements(messages));
    group.sample_size(10);

    group.bench_function("tickwire_file_feed", |b| {
        let mut slots = vec![Event::default(); 256];
        b.iter(|| {
            let mut feed = ItchFileFeed::new("bench", bytes.as_slice(), ItchConfig::default());
            let mut events = 0;
            loop {
                let mut sink = Sink::from_slice(&mut slots);
                let status = feed.poll(&mut sink).expect("a valid day");
                events += sink.written();
                if status == FeedStatus::End {
                    break;
                }
            }
            assert_eq!(feed.messages(), messages);
            assert_eq!(feed.builder().stats().unknown_orders, 0);
            events
        })
    });

    // The bare builder, without and with the prefetch of the next message that the file
    // feed does.
    for (name, prefetch) in [
        ("tickwire_builder", false),
        ("tickwire_builder_prefetch", true),
    ] {
        group.bench_function(name, |b| {
            let mut slots = vec![Event::default(); 256];
            b.iter(|| {
                let mut builder = ItchBookBuilder::new(ItchConfig::default());
                let mut frames = Frames::new(&bytes);
                let mut events = 0;
                let mut seq = 0;
                'day: loop {
                    let mut sink = Sink::from_slice(&mut slots);
                    while sink.remaining() >= MAX_EVENTS_PER_MESSAGE {
                        let Some(frame) = frames.next() else {
                            events += sink.written();
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
                    events += sink.written();
                }
                assert_eq!(seq, messages);
                events
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = decode_only, decode_and_book
}
criterion_main!(benches);
