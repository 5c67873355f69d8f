//! End-to-end QUIC publishing benchmark on 127.0.0.1, with a bare quinn stream carrying the
//! same frames measured in the same run (see `tickwire_bench::quic`):
//!
//! 1. events/s to one subscriber (ring -> publisher agent -> server -> client), and the same
//!    encoded frames over a bare quinn unidirectional stream (read, validated, decoded);
//! 2. fan-out to 1, 10 and 100 subscribers (per-subscriber and aggregate events/s);
//! 3. receive-to-subscriber latency p50/p99/p99.9 at 10k and 100k events/s (paced, from
//!    scheduled send times), and the bare stream paced the same way;
//! 4. delivery latency with 10 and 100 subscribers at 100k events/s (paced), and a bare
//!    quinn server fanning the same one-event frames out to as many connections (one
//!    writer task per connection fed by a `tokio::sync::broadcast` of shared `Bytes`).
//!
//! `cargo run --release -p tickwire-bench --bin quic_publish [-- --quick] [--fanout-latency-only]`

use tickwire_bench::quic::{
    INSTRUMENTS, bare, bare_fan_out_latency, fan_out, fan_out_latency, frames_of, latency,
};
use tickwire_engine::latency::{Percentiles, format_ns};

fn show(p: &Percentiles) -> String {
    format!(
        "p50 {} p99 {} p99.9 {} max {} (n={})",
        format_ns(p.p50),
        format_ns(p.p99),
        format_ns(p.p999),
        format_ns(p.max),
        p.count
    )
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let fanout_latency_only = std::env::args().any(|a| a == "--fanout-latency-only");
    runtime.block_on(async {
        if fanout_latency_only {
            let seconds = if quick { 1.0 } else { 3.0 };
            let rate = 100_000u64;
            println!(
                "== delivery latency receive_ts -> subscriber, {rate} ev/s paced for {seconds} s \
                 (server and every subscriber in this process, 2 runtime workers)"
            );
            for subs in [10usize, 100] {
                let (h, complete) = fan_out_latency(subs, rate, seconds).await;
                println!(
                    "tickwire {subs:>3} subscribers: {} ({complete}/{subs} complete)",
                    show(&Percentiles::of(&h))
                );
                let (h, complete) = bare_fan_out_latency(subs, rate, seconds).await;
                println!(
                    "bare     {subs:>3} subscribers: {} ({complete}/{subs} complete)",
                    show(&Percentiles::of(&h))
                );
            }
            return;
        }
        let n = if quick { 200_000 } else { 1_000_000 };
        println!("== throughput to one subscriber ({n} quotes, {INSTRUMENTS} instruments)");
        let (tw, complete) = fan_out(1, n).await;
        // The publisher's frames at full speed hold ~256 events per channel (1024-event
        // batches over 4 instruments); the bare stream carries frames of that size.
        let (bare_rate, _) = bare(frames_of(n, 256), 256, None).await;
        println!(
            "tickwire (ring->agent->server->client): {:.2} M events/s ({complete}/1 complete)",
            tw / 1e6
        );
        println!("bare quinn stream, same frames:         {:.2} M events/s", bare_rate / 1e6);
        println!("ratio tickwire/bare: {:.2}", tw / bare_rate);

        println!("== fan-out");
        for subs in [1usize, 10, 100] {
            let per = if quick { 20_000 } else { 100_000 };
            let (rate, complete) = fan_out(subs, per).await;
            println!(
                "{subs:>3} subscribers: {:.3} M events/s each, {:.2} M deliveries/s total ({complete}/{subs} complete)",
                rate / 1e6,
                rate * subs as f64 / 1e6
            );
        }

        println!("== latency receive_ts -> subscriber (paced, 1 subscriber)");
        let seconds = if quick { 1.0 } else { 3.0 };
        for rate in [10_000u64, 100_000] {
            let p = Percentiles::of(&latency(rate, seconds).await);
            println!("tickwire {:>6} ev/s: {}", rate, show(&p));
            let (_, bp) = bare(frames_of(rate * seconds as u64, 1), 1, Some(rate)).await;
            let bp = Percentiles::of(&bp);
            println!("bare     {:>6} ev/s: {}", rate, show(&bp));
        }
    });
}
