//! End-to-end over real QUIC on 127.0.0.1: delivery, resume, slow subscribers, auth and
//! entitlements, bad input. Every wait is bounded.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use tickwire_engine::journal::{FsyncPolicy, JournalConfig, JournalWriter};
use tickwire_quic::client::{Client, ClientAuth, Delivery, connect_raw};
use tickwire_quic::fanout::FanoutConfig;
use tickwire_quic::protocol::{
    ChannelKind, Control, ErrorCode, HEADER_LEN, MessageType, Policy, SubscribeRequest,
    batch_flags, decode_control, decode_event_batch, decode_header,
};
use tickwire_quic::server::Limits;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_receives_every_event_in_order() {
    let mut h = Harness::start(Limits::default(), FanoutConfig::default());
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut c = Client::connect(h.client_config(TOKEN, &["*"], Policy::Disconnect))
            .await
            .expect("connects");
        let mut seen = Seen::default();
        subscribed(&mut c, &mut seen).await;
        clients.push((c, seen));
    }
    let mut expected: HashMap<u32, Vec<u64>> = HashMap::new();
    let total = 30_000u64;
    for i in 0..total {
        let inst = (i % 3) as u32;
        let e = if i % 5 == 0 {
            trade(inst, i)
        } else {
            quote(inst, i)
        };
        let e = h.publish(e);
        expected.entry(inst).or_default().push(e.checksum());
    }
    for (c, seen) in &mut clients {
        collect_until(c, seen, |s| {
            (0..3).all(|k| s.count(md(k)) >= expected[&k].len())
        })
        .await;
        for k in 0..3 {
            assert_exact(seen, md(k), &expected[&k]);
        }
        assert!(seen.gaps.is_empty(), "{:?}", seen.gaps);
        assert_eq!(
            c.stats()
                .duplicates
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }
    // Shared frames: encoded once per channel per batch, queued once per subscriber.
    let stats = h.fanout.stats();
    let encoded = stats
        .frames_encoded
        .load(std::sync::atomic::Ordering::Relaxed);
    let queued = stats
        .frames_queued
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        queued,
        encoded * 4,
        "every encoded frame went to all 4 subscribers"
    );
    h.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_client_is_gone_from_the_server_at_once() {
    let mut h = Harness::start(Limits::default(), FanoutConfig::default());
    let mut c = Client::connect(h.client_config(TOKEN, &["*"], Policy::Disconnect))
        .await
        .expect("connects");
    let mut seen = Seen::default();
    subscribed(&mut c, &mut seen).await;
    let expected: Vec<u64> = (0..100)
        .map(|i| h.publish(quote(0, i)).checksum())
        .collect();
    collect_until(&mut c, &mut seen, |s| s.count(md(0)) >= expected.len()).await;
    assert_exact(&seen, md(0), &expected);
    assert_eq!(h.server.connections(), 1);
    c.close().await;
    // Well inside the 10 s idle timeout, and with nothing published: only the close frame
    // can end the connection this early.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while h.server.connections() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server still holds {} connection(s) 3 s after the client closed",
            h.server.connections()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = h.fanout.stats();
    assert_eq!(
        stats
            .slow_disconnects
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "a clean close is not a slow subscriber"
    );
    h.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_disconnects_then_resume_lose_and_repeat_nothing() {
    let mut h = Harness::start(Limits::default(), FanoutConfig::default());
    let mut c = Client::connect(h.client_config(TOKEN, &["*"], Policy::Disconnect))
        .await
        .expect("connects");
    let mut seen = Seen::default();
    subscribed(&mut c, &mut seen).await;
    let total = 40_000u64;
    let mut md_ring = h.md.take().expect("ring");
    // Publish from a plain thread, paced (~100k/s), while the client is cut five times.
    let producer = std::thread::spawn(move || {
        let mut expected: HashMap<u32, Vec<u64>> = HashMap::new();
        for i in 0..total {
            let inst = (i % 2) as u32;
            let e = if i % 7 == 0 {
                trade(inst, i)
            } else {
                quote(inst, i)
            };
            md_ring.publish(|slot| *slot = e).expect("not halted");
            expected.entry(inst).or_default().push(e.checksum());
            if i % 100 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        (md_ring, expected)
    });
    let mut cuts = 0;
    let done = |s: &Seen| s.last(md(0)) >= total / 2 && s.last(md(1)) >= total / 2;
    tokio::time::timeout(WAIT, async {
        while !done(&seen) {
            let Some(d) = c.next().await else { break };
            let is_batch = matches!(d, Delivery::Batch(_));
            seen.record(d);
            let got: usize = seen.events.values().map(Vec::len).sum();
            if is_batch && cuts < 5 && got as u64 > (cuts + 1) * total / 7 {
                c.force_disconnect();
                cuts += 1;
            }
        }
    })
    .await
    .expect("all events in time");
    let (md_ring, expected) = producer.join().expect("producer");
    h.md = Some(md_ring);
    assert_eq!(
        cuts, 5,
        "the client was cut five times; disconnects {:?}, refused {:?}",
        seen.disconnects, seen.refused
    );
    assert!(
        seen.connects >= 6,
        "reconnected after each cut: {}",
        seen.connects
    );
    for k in 0..2 {
        assert_exact(&seen, md(k), &expected[&k]);
    }
    assert!(seen.gaps.is_empty(), "gaps: {:?}", seen.gaps);
    assert_eq!(
        c.stats()
            .duplicates
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    h.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_older_than_the_window_is_refused_with_a_code() {
    let mut h = Harness::start(
        Limits::default(),
        FanoutConfig {
            retain_per_channel: 100,
            ..FanoutConfig::default()
        },
    );
    for i in 0..1000 {
        h.publish(quote(0, i));
    }
    // Sequenced before the resume arrives (else "ahead" is the right answer).
    h.wait_sequenced(1000).await;
    // A raw session that claims to hold sequence 10 of BTC-USD (retained: 901..=1000).
    let conn = connect_raw(h.server.local_addr(), "localhost", &h.cert)
        .await
        .expect("connects");
    let (mut send, mut recv) = conn.open_bi().await.expect("control stream");
    let mut out = Vec::new();
    Control::Hello {
        token: TOKEN.into(),
        client: "raw".into(),
    }
    .encode(&mut out);
    Control::Resume {
        id: 1,
        key: 0,
        last_sequence: 10,
    }
    .encode(&mut out);
    Control::Subscribe(SubscribeRequest {
        id: 1,
        kind: ChannelKind::MarketData,
        policy: Policy::Disconnect,
        patterns: vec!["*".into()],
    })
    .encode(&mut out);
    Control::Resume {
        id: 2,
        key: 0,
        last_sequence: 5000,
    }
    .encode(&mut out);
    Control::Subscribe(SubscribeRequest {
        id: 2,
        kind: ChannelKind::MarketData,
        policy: Policy::Disconnect,
        patterns: vec!["*".into()],
    })
    .encode(&mut out);
    send.write_all(&out).await.expect("sent");
    let mut codes = Vec::new();
    tokio::time::timeout(WAIT, async {
        while codes.len() < 2 {
            match read_control(&mut recv).await {
                Control::Error { code, id, .. } => codes.push((id, code)),
                Control::Welcome { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
    .expect("answers in time");
    assert_eq!(
        codes,
        [(1, ErrorCode::ResumeTooOld), (2, ErrorCode::ResumeAhead)]
    );
    h.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_older_than_the_window_comes_from_the_journal() {
    // A previous run recorded 6000 events, 3000 per instrument: market-data sequences are
    // defined by the journal, so this run's first event on each is 3001.
    let journal = tempfile::tempdir().expect("temp dir");
    let mut expected: HashMap<u32, Vec<u64>> = HashMap::new();
    let mut writer = JournalWriter::open(
        journal.path(),
        JournalConfig {
            fsync: FsyncPolicy::Never,
            ..JournalConfig::default()
        },
    )
    .expect("journal");
    let previous = 6000u64;
    for i in 0..previous {
        let inst = (i % 2) as u32;
        let e = if i % 7 == 0 {
            trade(inst, i)
        } else {
            quote(inst, i)
        };
        writer.append(&e).expect("append");
        expected.entry(inst).or_default().push(e.checksum());
    }
    writer.close().expect("close");
    // A window of 100 events per channel: every cut below outlasts it.
    let mut h = Harness::start(
        Limits::default(),
        FanoutConfig {
            retain_per_channel: 100,
            journal: Some(journal.path().to_owned()),
            ..FanoutConfig::default()
        },
    );
    let mut config = h.client_config(TOKEN, &["*"], Policy::Disconnect);
    config.reconnect_delay = Duration::from_millis(300);
    let mut c = Client::connect(config).await.expect("connects");
    let mut seen = Seen::default();
    subscribed(&mut c, &mut seen).await;
    let live = 40_000u64;
    let mut md_ring = h.md.take().expect("ring");
    let mut expected_live = expected.clone();
    let producer = std::thread::spawn(move || {
        for i in previous..previous + live {
            let inst = (i % 2) as u32;
            let e = if i % 7 == 0 {
                trade(inst, i)
            } else {
                quote(inst, i)
            };
            md_ring.publish(|slot| *slot = e).expect("not halted");
            expected_live.entry(inst).or_default().push(e.checksum());
            if i % 100 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        (md_ring, expected_live)
    });
    let per_channel = (previous + live) / 2;
    let mut cuts = 0;
    tokio::time::timeout(WAIT, async {
        while seen.last(md(0)) < per_channel || seen.last(md(1)) < per_channel {
            let Some(d) = c.next().await else { break };
            let is_batch = matches!(d, Delivery::Batch(_));
            seen.record(d);
            let got: usize = seen.events.values().map(Vec::len).sum();
            if is_batch && cuts < 3 && got as u64 > (cuts + 1) * live / 5 {
                c.force_disconnect();
                cuts += 1;
            }
        }
    })
    .await
    .expect("all events in time");
    let (md_ring, expected) = producer.join().expect("producer");
    h.md = Some(md_ring);
    assert_eq!(cuts, 3);
    assert!(seen.gaps.is_empty(), "gaps: {:?}", seen.gaps);
    assert!(seen.refused.is_empty(), "refused: {:?}", seen.refused);
    for k in 0..2 {
        let got = &seen.events[&md(k)];
        assert_eq!(got.len() as u64, live / 2, "live events on {k}");
        for (i, (seq, sum)) in got.iter().enumerate() {
            assert_eq!(*seq, previous / 2 + 1 + i as u64, "sequence at {i} on {k}");
            assert_eq!(
                *sum,
                expected[&k][*seq as usize - 1],
                "checksum of {seq} on {k}"
            );
        }
    }
    let from_journal = h
        .fanout
        .stats()
        .journal_replayed
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(from_journal > 0, "the cuts were resumed from the journal");

    // A raw session that holds sequence 10 of BTC-USD, from the previous run: it gets
    // 11..=23000 (journal of both runs, then the window), in order, flagged REPLAY.
    let conn = connect_raw(h.server.local_addr(), "localhost", &h.cert)
        .await
        .expect("connects");
    let (mut send, _recv) = conn.open_bi().await.expect("control stream");
    let mut out = hello();
    Control::Resume {
        id: 1,
        key: 0,
        last_sequence: 10,
    }
    .encode(&mut out);
    Control::Subscribe(SubscribeRequest {
        id: 1,
        kind: ChannelKind::MarketData,
        policy: Policy::Disconnect,
        patterns: vec!["BTC-USD".into()],
    })
    .encode(&mut out);
    send.write_all(&out).await.expect("sent");
    let mut events = conn.accept_uni().await.expect("event stream");
    let mut next = 11u64;
    tokio::time::timeout(WAIT, async {
        while next <= per_channel {
            let mut header = [0u8; HEADER_LEN];
            events.read_exact(&mut header).await.expect("header");
            let (kind, len) = decode_header(&header, 16 << 20).expect("valid header");
            assert_eq!(kind, MessageType::EventBatch);
            let mut payload = tickwire_quic::protocol::aligned_payload(len);
            events
                .read_exact(payload.as_mut_slice())
                .await
                .expect("payload");
            let batch = decode_event_batch(&payload).expect("valid batch");
            assert_eq!((batch.key, batch.first_sequence), (0, next));
            assert_ne!(batch.flags & batch_flags::REPLAY, 0);
            for e in &batch.events {
                assert_eq!(
                    e.checksum(),
                    expected[&0][next as usize - 1],
                    "sequence {next}"
                );
                next += 1;
            }
        }
    })
    .await
    .expect("replayed in time");
    assert_eq!(next, per_channel + 1);
    h.stop();
}

async fn read_control(recv: &mut quinn::RecvStream) -> Control {
    let mut header = [0u8; HEADER_LEN];
    recv.read_exact(&mut header).await.expect("header");
    let (kind, len) = decode_header(&header, 1 << 20).expect("valid header");
    let mut payload = vec![0; len];
    recv.read_exact(&mut payload).await.expect("payload");
    decode_control(kind, &payload).expect("valid message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subscribers_slow_nobody_and_are_told() {
    let limits = Limits {
        queue_frames: 2048,
        ..Limits::default()
    };
    // Small batches (frames of at most 64 events), so 2048 queued frames of one channel are about 4 MiB
    // while the slow subscribers' 64 KiB windows stay full.
    // The whole run is retained, so if loopback hiccups on this shared machine cut the
    // fast subscriber, it resumes without a gap (that is checked below, exactly).
    let fanout = FanoutConfig {
        max_batch: 64,
        retain_per_channel: 400_000,
        ..FanoutConfig::default()
    };
    let mut h = Harness::start(limits, fanout);
    let mut fast = Client::connect(h.client_config(TOKEN, &["*"], Policy::Disconnect))
        .await
        .expect("connects");
    let mut fast_seen = Seen::default();
    subscribed(&mut fast, &mut fast_seen).await;
    let mut slow = Vec::new();
    for (patterns, policy) in [
        (["BTC-USD"], Policy::Conflate),   // quotes only: conflated
        (["BTC-USD"], Policy::Disconnect), // disconnected
        (["ETH-USD"], Policy::Conflate),   // trades too: disconnected, undeliverable
    ] {
        let mut config = h.client_config(TOKEN, &patterns, policy);
        config.reconnect = false;
        config.buffer = 1;
        // A 64 KiB window (the client used to ignore this and open 8 MiB windows, so the
        // server pushed megabytes into these non-reading clients and flooded loopback UDP:
        // lost CONNECTION_CLOSE packets then surfaced as stateless resets).
        config.receive_window = 64 << 10;
        let mut c = Client::connect(config).await.expect("connects");
        let mut seen = Seen::default();
        subscribed(&mut c, &mut seen).await;
        slow.push((c, seen));
    }
    // The slow clients read nothing while this runs: their windows and queues fill.
    let total = 400_000u64;
    let mut expected: HashMap<u32, Vec<u64>> = HashMap::new();
    let mut md_ring = h.md.take().expect("ring");
    let producer = std::thread::spawn(move || {
        for i in 0..total {
            let inst = (i % 2) as u32;
            let e = if inst == 1 && i % 3 == 0 {
                trade(inst, i)
            } else {
                quote(inst, i)
            };
            md_ring.publish(|slot| *slot = e).expect("not halted");
            expected.entry(inst).or_default().push(e.checksum());
        }
        (md_ring, expected)
    });
    let fast_done = try_collect_until(&mut fast, &mut fast_seen, |s| {
        s.count(md(0)) + s.count(md(1)) >= total as usize
    })
    .await;
    eprintln!(
        "fast: {} + {} events, gaps {:?}, connects {}, disconnects {:?}, refused {:?}",
        fast_seen.count(md(0)),
        fast_seen.count(md(1)),
        fast_seen.gaps.len(),
        fast_seen.connects,
        fast_seen.disconnects,
        fast_seen.refused
    );
    assert!(fast_done, "fast subscriber got everything");
    let (md_ring, exp) = producer.join().expect("producer");
    expected = exp;
    h.md = Some(md_ring);
    for k in 0..2 {
        assert_exact(&fast_seen, md(k), &expected[&k]);
    }
    assert!(fast_seen.gaps.is_empty());
    // Now the slow ones read, and learn what happened to them.
    let btc_total = expected[&0].len() as u64;
    let (c, seen) = &mut slow[0];
    collect_until(c, seen, |s| s.last(md(0)) >= btc_total).await;
    assert!(
        seen.gaps.iter().any(|g| matches!(
            g,
            Delivery::Gap {
                conflated: true,
                ..
            }
        )),
        "conflation reported: {:?}",
        seen.gaps.len()
    );
    assert!(seen.disconnects.is_empty(), "{:?}", seen.disconnects);
    assert_eq!(seen.last(md(0)), btc_total, "the latest quote arrives");
    for (i, code) in [(1, ErrorCode::SlowConsumer), (2, ErrorCode::Undeliverable)] {
        let (c, seen) = &mut slow[i];
        collect_until(c, seen, |s| !s.disconnects.is_empty()).await;
        assert!(
            matches!(seen.disconnects[0], Delivery::Disconnected { code: Some(got), .. } if got == code),
            "{:?}",
            seen.disconnects
        );
    }
    h.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_entitlements_are_enforced() {
    let mut h = Harness::start(Limits::default(), FanoutConfig::default());
    for token in ["wrong", ""] {
        let err = Client::connect(h.client_config(token, &["*"], Policy::Disconnect))
            .await
            .expect_err("refused");
        assert!(
            matches!(
                err,
                tickwire_quic::client::ClientError::Refused {
                    code: ErrorCode::Unauthenticated,
                    ..
                }
            ),
            "{err}"
        );
    }
    // A token entitled to BTC* asks for everything: gets BTC only.
    let mut config = h.client_config(BTC_ONLY, &["*"], Policy::Disconnect);
    config.subscriptions.push(SubscribeRequest {
        id: 2,
        kind: ChannelKind::Notifications,
        policy: Policy::Disconnect,
        patterns: vec!["*".into()],
    });
    let mut c = Client::connect(config).await.expect("connects");
    let mut seen = Seen::default();
    subscribed(&mut c, &mut seen).await;
    for i in 0..3000 {
        h.publish(quote((i % 3) as u32, i));
    }
    collect_until(&mut c, &mut seen, |s| {
        s.count(md(0)) >= 1000 && !s.refused.is_empty()
    })
    .await;
    assert_eq!(seen.count(md(0)), 1000);
    assert_eq!(
        seen.count(md(1)) + seen.count(md(2)),
        0,
        "never outside entitlements"
    );
    assert!(matches!(
        seen.refused[0],
        Delivery::Refused {
            id: 2,
            code: ErrorCode::NotEntitled,
            ..
        }
    ));
    h.stop();
}

/// A CA (self-signed) and a client certificate it signs: (CA PEM, client auth).
fn ca_and_client(name: &str) -> (String, ClientAuth) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} CA"));
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    let key = KeyPair::generate().expect("client key");
    let mut params = CertificateParams::new(vec![format!("{name}-subscriber")]).expect("params");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca).expect("client certificate");
    let auth = ClientAuth {
        chain: vec![cert.der().to_vec()],
        key: key.serialize_der(),
    };
    (ca.pem(), auth)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_certificates_of_the_client_ca() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca_pem, good) = ca_and_client("good");
    let (_, wrong) = ca_and_client("wrong");
    let ca_path = dir.path().join("clients-ca.pem");
    std::fs::write(&ca_path, ca_pem).expect("CA written");
    let mut h = Harness::start_with(Limits::default(), FanoutConfig::default(), |c| {
        c.client_ca = Some(ca_path.clone());
    });

    let mut config = h.client_config(TOKEN, &["*"], Policy::Disconnect);
    config.client_auth = Some(good);
    config.reconnect = false;
    let mut c = Client::connect(config)
        .await
        .expect("a certificate of the CA is admitted");
    let mut seen = Seen::default();
    subscribed(&mut c, &mut seen).await;
    for i in 0..100 {
        h.publish(quote(0, i));
    }
    collect_until(&mut c, &mut seen, |s| s.count(md(0)) >= 100).await;

    for (what, auth) in [("no certificate", None), ("another CA's", Some(wrong))] {
        let mut config = h.client_config(TOKEN, &["*"], Policy::Disconnect);
        config.client_auth = auth;
        config.reconnect = false;
        let refused = tokio::time::timeout(WAIT, Client::connect(config))
            .await
            .expect("answered in time");
        let err = refused.expect_err(what);
        eprintln!("{what}: {err}");
        assert!(
            matches!(err, tickwire_quic::client::ClientError::Connect { .. }),
            "{what}: {err}"
        );
    }
    // The admitted subscriber carries on.
    for i in 100..200 {
        h.publish(quote(0, i));
    }
    collect_until(&mut c, &mut seen, |s| s.count(md(0)) >= 200).await;
    assert!(seen.disconnects.is_empty(), "{:?}", seen.disconnects);
    h.stop();
}

/// Opens a raw connection, sends `bytes` on the control stream, returns the close code.
async fn close_code_after(h: &Harness, bytes: Vec<u8>) -> Option<ErrorCode> {
    let conn = connect_raw(h.server.local_addr(), "localhost", &h.cert)
        .await
        .expect("connects");
    let (mut send, _recv) = conn.open_bi().await.expect("stream");
    let _ = send.write_all(&bytes).await;
    let _ = tokio::time::timeout(WAIT, conn.closed())
        .await
        .expect("closed in time");
    tickwire_quic::client::close_code(&conn).0
}

fn hello() -> Vec<u8> {
    Control::Hello {
        token: TOKEN.into(),
        client: "raw".into(),
    }
    .to_frame()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_closes_only_that_connection() {
    let mut h = Harness::start(Limits::default(), FanoutConfig::default());
    let mut good = Client::connect(h.client_config(TOKEN, &["*"], Policy::Disconnect))
        .await
        .expect("connects");
    let mut seen = Seen::default();
    subscribed(&mut good, &mut seen).await;

    // Garbage before hello.
    let garbage: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8).collect();
    let code = close_code_after(&h, garbage.clone()).await;
    assert!(
        matches!(
            code,
            Some(ErrorCode::UnsupportedVersion | ErrorCode::Protocol | ErrorCode::FrameTooLarge)
        ),
        "{code:?}"
    );
    // Garbage after a good hello.
    let mut bytes = hello();
    bytes.extend_from_slice(&[0, 0, 0, 0, 1, 0x77, 0, 0]);
    assert_eq!(close_code_after(&h, bytes).await, Some(ErrorCode::Protocol));
    // Wrong version.
    let mut bytes = hello();
    bytes[4] = 9;
    assert_eq!(
        close_code_after(&h, bytes).await,
        Some(ErrorCode::UnsupportedVersion)
    );
    // Oversized frame.
    let mut bytes = hello();
    bytes.extend_from_slice(&[0, 0, 0, 0x10, 1, MessageType::Subscribe as u8, 0, 0]);
    assert_eq!(
        close_code_after(&h, bytes).await,
        Some(ErrorCode::FrameTooLarge)
    );
    // Subscribe flood.
    let mut bytes = hello();
    for id in 1..=100 {
        Control::Subscribe(SubscribeRequest {
            id,
            kind: ChannelKind::MarketData,
            policy: Policy::Conflate,
            patterns: vec!["*".into()],
        })
        .encode(&mut bytes);
    }
    assert_eq!(
        close_code_after(&h, bytes).await,
        Some(ErrorCode::TooManySubscriptions)
    );
    // No token at all: the first message is not a hello.
    let bytes = Control::Heartbeat { timestamp_ns: 1 }.to_frame();
    assert_eq!(
        close_code_after(&h, bytes).await,
        Some(ErrorCode::Unauthenticated)
    );

    // The good subscriber carries on.
    for i in 0..500 {
        h.publish(quote(0, i));
    }
    collect_until(&mut good, &mut seen, |s| s.count(md(0)) >= 500).await;
    assert_eq!(seen.count(md(0)), 500);
    assert!(seen.disconnects.is_empty());
    h.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: 200 subscribers for 10 s; run by name"]
async fn soak_200_subscribers() {
    let mut h = Harness::start(Limits::default(), FanoutConfig::default());
    let rss_start = rss_kib();
    let mut clients = Vec::new();
    for _ in 0..200 {
        let mut c = Client::connect(h.client_config(TOKEN, &["*"], Policy::Disconnect))
            .await
            .expect("connects");
        let mut seen = Seen::default();
        subscribed(&mut c, &mut seen).await;
        clients.push((c, seen));
    }
    let mut md_ring = h.md.take().expect("ring");
    let producer = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        let mut expected: HashMap<u32, Vec<u64>> = HashMap::new();
        let mut i = 0u64;
        // ~5k events/s for 10 s, to 200 subscribers: 1M deliveries/s.
        while start.elapsed() < Duration::from_secs(10) {
            for _ in 0..50 {
                let e = quote((i % 3) as u32, i);
                md_ring.publish(|slot| *slot = e).expect("not halted");
                expected
                    .entry((i % 3) as u32)
                    .or_default()
                    .push(e.checksum());
                i += 1;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        (md_ring, expected)
    });
    // Readers run until they hold every event (the target is known once the producer ends).
    let target = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    let readers: Vec<_> = clients
        .into_iter()
        .map(|(mut c, mut seen)| {
            let target = std::sync::Arc::clone(&target);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(60), async {
                    loop {
                        let have = (0..3).map(|k| seen.count(md(k)) as u64).sum::<u64>();
                        if have >= target.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        match tokio::time::timeout(Duration::from_millis(200), c.next()).await {
                            Ok(Some(d)) => seen.record(d),
                            Ok(None) => break,
                            Err(_) => {}
                        }
                    }
                })
                .await;
                seen
            })
        })
        .collect();
    let (md_ring, expected) =
        tokio::task::spawn_blocking(move || producer.join().expect("producer"))
            .await
            .expect("join");
    h.md = Some(md_ring);
    let total: u64 = expected.values().map(|v| v.len() as u64).sum();
    target.store(total, std::sync::atomic::Ordering::Relaxed);
    let rss_end = rss_kib();
    let mut complete = 0;
    for r in readers {
        let seen = r.await.expect("reader");
        if seen.disconnects.is_empty() {
            for k in 0..3 {
                assert_exact(&seen, md(k), &expected[&(k)]);
            }
            complete += 1;
        }
    }
    eprintln!(
        "soak: {total} events to 200 subscribers; {complete} complete; rss {rss_start} KiB -> {rss_end} KiB"
    );
    assert_eq!(complete, 200, "every subscriber kept up and got everything");
    assert!(
        rss_end < rss_start + 1_000_000,
        "memory bounded (< 1 GiB growth)"
    );
    h.stop();
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
