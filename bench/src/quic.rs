//! QUIC publishing on 127.0.0.1, with a bare quinn stream carrying the same frames
//! measured in the same run (used by the `quic_publish` binary and `tickwire bench`):
//!
//! 1. events/s to one subscriber (ring -> publisher agent -> server -> client), and the same
//!    encoded frames over a bare quinn unidirectional stream (read, validated, decoded);
//! 2. fan-out to 1, 10 and 100 subscribers (per-subscriber and aggregate events/s);
//! 3. receive-to-subscriber latency p50/p99/p99.9 at 10k and 100k events/s (paced), and the
//!    bare stream paced the same way.
//!
//! Paced runs stamp each event's `receive_ts` with its *scheduled* send time (the run's
//! start plus `i / rate`), not the time it was actually sent, so that a stall delays the
//! events behind it in the histogram instead of hiding them (no coordinated omission).
//!
//! Every function here must run inside a multi-threaded tokio runtime.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use quinn::rustls;
use quinn::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tickwire_engine::agent::{Layout, Pipeline, ThreadSpec};
use tickwire_engine::clock::wall_ns;
use tickwire_engine::event::{Event, Quote};
use tickwire_engine::idle::IdleStrategy;
use tickwire_engine::latency::new_histogram;
use tickwire_engine::ring::{Publisher, RingBuilder};
use tickwire_quic::client::{Client, ClientConfig, Delivery, connect_raw};
use tickwire_quic::fanout::{FanoutConfig, PublisherAgent};
use tickwire_quic::protocol::{
    ALPN, ChannelKind, EventBatch, HEADER_LEN, Policy, SubscribeRequest, access_event_batch,
    aligned_payload, decode_header, encode_event_frame,
};
use tickwire_quic::server::{Entitlement, Limits, Server, ServerConfig, TokenEntry};
use tickwire_quic::{SOCKET_BUFFER, bind_udp};

const TOKEN: &str = "bench";
/// Instruments the quotes cycle through.
pub const INSTRUMENTS: u32 = 4;

/// Quote `i`, received at `receive_ns` (ns since the Unix epoch).
pub fn quote(i: u64, receive_ns: u64) -> Event {
    let mut e = Event::new(0, (i % u64::from(INSTRUMENTS)) as u32, i, receive_ns);
    e.set_quote(Quote {
        bid_px: i as i64,
        ask_px: i as i64 + 1,
        bid_size: 1,
        ask_size: 1,
        seq: i,
    });
    e
}

/// A market-data ring, the publisher agent on its own thread and a server on an ephemeral
/// loopback port (one bench token entitled to all market data).
#[derive(Debug)]
pub struct Setup {
    /// The ring's writer.
    pub md: Publisher<Event>,
    /// The server.
    pub server: Server,
    /// The publisher's thread.
    pub pipeline: Pipeline,
    _dir: std::path::PathBuf,
}

