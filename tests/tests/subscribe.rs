//! `tickwire subscribe` as a child process against an in-process QUIC server on 127.0.0.1
//! (ephemeral port, the service's data-dir layout in a temporary directory): every event in
//! order with its sequence, readable and JSON output, the summary, and the errors for a
//! missing certificate, a bad token and no server.
//!
//! The binary is found and built by `support` (see there): `<target>/<profile>/tickwire`,
//! next to this test's `deps/` directory. Every wait is bounded; a child that overruns is
//! killed and the test fails.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tickwire_engine::agent::{Layout, Pipeline, ThreadSpec};
use tickwire_engine::clock::wall_ns;
use tickwire_engine::event::{Event, PRICE_SCALE, Quote, SIZE_SCALE, Trade};
use tickwire_engine::idle::IdleStrategy;
use tickwire_engine::instrument::InstrumentRegistry;
use tickwire_engine::ring::{Publisher, RingBuilder};
use tickwire_quic::fanout::{FanoutConfig, PublisherAgent};
use tickwire_quic::protocol::ChannelKind;
use tickwire_quic::server::{Entitlement, Server, ServerConfig, TokenEntry, load_or_create_token};

const TIMEOUT: Duration = Duration::from_secs(120);

mod support;
use support::binary;

/// A running child whose stderr lines arrive on a channel as they are written.
struct Spawned {
    child: Child,
    what: String,
    stdout: thread::JoinHandle<String>,
    stderr_lines: mpsc::Receiver<String>,
    stderr: Vec<String>,
}

