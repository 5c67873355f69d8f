//! `tickwire run` end to end, as a child process: a real QUIC subscriber on loopback
//! counts what it receives against the journal the service wrote; SIGTERM drains cleanly,
//! during a live run and during a replay of a recorded journal; bad configurations are
//! refused before anything starts, each with its message.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use tickwire_engine::event::Event;
use tickwire_engine::journal::JournalReader;
use tickwire_quic::client::{Client, ClientConfig, Delivery};
use tickwire_quic::protocol::{ChannelId, ChannelKind, ErrorCode, Policy, SubscribeRequest};

mod support;
use support::{ServiceChild, tickwire};

/// Start-up includes creating the certificate and, on a fresh clone, nothing else: the
/// binary is built by `support::binary` before the child starts.
const START: Duration = Duration::from_secs(60);
const EXIT: Duration = Duration::from_secs(60);

fn free_udp_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("an ephemeral UDP port")
}

fn free_tcp_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("an ephemeral TCP port")
}

/// A configuration for a test service in `dir`: ephemeral ports, `rate` synthetic
/// events/s (or `input`), everything else the embedded default.
fn write_config(dir: &Path, feed: &str, quic: SocketAddr, metrics: SocketAddr) -> String {
    let path = dir.join("tickwire.toml");
    let text = format!(
        "data_dir = {data:?}\n\n[feed]\n{feed}\n\n[quic]\nbind = \"{quic}\"\n\n[metrics]\nbind = \"{metrics}\"\n\n[pipeline]\nidle = \"backoff\"\n",
        data = dir.join("data").to_str().expect("UTF-8 temp path"),
    );
    std::fs::write(&path, text).expect("write the config");
    path.to_str().expect("UTF-8 temp path").to_owned()
}

/// The events of this run's journal, per market-data channel (instrument), in order: the
/// channel sequence `n` is the `n`-th (from 1) of that instrument.
fn journal_channels(dir: &Path) -> HashMap<u32, Vec<Event>> {
    let reader = JournalReader::open(dir).expect("the service's journal opens");
    let mut channels: HashMap<u32, Vec<Event>> = HashMap::new();
    for event in reader.iter() {
        channels.entry(event.instrument).or_default().push(*event);
    }
    channels
}

