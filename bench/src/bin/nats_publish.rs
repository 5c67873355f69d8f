//! NATS JetStream sink benchmark on 127.0.0.1, with the QUIC publisher measured in the same
//! run:
//!
//! 1. throughput into JetStream: events/s from the ring until the server acknowledged all,
//!    for one instrument (consecutive events share a message, up to 256) and for four
//!    interleaved instruments (one event per message); the QUIC path (ring -> publisher
//!    agent -> server -> client) with the same events;
//! 2. latency receive_ts -> subscriber at 10k and 100k events/s (paced): a JetStream pull
//!    consumer (delivered after the server stored the message), a core NATS subscriber on
//!    the same subjects, and the QUIC client.
//!
//! Starts its own `nats-server -js` (file storage in a temp dir) unless `--url` names one.
//! `cargo run --release -p tickwire-bench --bin nats_publish [-- --quick] [--url nats://..]`

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tickwire_bench::quic::{drain, setup, subscriber};
use tickwire_engine::agent::{Layout, Pipeline, ThreadSpec};
use tickwire_engine::clock::wall_ns;
use tickwire_engine::event::{Event, Quote};
use tickwire_engine::idle::IdleStrategy;
use tickwire_engine::instrument::InstrumentRegistry;
use tickwire_engine::latency::{Percentiles, format_ns, new_histogram};
use tickwire_engine::ring::{Publisher, RingBuilder};
use tickwire_nats::config::{NatsConfig, StreamSettings};
use tickwire_nats::{NatsSink, NatsSinkHandle};
use tickwire_quic::protocol::{HEADER_LEN, access_event_batch, aligned_payload};

fn quote(i: u64, instruments: u32) -> Event {
    let mut e = Event::new(0, (i % u64::from(instruments)) as u32, i, wall_ns());
    e.set_quote(Quote {
        bid_px: i as i64,
        ask_px: i as i64 + 1,
        bid_size: 1,
        ask_size: 1,
        seq: i,
    });
    e
}

/// Publishes `n` events flat out, or paced at `rate` events/s (yielding while early).
fn produce(md: &mut Publisher<Event>, n: u64, rate: Option<u64>, instruments: u32) {
    let start = Instant::now();
    for i in 0..n {
        if let Some(rate) = rate {
            let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
            while Instant::now() < due {
                std::thread::yield_now();
            }
        }
        let e = quote(i, instruments);
        md.publish(|slot| *slot = e).expect("not halted");
    }
}

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

struct NatsServer {
    child: Child,
    _store: tempfile::TempDir,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> (NatsServer, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let store = tempfile::tempdir().expect("store");
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server on PATH (apt-get install nats-server)");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nats-server did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (
        NatsServer {
            child,
            _store: store,
        },
        format!("nats://127.0.0.1:{port}"),
    )
}

struct Sink {
    md: Publisher<Event>,
    pipeline: Pipeline,
    handle: NatsSinkHandle,
}

fn sink(url: &str, tag: &str, runtime: &tokio::runtime::Handle) -> Sink {
    let config = NatsConfig {
        url: url.to_owned(),
        subject_prefix: format!("bench{tag}"),
        market_data: StreamSettings::named(&format!("BENCH_MD_{tag}")),
        executions: StreamSettings::named(&format!("BENCH_EXEC_{tag}")),
        alerts: StreamSettings::named(&format!("BENCH_ALERTS_{tag}")),
        queue_messages: 1 << 20,
        ..NatsConfig::default()
    };
    let mut ring = RingBuilder::<Event>::new(1 << 16).expect("power of two");
    let source = ring.subscriber("nats");
    let md = ring.build().expect("subscriber");
    let (agent, handle) =
        NatsSink::new(config, vec![source], InstrumentRegistry::default(), runtime)
            .expect("config");
    let pipeline = Layout::new()
        .thread(
            ThreadSpec::new("nats")
                .idle(IdleStrategy::BACKOFF)
                .agent(agent),
        )
        .spawn()
        .expect("layout");
    let start = Instant::now();
    while !handle
        .stats()
        .ready
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "streams not ready"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    Sink {
        md,
        pipeline,
        handle,
    }
}

/// Events/s from the first publish until every event is acknowledged; messages used.
fn nats_throughput(
    url: &str,
    tag: &str,
    n: u64,
    instruments: u32,
    rt: &tokio::runtime::Handle,
) -> (f64, u64) {
    let mut s = sink(url, tag, rt);
    let start = Instant::now();
    produce(&mut s.md, n, None, instruments);
    drop(s.md);
    s.pipeline
        .join_timeout(Duration::from_secs(300))
        .expect("sink agent ends");
    let stats = s
        .handle
        .finish(Duration::from_secs(300))
        .expect("all acknowledged");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(stats.events_acked, n, "{stats}");
    (n as f64 / secs, stats.messages_acked)
}

/// Decodes a message's frame and records each event's receive_ts -> now.
fn record(hist: &mut hdrhistogram::Histogram<u64>, payload: &[u8]) -> u64 {
    let now = wall_ns();
    let mut aligned = aligned_payload(payload.len() - HEADER_LEN);
    aligned.copy_from_slice(&payload[HEADER_LEN..]);
    let batch = access_event_batch(&aligned).expect("valid frame");
    for e in batch.events.iter() {
        let _ = hist.record(now.saturating_sub(e.receive_ts.to_native()).max(1));
    }
    batch.events.len() as u64
}