/// Starts a [`Setup`]; `tag` names its certificate directory.
pub fn setup(tag: &str) -> Setup {
    let mut ring = RingBuilder::<Event>::new(1 << 16).expect("power of two");
    let source = ring.subscriber("quic-publisher");
    let md = ring.build().expect("subscriber");
    let (agent, handle) = PublisherAgent::new(vec![source], FanoutConfig::default());
    let pipeline = Layout::new()
        .thread(
            ThreadSpec::new("publisher")
                .idle(IdleStrategy::BACKOFF)
                .agent(agent),
        )
        .spawn()
        .expect("layout");
    let dir =
        std::env::temp_dir().join(format!("tickwire-quic-bench-{}-{tag}", std::process::id()));
    let config = ServerConfig {
        bind: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.clone(),
        tokens: vec![TokenEntry::new(
            "bench",
            TOKEN,
            vec![Entitlement::new(ChannelKind::MarketData, ["*"])],
        )],
        limits: Limits {
            queue_frames: 8192,
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    let server = Server::start(config, handle).expect("server");
    Setup {
        md,
        server,
        pipeline,
        _dir: dir,
    }
}

/// A client of `s` subscribed to all market data (policy disconnect, no reconnect).
pub async fn subscriber(s: &Setup) -> Client {
    let mut config = ClientConfig::new(
        s.server.local_addr(),
        s.server.certificate_der().to_vec(),
        TOKEN,
    );
    config.subscriptions.push(SubscribeRequest {
        id: 1,
        kind: ChannelKind::MarketData,
        policy: Policy::Disconnect,
        patterns: vec!["*".into()],
    });
    config.reconnect = false;
    let mut c = Client::connect(config).await.expect("connect");
    loop {
        match tokio::time::timeout(Duration::from_secs(10), c.next()).await {
            Ok(Some(Delivery::Subscribed { .. })) => return c,
            Ok(Some(_)) => {}
            _ => panic!("no subscription"),
        }
    }
}

/// Reads deliveries until `n` events arrived; returns events seen.
pub async fn drain(mut c: Client, n: u64) -> (Client, u64) {
    let mut got = 0u64;
    let _ = tokio::time::timeout(Duration::from_secs(120), async {
        while got < n {
            match c.next().await {
                Some(Delivery::Batch(b)) => got += b.events.len() as u64,
                Some(Delivery::Disconnected { code, reason }) => {
                    eprintln!("subscriber disconnected: {code:?} {reason}");
                    return;
                }
                Some(_) => {}
                None => return,
            }
        }
    })
    .await;
    (c, got)
}

/// Publishes `n` events as fast as the ring takes them, stamped with the wall clock, or
/// paced at `rate` events/s and stamped with their scheduled send time.
fn produce(md: &mut Publisher<Event>, n: u64, rate: Option<u64>) {
    let (start, start_wall) = (Instant::now(), wall_ns());
    for i in 0..n {
        let receive_ns = if let Some(rate) = rate {
            let offset = i * 1_000_000_000 / rate;
            let due = start + Duration::from_nanos(offset);
            // Sleep while the next send is far off (2 cores: never spin for long), then
            // yield up to it.
            loop {
                let now = Instant::now();
                if now >= due {
                    break;
                }
                if due - now > Duration::from_micros(200) {
                    std::thread::sleep(due - now - Duration::from_micros(100));
                } else {
                    std::thread::yield_now();
                }
            }
            start_wall + offset
        } else {
            wall_ns()
        };
        let e = quote(i, receive_ns);
        md.publish(|slot| *slot = e).expect("not halted");
    }
}

/// `n` events through ring -> publisher agent -> server -> `subscribers` clients, flat out;
/// returns (events/s per subscriber, subscribers that received all `n`).
pub async fn fan_out(subscribers: usize, n: u64) -> (f64, u64) {
    let mut s = setup(&format!("fan{subscribers}"));
    let mut clients = Vec::new();
    for _ in 0..subscribers {
        clients.push(subscriber(&s).await);
    }
    let start = Instant::now();
    let readers: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(drain(c, n)))
        .collect();
    let mut md = s.md;
    let md = tokio::task::spawn_blocking(move || {
        produce(&mut md, n, None);
        md
    })
    .await
    .expect("producer");
    let mut complete = 0;
    for r in readers {
        let (_, got) = r.await.expect("reader");
        if got == n {
            complete += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    s.md = md;
    drop(s.md);
    s.server.shutdown();
    let _ = s.pipeline.join_timeout(Duration::from_secs(10));
    (n as f64 / secs, complete)
}

/// Receive-to-subscriber latency of one subscriber at `rate` events/s for `seconds`, from
/// each event's scheduled send time.
pub async fn latency(rate: u64, seconds: f64) -> Histogram<u64> {
    let mut s = setup(&format!("lat{rate}"));
    let c = subscriber(&s).await;
    let n = ((rate as f64 * seconds) as u64).max(1);
    let reader = tokio::spawn(drain(c, n));
    let mut md = s.md;
    let md = tokio::task::spawn_blocking(move || {
        produce(&mut md, n, Some(rate));
        md
    })
    .await
    .expect("producer");
    let (c, _) = reader.await.expect("reader");
    s.md = md;
    drop(s.md);
    s.server.shutdown();
    let _ = s.pipeline.join_timeout(Duration::from_secs(10));
    c.latency().clone()
}

/// Receive-to-subscriber latency over `subscribers` subscribers at `rate` events/s for
/// `seconds` (from scheduled send times): the merged histogram, and how many subscribers
/// got every event.
pub async fn fan_out_latency(
    subscribers: usize,
    rate: u64,
    seconds: f64,
) -> (Histogram<u64>, usize) {
    let mut s = setup(&format!("fanlat{subscribers}"));
    let mut clients = Vec::new();
    for _ in 0..subscribers {
        clients.push(subscriber(&s).await);
    }
    let n = ((rate as f64 * seconds) as u64).max(1);
    let readers: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(drain(c, n)))
        .collect();
    let mut md = s.md;
    let md = tokio::task::spawn_blocking(move || {
        produce(&mut md, n, Some(rate));
        md
    })
    .await
    .expect("producer");
    let mut merged = new_histogram();
    let mut complete = 0;
    for r in readers {
        let (c, got) = r.await.expect("reader");
        complete += usize::from(got == n);
        merged.add(c.latency()).expect("same histogram bounds");
    }
    s.md = md;
    drop(s.md);
    s.server.shutdown();
    let _ = s.pipeline.join_timeout(Duration::from_secs(10));
    (merged, complete)
}

/// The bare baseline of [`fan_out_latency`]: a quinn server with `subscribers`
/// connections, one writer task each, fed the same one-event frames (stamped when due)
/// through a broadcast channel of shared `Bytes`; readers validate and decode every frame.
/// A writer that falls more than the channel's capacity behind loses frames (its reader
/// then counts as incomplete).
pub async fn bare_fan_out_latency(
    subscribers: usize,
    rate: u64,
    seconds: f64,
) -> (Histogram<u64>, usize) {
    let (endpoint, cert) = bare_server();
    let addr = endpoint.local_addr().expect("addr");
    let n = ((rate as f64 * seconds) as u64).max(1);
    let (tx, _) = tokio::sync::broadcast::channel::<Bytes>(1 << 16);
    let accept_tx = tx.clone();
    let acceptor = tokio::spawn(async move {
        let mut writers = Vec::new();
        for _ in 0..subscribers {
            let conn = endpoint
                .accept()
                .await
                .expect("incoming")
                .await
                .expect("conn");
            let mut send = conn.open_uni().await.expect("uni");
            let mut rx = accept_tx.subscribe();
            writers.push(tokio::spawn(async move {
                loop {
                    let frame = match rx.recv().await {
                        Ok(frame) => frame,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    };
                    if send.write_chunk(frame).await.is_err() {
                        return;
                    }
                }
                let _ = send.finish();
                conn.closed().await;
            }));
        }
        (endpoint, writers)
    });
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let conn = connect_raw(addr, "localhost", &cert)
            .await
            .expect("connect");
        readers.push(tokio::spawn(async move {
            let mut hist = new_histogram();
            let mut got = 0u64;
            let Ok(mut recv) = conn.accept_uni().await else {
                return (hist, got);
            };
            let mut header = [0u8; HEADER_LEN];
            while got < n && recv.read_exact(&mut header).await.is_ok() {
                let (_, len) = decode_header(&header, 1 << 24).expect("header");
                let mut payload = aligned_payload(len);
                recv.read_exact(payload.as_mut_slice())
                    .await
                    .expect("payload");
                let now = wall_ns();
                let batch = access_event_batch(&payload).expect("valid");
                for e in batch.events.iter() {
                    let ev: Event =
                        rkyv::deserialize::<Event, rkyv::rancor::Error>(e).expect("event");
                    let _ = hist.record(now.saturating_sub(ev.receive_ts).max(1));
                    got += 1;
                }
            }
            conn.close(0u32.into(), b"done");
            (hist, got)
        }));
    }
    let (endpoint, writers) = acceptor.await.expect("acceptor");
    tokio::task::spawn_blocking(move || {
        let (start, start_wall) = (Instant::now(), wall_ns());
        for i in 0..n {
            let offset = i * 1_000_000_000 / rate;
            let due = start + Duration::from_nanos(offset);
            while Instant::now() < due {
                std::thread::yield_now();
            }
            let e = quote(i, start_wall + offset);
            let frame = encode_event_frame(&EventBatch {
                first_sequence: i + 1,
                key: e.instrument,
                channel: 1,
                flags: 0,
                events: vec![e],
            });
            let _ = tx.send(frame);
        }
        drop(tx);
    })
    .await
    .expect("producer");
    let mut merged = new_histogram();
    let mut complete = 0;
    for r in readers {
        let (hist, got) = tokio::time::timeout(Duration::from_secs(120), r)
            .await
            .expect("reader in time")
            .expect("reader");
        complete += usize::from(got == n);
        merged.add(&hist).expect("same histogram bounds");
    }
    for w in writers {
        w.abort();
    }
    endpoint.close(0u32.into(), b"done");
    (merged, complete)
}

/// A bare quinn endpoint with the same TLS (self-signed, ring, TLS 1.3, same ALPN).
fn bare_server() -> (quinn::Endpoint, Vec<u8>) {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let cert: CertificateDer<'static> = generated.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        generated.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("cert");
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).expect("quic tls");
    // The same socket buffers as tickwire's endpoints (and `connect_raw`'s client).
    let socket = bind_udp("127.0.0.1:0".parse().expect("addr"), SOCKET_BUFFER).expect("bind");
    let endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(quinn::ServerConfig::with_crypto(Arc::new(quic))),
        socket,
        quinn::default_runtime().expect("inside a tokio runtime"),
    )
    .expect("endpoint");
    (endpoint, cert.as_ref().to_vec())
}