#[test]
fn a_quic_subscriber_gets_every_event_the_journal_holds_and_sigterm_drains() {
    let dir = tempfile::tempdir().expect("temp dir");
    let quic = free_udp_port();
    let config = write_config(
        dir.path(),
        "rate = 20000\ninstruments = 4",
        quic,
        free_tcp_port(),
    );
    let mut service = ServiceChild::start(&["run", "--config", &config]);
    service.wait_for_line("running;", START);

    let data = dir.path().join("data");
    let cert = std::fs::read(data.join("quic/cert.der")).expect("the service wrote its cert");
    let token = std::fs::read_to_string(data.join("quic/token")).expect("and its token");
    let mut client_config = ClientConfig::new(quic, cert, token.trim());
    client_config.reconnect = false;
    client_config.subscriptions = [
        ChannelKind::MarketData,
        ChannelKind::ExecutionReports,
        ChannelKind::Notifications,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, kind)| SubscribeRequest {
        id: i as u32 + 1,
        kind,
        policy: Policy::Disconnect,
        patterns: vec!["*".into()],
    })
    .collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let received = runtime.block_on(async {
        let mut client = tokio::time::timeout(START, Client::connect(client_config))
            .await
            .expect("connect in time")
            .expect("the service accepts the default token");
        // Per channel: (first sequence seen, events in order).
        let mut received: HashMap<ChannelId, (u64, Vec<Event>)> = HashMap::new();
        let started = Instant::now();
        let mut signalled = false;
        loop {
            if !signalled && started.elapsed() > Duration::from_secs(3) {
                service.signal(libc::SIGTERM);
                signalled = true;
            }
            let next = tokio::time::timeout(Duration::from_secs(30), client.next()).await;
            match next.expect("the service keeps sending until it closes") {
                Some(Delivery::Batch(batch)) => {
                    let entry = received
                        .entry(batch.channel)
                        .or_insert((batch.first_sequence, Vec::new()));
                    assert_eq!(
                        entry.0 + entry.1.len() as u64,
                        batch.first_sequence,
                        "channel {:?} jumped",
                        batch.channel
                    );
                    entry.1.extend_from_slice(&batch.events);
                }
                Some(Delivery::Gap {
                    channel,
                    expected,
                    got,
                    ..
                }) => {
                    panic!("gap on {channel:?}: expected {expected}, got {got}")
                }
                Some(Delivery::Disconnected { code, reason }) => {
                    assert!(signalled, "disconnected before SIGTERM: {code:?} {reason}");
                    assert_eq!(code, Some(ErrorCode::NoError), "closed with {reason:?}");
                    assert!(reason.contains("shutting down"), "{reason}");
                    break;
                }
                Some(Delivery::Refused { id, code, message }) => {
                    panic!("subscription {id} refused: {code:?} {message}")
                }
                Some(_) => {}
                None => break,
            }
        }
        received
    });
    let out = service.wait(EXIT);
    assert!(
        out.success,
        "the service did not exit cleanly ({:?}):\n{}\n{}",
        out.code, out.stdout, out.stderr
    );
    assert!(out.stderr.contains("stopping"), "{}", out.stderr);
    assert!(out.stdout.contains("journal: "), "{}", out.stdout);

    // Market data: every channel's events from the first the subscriber saw to the very
    // last the service published, identical to the journal's.
    let journal = journal_channels(&data.join("journal"));
    let mut md_events = 0;
    for (channel, (first, events)) in &received {
        if channel.kind != ChannelKind::MarketData {
            continue;
        }
        let recorded = &journal[&channel.key];
        let expected = &recorded[(*first - 1) as usize..];
        assert_eq!(
            events.len(),
            expected.len(),
            "instrument {}: received {} events from sequence {first}, the journal holds {} from there",
            channel.key,
            events.len(),
            expected.len()
        );
        for (i, (got, want)) in events.iter().zip(expected).enumerate() {
            assert_eq!(
                got.checksum(),
                want.checksum(),
                "instrument {} sequence {}",
                channel.key,
                *first + i as u64
            );
        }
        md_events += events.len();
    }
    assert_eq!(
        received
            .keys()
            .filter(|c| c.kind == ChannelKind::MarketData)
            .count(),
        journal.len(),
        "every instrument in the journal was received"
    );
    assert!(md_events > 10_000, "only {md_events} market events arrived");
    let kinds = |kind| {
        received
            .iter()
            .filter(|(c, _)| c.kind == kind)
            .map(|(_, (_, e))| e.len())
            .sum::<usize>()
    };
    assert!(
        kinds(ChannelKind::ExecutionReports) > 0,
        "no execution reports arrived"
    );
    assert!(
        kinds(ChannelKind::Notifications) > 0,
        "no notifications arrived"
    );
}