/// Latency at `rate` for `n` events: (JetStream consumer, core subscriber, achieved rate).
async fn nats_latency(
    url: &str,
    rate: u64,
    n: u64,
    instruments: u32,
) -> (Percentiles, Percentiles, f64) {
    let tag = format!("lat{rate}i{instruments}");
    let rt = tokio::runtime::Handle::current();
    let mut s = {
        let url = url.to_owned();
        let tag = tag.clone();
        tokio::task::spawn_blocking(move || sink(&url, &tag, &rt))
            .await
            .expect("sink")
    };
    let client = async_nats::connect(url).await.expect("connect");
    let js = async_nats::jetstream::new(client.clone());
    let stream = js
        .get_stream(format!("BENCH_MD_{tag}"))
        .await
        .expect("stream");
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::New,
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("pull");
    let js_reader = tokio::spawn(async move {
        let mut hist = new_histogram();
        let mut got = 0;
        while got < n {
            match tokio::time::timeout(Duration::from_secs(30), messages.next()).await {
                Ok(Some(Ok(m))) => got += record(&mut hist, &m.payload),
                _ => break,
            }
        }
        hist
    });
    let mut core = client
        .subscribe(format!("bench{tag}.md.>"))
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");
    let core_reader = tokio::spawn(async move {
        let mut hist = new_histogram();
        let mut got = 0;
        while got < n {
            match tokio::time::timeout(Duration::from_secs(30), core.next()).await {
                Ok(Some(m)) => got += record(&mut hist, &m.payload),
                _ => break,
            }
        }
        hist
    });
    let start = Instant::now();
    let mut md = s.md;
    let md = tokio::task::spawn_blocking(move || {
        produce(&mut md, n, Some(rate), instruments);
        md
    })
    .await
    .expect("producer");
    let achieved = n as f64 / start.elapsed().as_secs_f64();
    let js_hist = js_reader.await.expect("reader");
    let core_hist = core_reader.await.expect("reader");
    s.md = md;
    drop(s.md);
    tokio::task::spawn_blocking(move || {
        let _ = s.pipeline.join_timeout(Duration::from_secs(60));
        let _ = s.handle.finish(Duration::from_secs(60));
    })
    .await
    .expect("finish");
    (
        Percentiles::of(&js_hist),
        Percentiles::of(&core_hist),
        achieved,
    )
}

/// QUIC: (events/s, latency) for `n` events, flat out or paced.
async fn quic_run(n: u64, rate: Option<u64>, instruments: u32) -> (f64, Percentiles) {
    let mut s = setup("nats-cmp");
    let c = subscriber(&s).await;
    let start = Instant::now();
    let reader = tokio::spawn(drain(c, n));
    let mut md = s.md;
    let md = tokio::task::spawn_blocking(move || {
        produce(&mut md, n, rate, instruments);
        md
    })
    .await
    .expect("producer");
    let (c, got) = reader.await.expect("reader");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(got, n, "QUIC subscriber got every event");
    s.md = md;
    drop(s.md);
    s.server.shutdown();
    let _ = s.pipeline.join_timeout(Duration::from_secs(10));
    (n as f64 / secs, Percentiles::of(c.latency()))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let url_arg = args
        .iter()
        .position(|a| a == "--url")
        .and_then(|i| args.get(i + 1).cloned());
    let (_server, url) = match url_arg {
        Some(url) => (None, url),
        None => {
            let (server, url) = start_server();
            (Some(server), url)
        }
    };
    let version = Command::new("nats-server")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!("nats-server at {url} ({version}), JetStream file storage");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let n = if quick { 50_000 } else { 200_000 };
    println!("== throughput ring -> JetStream (acknowledged), {n} quotes");
    for (instruments, label) in [(1u32, "1 instrument "), (4, "4 interleaved")] {
        let (rate, messages) = nats_throughput(
            &url,
            &format!("tp{instruments}"),
            n,
            instruments,
            runtime.handle(),
        );
        println!(
            "nats {label}: {:.3} M events/s ({messages} messages, {:.1} events/message)",
            rate / 1e6,
            n as f64 / messages as f64
        );
        let (quic, _) = runtime.block_on(quic_run(n, None, instruments));
        println!(
            "quic {label}: {:.3} M events/s (one subscriber)",
            quic / 1e6
        );
    }
    let seconds = if quick { 1 } else { 3 };
    for (instruments, label) in [(4u32, "4 interleaved instruments"), (1, "1 instrument")] {
        println!("== latency receive_ts -> subscriber (paced, {label})");
        for rate in [10_000u64, 100_000] {
            let n = rate * seconds;
            let (js, core, achieved) = runtime.block_on(nats_latency(&url, rate, n, instruments));
            println!(
                "nats jetstream consumer {rate:>6} ev/s (achieved {achieved:.0}): {}",
                show(&js)
            );
            println!("nats core subscriber    {rate:>6} ev/s: {}", show(&core));
            let (_, quic) = runtime.block_on(quic_run(n, Some(rate), instruments));
            println!("quic client             {rate:>6} ev/s: {}", show(&quic));
        }
    }
}
