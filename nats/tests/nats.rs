//! The bridge against a real `nats-server` with JetStream on loopback: every event once and
//! in order with its subject and headers, read back identically through the source feed;
//! the server killed mid-stream and restarted; the server absent at start.
//!
//! Each test starts its own `nats-server` on a free port with a temporary store, except the
//! first, which uses `TICKWIRE_NATS_URL` when CI exported one. Without `nats-server` the
//! tests print "skipped: nats-server not found" and pass, except under `CI=true`.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tickwire_engine::agent::{Layout, Pipeline, ThreadSpec};
use tickwire_engine::event::{Event, Quote, Trade};
use tickwire_engine::idle::IdleStrategy;
use tickwire_engine::instrument::InstrumentRegistry;
use tickwire_engine::journal::{JournalConfig, JournalWriter, RecorderAgent};
use tickwire_engine::ring::{Publisher, RingBuilder};
use tickwire_feeds::{Feed, FeedStatus, Sink};
use tickwire_nats::config::{NatsConfig, OverflowPolicy, StreamSettings};
use tickwire_nats::source::{NatsFeed, SourceConfig};
use tickwire_nats::{NatsSink, NatsSinkHandle, nats_server_available};
use tickwire_quic::protocol::{HEADER_LEN, aligned_payload, decode_event_batch};

const WAIT: Duration = Duration::from_secs(60);