#[test]
fn sigterm_during_a_replay_drains_and_the_journal_holds_what_was_published() {
    let dir = tempfile::tempdir().expect("temp dir");
    let recorded = dir.path().join("recorded");
    let recorded = recorded.to_str().expect("UTF-8");
    // 2M events of simulated time at 100k/s: 20 s at the recorded pace.
    let out = tickwire(&[
        "gen", "journal", recorded, "--events", "2000000", "--rate", "100000",
    ]);
    assert!(out.success, "gen journal failed: {}", out.stderr);
    let config = write_config(
        dir.path(),
        &format!("input = {recorded:?}"),
        free_udp_port(),
        free_tcp_port(),
    );
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).expect("config") + "pace = 1.0\n",
    )
    .expect("append pace");
    let mut service = ServiceChild::start(&["run", "--config", &config]);
    service.wait_for_line("running;", START);
    // Two status lines: events are flowing.
    service.wait_for_line("s] md ", Duration::from_secs(30));
    service.wait_for_line("s] md ", Duration::from_secs(30));
    service.signal(libc::SIGTERM);
    let out = service.wait(EXIT);
    assert!(
        out.success,
        "not a clean exit ({:?}):\n{}\n{}",
        out.code, out.stdout, out.stderr
    );
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("events recorded this run"))
        .unwrap_or_else(|| panic!("no journal line:\n{}", out.stdout));
    let recorded: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("journal line: {line}"));
    assert!(
        recorded > 0 && recorded < 2_000_000,
        "SIGTERM should stop the replay part way: {line}"
    );
    let journal = JournalReader::open(dir.path().join("data/journal")).expect("journal");
    assert_eq!(journal.len(), recorded, "{line}");
}

#[test]
fn bad_configurations_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let busy = UdpSocket::bind("127.0.0.1:0").expect("a UDP port to occupy");
    let busy_addr = busy.local_addr().expect("addr");
    let cases: Vec<(String, String)> = vec![
        (
            "[quic]\nbnd = \"127.0.0.1:1\"\n".into(),
            "unknown field `bnd`".into(),
        ),
        (
            "[pipeline]\nmd_ring = 1000\n".into(),
            "[pipeline] md_ring = 1000: a ring size must be a power of two".into(),
        ),
        (
            "[pipeline]\ncores = [0, 512]\n".into(),
            "core 512 does not exist; the available cores are".into(),
        ),
        (
            "[feed]\ninput = \"/nonexistent/feed.gz\"\n".into(),
            "[feed] input = \"/nonexistent/feed.gz\": no such file".into(),
        ),
        (
            format!("[quic]\nbind = \"{busy_addr}\"\n"),
            format!("[quic] bind = {busy_addr}: cannot bind the UDP port"),
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).expect("write");
        let out = tickwire(&["run", "--config", path.to_str().expect("UTF-8")]);
        assert!(!out.success, "{text:?} was accepted:\n{}", out.stdout);
        assert!(
            out.stderr.contains(expected.as_str()),
            "{text:?}: expected {expected:?} in:\n{}",
            out.stderr
        );
        assert!(
            !out.stdout.contains("running;"),
            "{text:?}: started before refusing"
        );
    }
    drop(busy);

    // A journal recorded from another feed is not appended to under the wrong symbols.
    let journal = dir.path().join("journal");
    let journal = journal.to_str().expect("UTF-8");
    let itch = dir.path().join("day.itch");
    let itch = itch.to_str().expect("UTF-8");
    for args in [
        &["gen", "journal", journal, "--events", "1000"][..],
        &["gen", "itch", itch, "--messages", "1000"][..],
    ] {
        let out = tickwire(args);
        assert!(out.success, "{args:?}: {}", out.stderr);
    }
    let path = dir.path().join("other-feed.toml");
    std::fs::write(
        &path,
        format!(
            "[feed]\ninput = {itch:?}\n[journal]\ndir = {journal:?}\n[strategies]\n\
             [quic]\nenabled = false\n[metrics]\nenabled = false\n"
        ),
    )
    .expect("write");
    let out = tickwire(&["run", "--config", path.to_str().expect("UTF-8")]);
    assert!(
        !out.success,
        "appended to another feed's journal:\n{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("recorded with other instruments"),
        "{}",
        out.stderr
    );

    let missing = tickwire(&["run", "--config", "/nonexistent/tickwire.toml"]);
    assert!(!missing.success);
    assert!(
        missing
            .stderr
            .contains("cannot read the configuration file /nonexistent/tickwire.toml"),
        "{}",
        missing.stderr
    );
}