/// Bare stream: the server writes `frames` (paced per frame if `rate`, each stamped with its
/// scheduled send time), the reader validates every archive; returns (events/s, latency
/// histogram, empty when not paced).
pub async fn bare(
    frames: Vec<Bytes>,
    events_per_frame: u64,
    rate: Option<u64>,
) -> (f64, Histogram<u64>) {
    let (endpoint, cert) = bare_server();
    let addr = endpoint.local_addr().expect("addr");
    let writer = tokio::spawn(async move {
        let conn = endpoint
            .accept()
            .await
            .expect("incoming")
            .await
            .expect("conn");
        let mut send = conn.open_uni().await.expect("uni");
        let (start, start_wall) = (Instant::now(), wall_ns());
        for (i, frame) in frames.into_iter().enumerate() {
            if let Some(rate) = rate {
                let offset = i as u64 * 1_000_000_000 / rate;
                let due = start + Duration::from_nanos(offset);
                tokio::time::sleep_until(due.into()).await;
                // Stamp the scheduled send time into the one event (receive_ts at offset 16).
                let mut b = frame.to_vec();
                b[HEADER_LEN + 16..HEADER_LEN + 24]
                    .copy_from_slice(&(start_wall + offset).to_le_bytes());
                send.write_all(&b).await.expect("write");
            } else {
                send.write_chunk(frame).await.expect("write");
            }
        }
        let _ = send.finish();
        conn.closed().await;
    });
    let conn = connect_raw(addr, "localhost", &cert)
        .await
        .expect("connect");
    let mut recv = conn.accept_uni().await.expect("uni");
    let mut hist = new_histogram();
    let start = Instant::now();
    let mut events = 0u64;
    loop {
        let mut header = [0u8; HEADER_LEN];
        if recv.read_exact(&mut header).await.is_err() {
            break;
        }
        let (_, len) = decode_header(&header, 1 << 24).expect("header");
        let mut payload = aligned_payload(len);
        recv.read_exact(payload.as_mut_slice())
            .await
            .expect("payload");
        let now = wall_ns();
        let batch = access_event_batch(&payload).expect("valid");
        for e in batch.events.iter() {
            let ev: Event = rkyv::deserialize::<Event, rkyv::rancor::Error>(e).expect("event");
            if rate.is_some() {
                let _ = hist.record(now.saturating_sub(ev.receive_ts).max(1));
            }
        }
        events += events_per_frame;
    }
    let secs = start.elapsed().as_secs_f64();
    conn.close(0u32.into(), b"done");
    let _ = writer.await;
    (events as f64 / secs, hist)
}

/// `n` quotes encoded as frames of `per_frame` events, as the publisher would send them.
pub fn frames_of(n: u64, per_frame: u64) -> Vec<Bytes> {
    (0..n / per_frame)
        .map(|f| {
            encode_event_frame(&EventBatch {
                first_sequence: f * per_frame + 1,
                key: 0,
                channel: 1,
                flags: 0,
                events: (0..per_frame)
                    .map(|i| quote(f * per_frame + i, wall_ns()))
                    .collect(),
            })
        })
        .collect()
}