impl Spawned {
    fn start(mut command: Command) -> Self {
        let what = format!("{command:?}");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let mut out = child.stdout.take().expect("piped stdout");
        let stdout = thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = out.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        });
        let err = child.stderr.take().expect("piped stderr");
        let (tx, stderr_lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            what,
            stdout,
            stderr_lines,
            stderr: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle`; panics after `timeout` or at exit.
    fn wait_stderr(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.stderr.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "{}: no stderr line with {needle:?} within {timeout:?}; stderr:\n{}",
                        self.what,
                        self.stderr.join("\n")
                    );
                }
            }
        }
    }

    /// Waits for the exit (killing the child after `timeout`): (success, stdout, stderr).
    fn wait(mut self, timeout: Duration) -> (bool, String, String) {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the child") {
                break status;
            }
            if started.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} ran over {timeout:?} and was killed; stderr:\n{}",
                    self.what,
                    self.stderr.join("\n")
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        // The pipe's writer is gone: the reader thread ends at EOF.
        while let Ok(line) = self.stderr_lines.recv_timeout(Duration::from_secs(10)) {
            self.stderr.push(line);
        }
        let stdout = self.stdout.join().expect("stdout reader");
        (status.success(), stdout, self.stderr.join("\n"))
    }
}

fn subscribe(args: &[&str]) -> Spawned {
    let mut command = Command::new(binary());
    command.arg("subscribe").args(args);
    Spawned::start(command)
}

/// A ring, the publisher agent on its own thread, and a server on an ephemeral port whose
/// data directory is `<tmp>/tickwire-data/quic` (certificate and token as the service keeps
/// them).
struct Service {
    md: Option<Publisher<Event>>,
    pipeline: Option<Pipeline>,
    server: Option<Server>,
    runtime: tokio::runtime::Runtime,
    quic_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Service {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let quic_dir = dir.path().join("tickwire-data").join("quic");
        let token = load_or_create_token(&quic_dir.join("token")).expect("token created");
        let mut ring = RingBuilder::<Event>::new(1 << 16).expect("power of two");
        let source = ring.subscriber("quic-publisher");
        let md = ring.build().expect("has a subscriber");
        let (agent, handle) = PublisherAgent::new(
            vec![source],
            FanoutConfig {
                instruments: InstrumentRegistry::from_symbols(["BTC-USD", "ETH-USD", "SOL-USD"]),
                ..FanoutConfig::default()
            },
        );
        let pipeline = Layout::new()
            .thread(
                ThreadSpec::new("publisher")
                    .idle(IdleStrategy::BACKOFF)
                    .agent(agent),
            )
            .spawn()
            .expect("layout");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let server = {
            let _inside = runtime.enter();
            Server::start(
                ServerConfig {
                    bind: "127.0.0.1:0".parse().expect("address"),
                    data_dir: quic_dir.clone(),
                    tokens: vec![TokenEntry::new(
                        "default",
                        &token,
                        vec![
                            Entitlement::new(ChannelKind::MarketData, ["*"]),
                            Entitlement::new(ChannelKind::ExecutionReports, ["*"]),
                            Entitlement::new(ChannelKind::Notifications, ["*"]),
                        ],
                    )],
                    ..ServerConfig::default()
                },
                handle,
            )
            .expect("server starts")
        };
        Self {
            md: Some(md),
            pipeline: Some(pipeline),
            server: Some(server),
            runtime,
            quic_dir,
            _dir: dir,
        }
    }

    fn addr(&self) -> String {
        self.server
            .as_ref()
            .expect("running")
            .local_addr()
            .to_string()
    }

    fn path(&self, name: &str) -> String {
        self.quic_dir.join(name).display().to_string()
    }

    fn publish(&mut self, event: Event) {
        self.md
            .as_mut()
            .expect("ring open")
            .publish(|slot| *slot = event)
            .expect("ring not halted");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.md = None;
        if let Some(p) = self.pipeline.take() {
            let _ = p.join_timeout(Duration::from_secs(30));
        }
        let _inside = self.runtime.enter();
        self.server = None;
    }
}

/// Event `i`: instrument `i % 3`; every fifth a trade, the others quotes; prices from `i`.
fn event(i: u64) -> Event {
    let mut e = Event::new(0, (i % 3) as u32, i, wall_ns());
    if i % 5 == 0 {
        e.set_trade(Trade {
            price: 100 * PRICE_SCALE + i as i64,
            size: SIZE_SCALE / 2,
            trade_id: i,
            seq: i,
            aggressor: 1,
            ..Trade::default()
        });
    } else {
        e.set_quote(Quote {
            bid_px: 100 * PRICE_SCALE + i as i64,
            ask_px: 101 * PRICE_SCALE,
            bid_size: SIZE_SCALE,
            ask_size: 2 * SIZE_SCALE,
            seq: i,
        });
    }
    e
}

/// `100 + i * 10⁻⁹` as the exact decimal the subscriber prints.
fn price(i: u64) -> String {
    if i == 0 {
        return "100".to_owned();
    }
    format!("100.{i:09}").trim_end_matches('0').to_owned()
}

#[test]
fn subscribe_prints_every_event_in_order_then_a_summary() {
    let mut service = Service::start();
    let total = 3000u64;
    let count = total.to_string();
    let (addr, cert, token) = (
        service.addr(),
        service.path("cert.der"),
        service.path("token"),
    );
    let common = ["--server", &addr, "--cert", &cert, "--token-file", &token];
    let mut json = subscribe(&[&common[..], &["--json", "--count", &count]].concat());
    let mut human = subscribe(&[&common[..], &["--md", "BTC*", "--count", "10"]].concat());
    json.wait_stderr("subscribed: md *", TIMEOUT);
    human.wait_stderr("subscribed: md BTC*", TIMEOUT);
    for i in 0..total {
        service.publish(event(i));
    }

    let (ok, stdout, stderr) = json.wait(TIMEOUT);
    assert!(ok, "json subscriber failed:\n{stderr}");
    let mut next_seq = [1u64; 3];
    let mut lines = 0;
    for line in stdout.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let inst = v["instrument"].as_u64().expect("instrument") as usize;
        assert_eq!(v["channel"], "md");
        assert_eq!(v["key"].as_u64(), Some(inst as u64));
        // Sequence n of instrument k is event i = 3 (n - 1) + k.
        let seq = v["sequence"].as_u64().expect("sequence");
        assert_eq!(
            seq, next_seq[inst],
            "in order, no gap, no duplicate: {line}"
        );
        next_seq[inst] += 1;
        let i = 3 * (seq - 1) + inst as u64;
        if i % 5 == 0 {
            assert_eq!(v["kind"], "trade", "{line}");
            assert_eq!(v["price"], price(i));
            assert_eq!(v["size"], "0.5");
            assert_eq!(v["trade_id"].as_u64(), Some(i));
        } else {
            assert_eq!(v["kind"], "quote", "{line}");
            assert_eq!(v["seq"].as_u64(), Some(i));
            assert_eq!(v["bid_px"], price(i));
            assert_eq!(v["ask_px"], "101");
            assert_eq!(v["ask_size"], "2");
        }
        assert!(v["latency_ns"].as_u64().is_some(), "{line}");
        lines += 1;
    }
    assert_eq!(lines, total, "exactly --count events");
    assert!(
        stderr.contains(&format!("summary: {total} events on 3 channels")),
        "{stderr}"
    );
    assert!(stderr.contains("gaps 0 lost + 0 conflated"), "{stderr}");
    assert!(
        stderr.contains("latency receive_ts -> arrival: p50 "),
        "{stderr}"
    );

    let (ok, stdout, stderr) = human.wait(TIMEOUT);
    assert!(ok, "human subscriber failed:\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 10, "{stdout}");
    // BTC-USD is instrument 0: events 0, 3, 6, ...; event 0 is a trade, 3 a quote.
    assert!(
        lines[0].contains("md/0")
            && lines[0].contains("#1 ")
            && lines[0].contains("trade  100 x 0.5"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("#2 ") && lines[1].contains("quote  bid 100.000000003 x 1  ask 101 x 2"),
        "{}",
        lines[1]
    );
    assert!(
        lines[0].starts_with("20"),
        "an RFC 3339 time first: {}",
        lines[0]
    );
    assert!(
        stderr.contains("summary: 10 events on 1 channel in"),
        "{stderr}"
    );
}

#[test]
fn subscribe_errors_name_what_is_wrong() {
    let service = Service::start();
    let (addr, cert, token) = (
        service.addr(),
        service.path("cert.der"),
        service.path("token"),
    );

    // A missing certificate file: named, with where the service keeps it.
    let missing = service.path("nope.der");
    let (ok, _, stderr) = subscribe(&[
        "--server",
        &addr,
        "--cert",
        &missing,
        "--token-file",
        &token,
    ])
    .wait(TIMEOUT);
    assert!(!ok);
    assert!(
        stderr.contains(&missing) && stderr.contains("--cert"),
        "{stderr}"
    );

    // A wrong token: refused, and the message says where the token came from.
    let (ok, _, stderr) =
        subscribe(&["--server", &addr, "--cert", &cert, "--token", "wrong"]).wait(TIMEOUT);
    assert!(!ok);
    assert!(
        stderr.contains("refused the token from --token") && stderr.contains("UNAUTHENTICATED"),
        "{stderr}"
    );

    // Nobody listening: the address and the hint.
    let free = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .to_string();
    let (ok, _, stderr) = subscribe(&[
        "--server",
        &free,
        "--cert",
        &cert,
        "--token-file",
        &token,
        "--connect-timeout",
        "1",
    ])
    .wait(TIMEOUT);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("cannot connect to {free}"))
            && stderr.contains("is `tickwire run` running?"),
        "{stderr}"
    );
}