#[test]
fn print_config_prints_every_key_and_reads_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = tickwire(&["run", "--print-config"]);
    assert!(out.success, "{}", out.stderr);
    for key in [
        "data_dir",
        "[feed]",
        "[pipeline]",
        "md_ring",
        "[risk]",
        "[strategies.mm]",
        "[[alerts]]",
        "[journal]",
        "[quic]",
        "bind = \"127.0.0.1:4433\"",
        "[metrics]",
        "bind = \"127.0.0.1:9464\"",
        "[status]",
    ] {
        assert!(out.stdout.contains(key), "{key} missing:\n{}", out.stdout);
    }
    let path = dir.path().join("printed.toml");
    std::fs::write(&path, &out.stdout).expect("write");
    let path = path.to_str().expect("UTF-8");
    let again = tickwire(&["run", "--config", path, "--print-config"]);
    assert!(again.success, "{}", again.stderr);
    assert_eq!(again.stdout, out.stdout, "print-config is a fixed point");
}

/// The NATS server for [`the_service_publishes_to_jetstream_when_configured`]: the one CI
/// started (`TICKWIRE_NATS_URL`), else one of our own if `nats-server` is installed, else
/// none (the test says so; under `CI=true` it fails instead).
fn nats_url(dir: &Path) -> Option<(String, Option<std::process::Child>)> {
    if let Ok(url) = std::env::var("TICKWIRE_NATS_URL") {
        return Some((url, None));
    }
    let port = free_tcp_port().port();
    let store = dir.join("jetstream");
    match std::process::Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&store)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(child) => {
            let deadline = Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "nats-server did not listen");
                std::thread::sleep(Duration::from_millis(20));
            }
            Some((format!("nats://127.0.0.1:{port}"), Some(child)))
        }
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "nats-server not found ({e}), and CI=true requires it"
            );
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "skipped: nats-server not found ({e})");
            None
        }
    }
}

/// The number right after `prefix` in `line`.
fn number_after(line: &str, prefix: &str) -> u64 {
    let at = line
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix:?} not in {line:?}"));
    line[at + prefix.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {prefix:?} in {line:?}"))
}

#[test]
fn the_service_publishes_to_jetstream_when_configured() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Some((url, mut own)) = nats_url(dir.path()) else {
        return;
    };
    let config = write_config(
        dir.path(),
        "rate = 5000\ninstruments = 2",
        free_udp_port(),
        free_tcp_port(),
    );
    // Streams of this test's own, so a shared CI server's other streams are not touched.
    let tag = format!("SVC{}", std::process::id());
    let text = std::fs::read_to_string(&config).expect("config")
        + &format!(
            "\n[nats]\nurl = \"{url}\"\nsubject_prefix = \"{tag}\"\n\
             [nats.market_data]\nname = \"{tag}_MD\"\n\
             [nats.executions]\nname = \"{tag}_EXEC\"\n\
             [nats.alerts]\nname = \"{tag}_ALERTS\"\n"
        );
    std::fs::write(&config, text).expect("write config");
    let mut service = ServiceChild::start(&["run", "--config", &config]);
    service.wait_for_line("running;", START);
    service.wait_for_line("nats up", Duration::from_secs(30));
    service.signal(libc::SIGTERM);
    let out = service.wait(EXIT);
    if let Some(child) = own.as_mut() {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(out.success, "{}\n{}", out.stdout, out.stderr);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("nats: "))
        .unwrap_or_else(|| panic!("no nats summary:\n{}", out.stdout));
    let read = number_after(line, "| in ");
    let acked = number_after(line, "| acked ");
    assert!(read > 0, "{line}");
    assert_eq!(
        acked, read,
        "every event read was acknowledged once: {line}"
    );
    assert_eq!(number_after(line, "| dropped "), 0, "{line}");
    // The market data acknowledged is the journal's (plus reports and notifications).
    let journal = JournalReader::open(dir.path().join("data/journal")).expect("journal");
    assert!(acked >= journal.len(), "{line}: journal {}", journal.len());
}