/// A `nats-server -js` child process on a loopback port.
struct Server {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        Self::start_on(free_port())
    }

    fn start_on(port: u16) -> Self {
        let store = tempfile::tempdir().expect("temp store dir");
        let mut server = Self {
            child: None,
            port,
            store,
        };
        server.restart();
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the process on the same port and store.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        wait_until("nats-server listening", || {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    /// Kills the process (SIGKILL: nothing flushed on the way out).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// False (after saying so) when the tests cannot run here; a failure under CI.
fn have_server() -> bool {
    if nats_server_available() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "nats-server not found, and CI=true requires it"
    );
    // Straight to stderr, past the harness's capture, so a plain `cargo test` shows it.
    let _ = writeln!(std::io::stderr(), "skipped: nats-server not found");
    false
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < WAIT,
            "timed out after {WAIT:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Settings with streams and subjects of their own.
fn config(url: &str, tag: &str) -> NatsConfig {
    NatsConfig {
        url: url.to_owned(),
        subject_prefix: format!("tw{tag}"),
        market_data: StreamSettings::named(&format!("MD_{tag}")),
        executions: StreamSettings::named(&format!("EXEC_{tag}")),
        alerts: StreamSettings::named(&format!("ALERTS_{tag}")),
        ack_timeout_ms: 1000,
        retry_ms: 50,
        max_batch: 16,
        ..NatsConfig::default()
    }
}

fn instruments() -> InstrumentRegistry {
    InstrumentRegistry::from_symbols(["ES.H7", "NQ", "BTC-USDT", "AAPL"])
}

/// Event `i`: runs of three of one instrument, quotes and trades in turns of six.
fn event(i: u64) -> Event {
    let mut e = Event::new(7, ((i / 3) % 4) as u32, 1_000_000 + i, 2_000_000 + i);
    if (i / 6) % 2 == 0 {
        e.set_quote(Quote {
            bid_px: 100 + i as i64,
            ask_px: 101 + i as i64,
            bid_size: 1,
            ask_size: 2,
            seq: i,
        });
    } else {
        e.set_trade(Trade {
            price: 100 + i as i64,
            size: 3,
            ..Trade::default()
        });
    }
    e
}

fn subject_of(prefix: &str, e: &Event) -> String {
    let symbol = match e.instrument {
        0 => "ES_H7",
        1 => "NQ",
        2 => "BTC-USDT",
        _ => "AAPL",
    };
    let kind = if e.quote().is_some() {
        "quote"
    } else {
        "trade"
    };
    format!("{prefix}.md.feed.{symbol}.{kind}")
}

/// Order-sensitive digest of an event sequence.
fn digest(events: &[Event]) -> u64 {
    events
        .iter()
        .fold(0u64, |h, e| h.rotate_left(7) ^ e.checksum())
}

struct Run {
    md: Publisher<Event>,
    pipeline: Pipeline,
    handle: NatsSinkHandle,
    runtime: tokio::runtime::Runtime,
}

/// A market-data ring read by the sink (and a recorder when `journal` is given).
fn start(config: NatsConfig, journal: Option<&Path>) -> Run {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut ring = RingBuilder::<Event>::new(1 << 14).expect("power of two");
    let sink_source = ring.subscriber("nats");
    let recorder = journal.map(|_| ring.subscriber("recorder"));
    let md = ring.build().expect("subscribers");
    let (agent, handle) = NatsSink::new(config, vec![sink_source], instruments(), runtime.handle())
        .expect("valid config");
    let mut thread = ThreadSpec::new("nats")
        .idle(IdleStrategy::BACKOFF)
        .agent(agent);
    if let (Some(dir), Some(recorder)) = (journal, recorder) {
        let writer = JournalWriter::open(dir, JournalConfig::default()).expect("journal");
        thread = thread.agent(RecorderAgent::new(recorder, writer));
    }
    let pipeline = Layout::new().thread(thread).spawn().expect("layout");
    Run {
        md,
        pipeline,
        handle,
        runtime,
    }
}

fn publish(run: &mut Run, range: std::ops::Range<u64>, pause_every: u64) {
    for i in range {
        let e = event(i);
        run.md.publish(|slot| *slot = e).expect("ring not halted");
        if pause_every > 0 && i % pause_every == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn finish(run: Run) -> tickwire_nats::StatsSnapshot {
    drop(run.md);
    run.pipeline
        .join_timeout(WAIT)
        .expect("sink pipeline ends cleanly");
    let stats = run.handle.finish(WAIT).expect("everything acknowledged");
    drop(run.runtime);
    stats
}

/// One stored message: subject, `Tickwire-Seq`, `Nats-Msg-Id`, events.
struct Stored {
    subject: String,
    seq: u64,
    msg_id: String,
    events: Vec<Event>,
}

/// Every message of `stream`, in stream order, read with a plain async-nats consumer.
fn read_stream(url: &str, stream: &str) -> Vec<Stored> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let client = async_nats::connect(url).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream(stream).await.expect("stream exists");
        let total = stream.info().await.expect("stream info").state.messages;
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::Config {
                ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .expect("consumer");
        let mut messages = consumer.messages().await.expect("pull");
        let mut out = Vec::new();
        while (out.len() as u64) < total {
            let m = tokio::time::timeout(WAIT, messages.next())
                .await
                .expect("message within the timeout")
                .expect("stream open")
                .expect("message");
            let h = m.headers.as_ref().expect("headers");
            let header = |name: &str| {
                h.get(name)
                    .unwrap_or_else(|| panic!("header {name} on {}: {h:?}", m.subject))
                    .as_str()
                    .to_owned()
            };
            let mut payload = aligned_payload(m.payload.len() - HEADER_LEN);
            payload.copy_from_slice(&m.payload[HEADER_LEN..]);
            let batch = decode_event_batch(&payload).expect("valid event frame");
            let seq: u64 = header("Tickwire-Seq").parse().expect("numeric sequence");
            assert_eq!(batch.first_sequence, seq, "frame and header agree");
            assert_eq!(
                header("Tickwire-Count").parse::<usize>().expect("count"),
                batch.events.len()
            );
            out.push(Stored {
                subject: m.subject.to_string(),
                seq,
                msg_id: h
                    .get(async_nats::header::NATS_MESSAGE_ID)
                    .expect("Nats-Msg-Id")
                    .to_string(),
                events: batch.events,
            });
        }
        out
    })
}

/// Checks the stream holds exactly events `0..n`, once, in order, with their subjects and
/// sequences, and returns them.
fn check_stream(url: &str, stream: &str, prefix: &str, n: u64) -> Vec<Event> {
    let stored = read_stream(url, stream);
    let mut events = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for m in &stored {
        assert_eq!(
            m.seq,
            events.len() as u64,
            "message {} starts where the previous ended",
            m.msg_id
        );
        assert!(
            ids.insert(m.msg_id.clone()),
            "message id {} twice",
            m.msg_id
        );
        for (k, e) in m.events.iter().enumerate() {
            assert_eq!(
                m.subject,
                subject_of(prefix, e),
                "subject of event {}",
                m.seq + k as u64
            );
        }
        events.extend_from_slice(&m.events);
    }
    assert_eq!(events.len() as u64, n, "event count in the stream");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(*e, event(i as u64), "event {i}");
    }
    events
}

#[test]
fn every_event_once_in_order_and_read_back_identically() {
    if !have_server() {
        return;
    }
    let own = std::env::var("TICKWIRE_NATS_URL")
        .is_err()
        .then(Server::start);
    let url = own.as_ref().map_or_else(
        || std::env::var("TICKWIRE_NATS_URL").unwrap_or_default(),
        Server::url,
    );
    let tag = format!("e{}", std::process::id());
    let n = 20_000;
    let mut run = start(config(&url, &tag), None);
    publish(&mut run, 0..n, 0);
    let stats = finish(run);
    println!("{stats}");
    assert_eq!(stats.events_in, n);
    assert_eq!(stats.events_acked, n);
    assert_eq!(stats.dropped_events + stats.overflowed_events, 0);
    let events = check_stream(&url, &format!("MD_{tag}"), &format!("tw{tag}"), n);
    let stored = read_stream(&url, &format!("MD_{tag}"));
    assert!(
        stored.iter().any(|m| m.events.len() > 1),
        "runs of one subject share a message"
    );

    // A second tickwire host reads it through the source feed.
    let mut feed = NatsFeed::open(SourceConfig {
        durable: Some("host2".into()),
        ..SourceConfig::new(&url, &format!("MD_{tag}"))
    })
    .expect("source opens");
    let mut read = Vec::new();
    let mut buf = vec![Event::default(); 256];
    let start = Instant::now();
    loop {
        let mut sink = Sink::from_slice(&mut buf);
        let status = feed.poll(&mut sink).expect("valid stream");
        read.extend_from_slice(sink.events());
        match status {
            FeedStatus::End => break,
            FeedStatus::Idle => std::thread::sleep(Duration::from_millis(1)),
            FeedStatus::Active => {}
        }
        assert!(
            start.elapsed() < WAIT,
            "source feed read {} of {n} events",
            read.len()
        );
    }
    assert_eq!(read.len() as u64, n);
    assert_eq!(digest(&read), digest(&events), "identical event sequence");
    let source = feed.stats();
    assert_eq!((source.gaps, source.duplicates), (0, 0));

    // The durable consumer resumes after what it acknowledged: nothing more to read.
    drop(feed);
    let mut again = NatsFeed::open(SourceConfig {
        durable: Some("host2".into()),
        ..SourceConfig::new(&url, &format!("MD_{tag}"))
    })
    .expect("source reopens");
    let mut sink = Sink::from_slice(&mut buf);
    wait_until("the resumed consumer to end", || {
        matches!(again.poll(&mut sink), Ok(FeedStatus::End))
    });
    assert_eq!(
        sink.written(),
        0,
        "a durable consumer resumes after its acks"
    );
}

#[test]
fn server_killed_and_restarted_mid_stream_loses_and_duplicates_nothing() {
    if !have_server() {
        return;
    }
    let mut server = Server::start();
    let url = server.url();
    let tag = "restart";
    let n = 30_000;
    let mut run = start(config(&url, tag), None);
    publish(&mut run, 0..n / 3, 100);
    wait_until("some events acknowledged", || {
        run.handle.stats().snapshot().events_acked > 1000
    });
    server.kill();
    publish(&mut run, n / 3..2 * n / 3, 100);
    wait_until("the sink to notice", || {
        !run.handle.stats().snapshot().connected
    });
    server.restart();
    publish(&mut run, 2 * n / 3..n, 100);
    let stats = finish(run);
    println!("{stats}");
    assert_eq!(stats.dropped_events + stats.overflowed_events, 0, "{stats}");
    assert_eq!(stats.events_acked, n, "{stats}");
    check_stream(&url, &format!("MD_{tag}"), &format!("tw{tag}"), n);
}

#[test]
fn unreachable_at_start_runs_on_reports_and_catches_up_from_the_journal() {
    if !have_server() {
        return;
    }
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let tag = "late";
    let journal = tempfile::tempdir().expect("journal dir");
    let n = 20_000;
    let config = NatsConfig {
        queue_messages: 64,
        policy: OverflowPolicy::CatchUp,
        journal: Some(journal.path().to_owned()),
        ..config(&url, tag)
    };
    let mut run = start(config, Some(journal.path()));
    publish(&mut run, 0..n / 2, 100);
    // The ring ran on: everything was read, the queue overflowed, and it says why.
    wait_until("the sink to read the first half", || {
        run.handle.stats().snapshot().events_in == n / 2
    });
    let stats = run.handle.stats().snapshot();
    println!("before the server: {stats}");
    assert!(!stats.connected && !stats.ready, "{stats}");
    assert!(
        !stats.last_error.is_empty(),
        "the error is reported: {stats}"
    );
    assert!(stats.overflowed_events > 0, "{stats}");
    assert_eq!(stats.events_acked, 0);

    // The server appears on the port the sink was told about (killed on drop, also when
    // an assertion fails).
    let server = Server::start_on(port);
    wait_until("the sink to connect and set up its streams", || {
        run.handle.stats().snapshot().ready
    });
    // Bursts that overflow the queue again (64 messages, one event each), each followed by
    // a pause in which the sink catches up from the journal; the next burst's first event
    // takes the sink back to the queue.
    let bursts = 5;
    let burst = n / 2 / bursts;
    for b in 0..bursts {
        let from = n / 2 + b * burst;
        publish(&mut run, from..from + burst, 0);
        wait_until("the sink to catch up from the journal", || {
            run.handle.stats().snapshot().events_acked == from + burst
        });
    }
    let stats = finish(run);
    println!("after: {stats}");
    assert_eq!(
        stats.journal_events, stats.overflowed_events,
        "every event that did not fit the queue came from the journal: {stats}"
    );
    assert!(
        stats.rejoins >= 1,
        "back to the queue after a catch-up: {stats}"
    );
    assert_eq!(stats.events_acked, n, "{stats}");
    check_stream(&url, &format!("MD_{tag}"), &format!("tw{tag}"), n);
    drop(server);
}

#[test]
fn execution_reports_and_notifications_go_to_their_own_streams() {
    use tickwire_engine::event::{ExecutionReport, Notification};
    if !have_server() {
        return;
    }
    let server = Server::start();
    let url = server.url();
    let tag = "x";
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut rings = Vec::new();
    let mut sources = Vec::new();
    for name in ["md", "exec", "notes"] {
        let mut ring = RingBuilder::<Event>::new(1024).expect("power of two");
        sources.push(ring.subscriber(name));
        rings.push(ring.build().expect("subscriber"));
    }
    let (agent, handle) =
        NatsSink::new(config(&url, tag), sources, instruments(), runtime.handle())
            .expect("valid config");
    let pipeline = Layout::new()
        .thread(
            ThreadSpec::new("nats")
                .idle(IdleStrategy::BACKOFF)
                .agent(agent),
        )
        .spawn()
        .expect("layout");
    for i in 0..100u64 {
        let md = event(i);
        rings[0].publish(|slot| *slot = md).expect("room");
        let mut report = Event::new(0, 1, i, i);
        report.set_execution_report(ExecutionReport {
            order_id: i,
            strategy: 3 + (i % 2) as u32,
            ..ExecutionReport::default()
        });
        rings[1].publish(|slot| *slot = report).expect("room");
        let mut note = Event::new(0, 1, i, i);
        note.set_notification(Notification {
            user: 9,
            order_id: i,
            ..Notification::default()
        });
        rings[2].publish(|slot| *slot = note).expect("room");
    }
    drop(rings);
    pipeline.join_timeout(WAIT).expect("sink ends");
    let stats = handle.finish(WAIT).expect("everything acknowledged");
    assert_eq!(stats.events_acked, 300, "{stats}");
    let exec = read_stream(&url, &format!("EXEC_{tag}"));
    let reports: Vec<Event> = exec.iter().flat_map(|m| m.events.clone()).collect();
    assert_eq!(reports.len(), 100);
    for (i, (m, e)) in exec.iter().zip(&reports).enumerate() {
        let report = e.execution_report().expect("an execution report");
        assert_eq!(report.order_id, i as u64, "in order");
        assert_eq!(m.subject, format!("tw{tag}.exec.{}", report.strategy));
    }
    let alerts = read_stream(&url, &format!("ALERTS_{tag}"));
    assert!(
        alerts
            .iter()
            .all(|m| m.subject == format!("tw{tag}.alerts.9"))
    );
    let notes: Vec<Event> = alerts.iter().flat_map(|m| m.events.clone()).collect();
    assert_eq!(notes.len(), 100);
    assert!(
        alerts.len() < 100,
        "consecutive notifications of one user share messages"
    );
    check_stream(&url, &format!("MD_{tag}"), &format!("tw{tag}"), 100);
    drop(server);
}
