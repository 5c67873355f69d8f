//! The `tickwire` binary end to end: `gen`, `record`, `inspect`, `replay`, and their errors.
//!
//! `CARGO_BIN_EXE_tickwire` exists only for the binary's own package, so the binary is
//! found next to this test's: `<target>/<profile>/tickwire`, this executable being
//! `<target>/<profile>/deps/cli-<hash>`. Before the first test it is (re)built with
//! `cargo build -p tickwire` into that same target directory and profile, so a plain
//! `cargo test --workspace` on a fresh clone tests the binary of the current sources (the
//! build is a no-op when it is up to date). Every child runs under a timeout and is killed
//! if it overruns.

use std::path::Path;

use serde_json::Value;

mod support;
use support::{Output, tickwire};

/// Runs and expects success.
fn ok(args: &[&str]) -> Output {
    let out = tickwire(args);
    assert!(
        out.success,
        "tickwire {args:?} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        out.code, out.stdout, out.stderr
    );
    out
}

/// Runs and expects failure; returns stderr.
fn fails(args: &[&str]) -> String {
    let out = tickwire(args);
    assert!(
        !out.success && out.code.is_some_and(|c| c != 0),
        "tickwire {args:?} should fail:\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    out.stderr
}

fn json(args: &[&str]) -> Value {
    let out = ok(args);
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("tickwire {args:?}: not JSON ({e}):\n{}", out.stdout))
}

fn u64_at(value: &Value, pointer: &str) -> u64 {
    value
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number at {pointer} in {value:#}"))
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

#[test]
fn gen_journal_then_inspect_reports_the_counts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = dir.path().join("j");
    let journal = path_str(&journal);
    ok(&[
        "gen",
        "journal",
        journal,
        "--events",
        "5000",
        "--instruments",
        "3",
        "--seed",
        "11",
    ]);
    let report = json(&["inspect", journal, "--json"]);
    assert_eq!(u64_at(&report, "/events"), 5000);
    assert_eq!(u64_at(&report, "/first_sequence"), 0);
    assert_eq!(u64_at(&report, "/end_sequence"), 5000);
    let instruments = report["instruments"].as_array().expect("instruments");
    assert_eq!(instruments.len(), 3);
    assert_eq!(instruments[0]["symbol"], "SYN000");
    let per_instrument: u64 = instruments.iter().map(|i| u64_at(i, "/events")).sum();
    assert_eq!(per_instrument, 5000);
    let kinds = u64_at(&report, "/kinds/quote") + u64_at(&report, "/kinds/trade");
    assert_eq!(kinds, 5000);
    assert_eq!(u64_at(&report, "/gap_events"), 0);
    assert_eq!(report["segments"].as_array().map(Vec::len), Some(1));
    assert!(report["recovery"].is_null());
    // 2024-01-02T14:30:00Z, 1 µs apart (the default simulated rate).
    assert_eq!(report["first_receive"]["utc"], "2024-01-02T14:30:00Z");
    assert_eq!(
        u64_at(&report, "/last_receive/ns") - u64_at(&report, "/first_receive/ns"),
        4999 * 1_000
    );

    let text = ok(&["inspect", journal]).stdout;
    assert!(text.contains("events     5000"), "{text}");
    assert!(text.contains("SYN002"), "{text}");

    // The same directory again is refused rather than appended to.
    let e = fails(&["gen", "journal", journal, "--events", "10"]);
    assert!(
        e.contains(journal) && e.contains("already holds a journal"),
        "{e}"
    );
}

#[test]
fn a_damaged_journal_is_read_up_to_the_damage_then_named() {
    use tickwire_engine::journal::{BLOCK_SIZE, RECORDS_PER_BLOCK};
    const RECORD: usize = std::mem::size_of::<tickwire_engine::event::Event>();
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = dir.path().join("j");
    let journal_str = path_str(&journal);
    ok(&[
        "gen",
        "journal",
        journal_str,
        "--events",
        "5000",
        "--seed",
        "3",
    ]);
    let segment = std::fs::read_dir(&journal)
        .expect("journal directory")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "twj"))
        .expect("a segment");
    // Blocks of RECORDS_PER_BLOCK records after a block header, after the segment header:
    // 5000 records are 83 full blocks and one of 20.
    let block_header = BLOCK_SIZE - RECORDS_PER_BLOCK * RECORD;
    let mut bytes = std::fs::read(&segment).expect("segment");
    let header_len = bytes.len() - (83 * BLOCK_SIZE + block_header + 20 * RECORD);
    let record = |i: usize| {
        header_len
            + i / RECORDS_PER_BLOCK * BLOCK_SIZE
            + block_header
            + i % RECORDS_PER_BLOCK * RECORD
    };
    bytes[record(3000) + 17] ^= 0x10;
    std::fs::write(&segment, &bytes).expect("damage one record");

    // Replay serves the 3000 records before the damage, then fails naming it.
    let e = fails(&["replay", journal_str, "--speed", "max"]);
    assert!(
        e.contains("failed after 3000 events")
            && e.contains("record checksum mismatch at sequence 3000")
            && e.contains(&segment.display().to_string()),
        "{e}"
    );
    // Inspect reports what it could read, then fails.
    let out = tickwire(&["inspect", journal_str]);
    assert!(!out.success, "{}", out.stdout);
    assert!(out.stdout.contains("events     3000"), "{}", out.stdout);
    assert!(
        out.stdout.contains("damage     read up to sequence 3000"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("damaged at sequence 3000"),
        "{}",
        out.stderr
    );
    // Nothing on disk changed.
    assert_eq!(std::fs::read(&segment).expect("segment"), bytes);
}

#[test]
fn itch_recorded_inspected_and_replayed_counts_match() {
    let dir = tempfile::tempdir().expect("temp dir");
    let itch = dir.path().join("day.itch");
    let journal = dir.path().join("journal");
    let (itch, journal) = (path_str(&itch), path_str(&journal));
    ok(&[
        "gen",
        "itch",
        itch,
        "--messages",
        "20000",
        "--stocks",
        "4",
        "--seed",
        "5",
    ]);
    let recorded = ok(&["record", itch, "--out", journal, "--fsync", "never"]).stdout;
    let report = json(&["inspect", journal, "--json"]);
    let events = u64_at(&report, "/events");
    assert!(
        events > 20_000,
        "every order-flow message makes events: {events}"
    );
    assert!(
        recorded.starts_with(&format!("recorded {events} events, 4 instruments")),
        "{recorded}"
    );
    assert_eq!(report["instruments"].as_array().map(Vec::len), Some(4));

    let replayed = json(&["replay", journal, "--speed", "max", "--json"]);
    assert_eq!(u64_at(&replayed, "/events"), events);
    assert_eq!(replayed["format"], "journal");
    for hop in replayed["hops"].as_array().expect("hops") {
        assert_eq!(u64_at(hop, "/events"), events, "{hop}");
        assert!(u64_at(hop, "/p50_ns") <= u64_at(hop, "/max_ns"));
    }
    // The ITCH file itself decodes to the same events.
    let direct = json(&["replay", itch, "--speed", "max", "--json"]);
    assert_eq!(u64_at(&direct, "/events"), events);

    // Starting at a sequence replays the rest.
    let tail = json(&[
        "replay",
        journal,
        "--speed",
        "max",
        "--from-seq",
        "1000",
        "--json",
    ]);
    assert_eq!(u64_at(&tail, "/events"), events - 1000);
    // Starting past the end is an error that gives the journal's range, not a silent
    // run of nothing.
    let e = fails(&[
        "replay",
        journal,
        "--speed",
        "max",
        "--from-seq",
        "999999999",
    ]);
    assert!(
        e.contains("--from-seq 999999999 is past the end of the journal")
            && e.contains(&format!("it holds sequences 0..{events}")),
        "{e}"
    );

    // Recording into the same journal again is refused without --append.
    let e = fails(&["record", itch, "--out", journal]);
    assert!(e.contains(journal) && e.contains("--append"), "{e}");
}

#[test]
fn replay_with_a_config_runs_the_trading_pipeline_and_writes_the_latency_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("mm.toml");
    std::fs::write(
        &config,
        "[strategies.mm]\nkind = \"market_maker\"\nuser = 3\ninstrument = \"SYN001\"\n\
         size = 1\nmax_position = 3\nhalf_spread_bps = 1\n\n\
         [[alerts]]\nuser = 3\nrule = \"fills\"\nstrategy = \"mm\"\n",
    )
    .expect("write config");
    let out = dir.path().join("out");
    let report = json(&[
        "replay",
        "synthetic:events=200000,instruments=2,rate=10000",
        "--speed",
        "max",
        "--config",
        path_str(&config),
        "--out",
        path_str(&out),
        "--json",
    ]);
    assert_eq!(u64_at(&report, "/events"), 200_000);
    assert!(u64_at(&report, "/orders") > 0, "{report:#}");
    assert!(u64_at(&report, "/fills") > 0, "{report:#}");
    assert_eq!(
        u64_at(&report, "/notifications"),
        u64_at(&report, "/fills"),
        "one alert per fill (no cool-down): {report:#}"
    );
    let hops: Vec<&str> = report["hops"]
        .as_array()
        .expect("hops")
        .iter()
        .filter_map(|h| h["hop"].as_str())
        .collect();
    assert!(hops.contains(&"tick->order"), "{hops:?}");
    for file in ["latency.hlog", "latency.svg", "latency.png"] {
        let path = out.join(file);
        let len = std::fs::metadata(&path).map_or(0, |m| m.len());
        assert!(len > 0, "{} missing or empty", path.display());
    }
    let hlog = std::fs::read_to_string(out.join("latency.hlog")).expect("log");
    assert!(hlog.contains("tick->order"), "the log tags each hop");

    // A strategy on an instrument the feed does not have is refused, naming it.
    std::fs::write(
        &config,
        "[strategies.x]\nkind = \"market_maker\"\ninstrument = \"NOPE\"\nsize = 1\nmax_position = 1\n",
    )
    .expect("write config");
    let e = fails(&[
        "replay",
        "synthetic:events=1000",
        "--speed",
        "max",
        "--config",
        path_str(&config),
    ]);
    assert!(e.contains("NOPE"), "{e}");
}

#[test]
fn replay_starts_at_a_time_and_paces_at_a_factor() {
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = dir.path().join("j");
    let journal = path_str(&journal);
    // 1000 events 1 ms apart from 2024-01-02T14:30:00Z: one second of recorded time.
    ok(&[
        "gen", "journal", journal, "--events", "1000", "--rate", "1000",
    ]);
    let half = json(&[
        "replay",
        journal,
        "--speed",
        "max",
        "--from-time",
        "2024-01-02T14:30:00.5Z",
        "--json",
    ]);
    assert_eq!(u64_at(&half, "/events"), 500);
    let by_ns = json(&[
        "replay",
        journal,
        "--speed",
        "max",
        "--from-time",
        "1704205800900000000",
        "--json",
    ]);
    assert_eq!(u64_at(&by_ns, "/events"), 100);
    // At 20x the second of recorded time takes about 50 ms (not asserted: no timings).
    let paced = json(&["replay", journal, "--speed", "20x", "--json"]);
    assert_eq!(u64_at(&paced, "/events"), 1000);
    assert_eq!(paced["speed"], "20x");

    // A synthetic spec skips what is before the time instead of seeking.
    let synthetic = json(&[
        "replay",
        "synthetic:events=1000,rate=1000",
        "--speed",
        "max",
        "--from-time",
        "2024-01-02T14:30:00.25Z",
        "--json",
    ]);
    assert_eq!(u64_at(&synthetic, "/events"), 750);
}

#[test]
fn bad_paths_and_flags_fail_with_messages_naming_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-journal");
    let missing = path_str(&missing);

    let e = fails(&["inspect", missing]);
    assert!(e.contains(missing) && e.contains("does not exist"), "{e}");
    let e = fails(&["inspect", dir.path().to_str().expect("utf-8")]);
    assert!(e.contains("no journal segments"), "{e}");

    let missing_file = format!("{missing}.gz");
    let e = fails(&["replay", &missing_file, "--speed", "max"]);
    assert!(e.contains(&missing_file), "{e}");
    let out = dir.path().join("out");
    let e = fails(&["record", &missing_file, "--out", path_str(&out)]);
    assert!(e.contains(&missing_file), "{e}");

    let odd = dir.path().join("odd.bin");
    std::fs::write(&odd, b"not market data").expect("write");
    let e = fails(&["replay", path_str(&odd)]);
    assert!(
        e.contains("odd.bin") && e.contains("cannot tell the format"),
        "{e}"
    );

    let e = fails(&["replay", "synthetic", "--speeed", "max"]);
    assert!(e.contains("--speeed"), "{e}");
    let e = fails(&["replay", "synthetic", "--speed", "fast"]);
    assert!(e.contains("fast") && e.contains("--speed"), "{e}");
    let e = fails(&["replay", "synthetic", "--from-time", "yesterday"]);
    assert!(e.contains("yesterday") && e.contains("--from-time"), "{e}");
    let e = fails(&["replay", "synthetic", "--from-seq", "5"]);
    assert!(e.contains("--from-seq") && e.contains("journal"), "{e}");
    let e = fails(&["replay", "synthetic:colour=red"]);
    assert!(e.contains("synthetic:colour=red"), "{e}");
    let e = fails(&["gen", "itch", path_str(&odd), "--stocks", "0"]);
    assert!(e.contains("--stocks"), "{e}");
    let e = fails(&["frobnicate"]);
    assert!(e.contains("frobnicate"), "{e}");

    // Help documents the arguments.
    let help = ok(&["replay", "--help"]).stdout;
    assert!(
        help.contains("--from-time") && help.contains("RFC 3339"),
        "{help}"
    );
}

#[test]
fn binance_recording_replays_and_records_with_its_counts() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/binance");
    let file = data.join("spot_btcusdt_20240808.gz");
    if !file.exists() {
        eprintln!(
            "SKIPPED: {} is absent (the recorded data lives in ../shared/data, see its README)",
            file.display()
        );
        return;
    }
    let file = path_str(&file);
    let replayed = json(&["replay", file, "--speed", "max", "--json"]);
    assert_eq!(replayed["format"], "binance");
    let events = u64_at(&replayed, "/events");

    let dir = tempfile::tempdir().expect("temp dir");
    let journal = dir.path().join("btc");
    let journal = path_str(&journal);
    ok(&["record", file, "--out", journal, "--fsync", "never"]);
    let report = json(&["inspect", journal, "--json"]);
    assert_eq!(u64_at(&report, "/events"), events);
    // The data README: bookTicker 28,040 and trade 9,757 lines, one event each.
    assert_eq!(u64_at(&report, "/kinds/quote"), 28_040);
    assert_eq!(u64_at(&report, "/kinds/trade"), 9_757);
    assert_eq!(report["instruments"][0]["symbol"], "BTCUSDT");
    assert!(
        report["first_receive"]["utc"]
            .as_str()
            .is_some_and(|t| t.starts_with("2024-08-08T")),
        "{report:#}"
    );
}

#[test]
fn inspect_reports_a_torn_tail_without_cutting_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = dir.path().join("j");
    let journal_str = path_str(&journal);
    ok(&["gen", "journal", journal_str, "--events", "1000"]);
    let segment = journal.join("00000000000000000000.twj");
    let clean_len = std::fs::metadata(&segment).expect("segment").len();
    // Half a record of garbage: what a writer killed mid-write leaves.
    let mut bytes = std::fs::read(&segment).expect("read segment");
    bytes.extend_from_slice(&[0xa5; 32]);
    std::fs::write(&segment, &bytes).expect("tear the tail");

    let report = json(&["inspect", journal_str, "--json"]);
    assert_eq!(u64_at(&report, "/events"), 1000);
    assert_eq!(u64_at(&report, "/recovery/file_bytes"), clean_len + 32);
    assert_eq!(u64_at(&report, "/recovery/valid_bytes"), clean_len);
    assert_eq!(report["recovery"]["truncated"], false);
    let text = ok(&["inspect", journal_str]).stdout;
    assert!(
        text.contains("torn tail") && text.contains("not truncated"),
        "{text}"
    );
    assert_eq!(
        std::fs::metadata(&segment).expect("segment").len(),
        clean_len + 32,
        "inspect only reads"
    );
}

#[test]
fn replay_writes_the_hdrhistogram_log_and_the_latency_plot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("latency out");
    let report = json(&[
        "replay",
        "synthetic:events=5000,instruments=4",
        "--speed",
        "max",
        "--json",
        "--out",
        path_str(&out),
    ]);
    assert_eq!(u64_at(&report, "/events"), 5000);
    let files: Vec<&str> = report["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f.as_str().expect("a path"))
        .collect();
    let names = ["latency.hlog", "latency.svg", "latency.png"];
    assert_eq!(files.len(), names.len(), "{files:?}");
    for (file, name) in files.iter().zip(names) {
        assert_eq!(Path::new(file), out.join(name));
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!bytes.is_empty(), "{file} is empty");
    }
    let log = std::fs::read_to_string(out.join("latency.hlog")).expect("log");
    assert!(log.starts_with("#"), "not an interval log:\n{log}");
    for hop in [
        "receive->top-of-book",
        "receive->trade-stats",
        "receive->audit",
    ] {
        assert!(
            log.contains(&format!("Tag={hop},")),
            "{hop} missing:\n{log}"
        );
    }
    let png = std::fs::read(out.join("latency.png")).expect("png");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let svg = std::fs::read_to_string(out.join("latency.svg")).expect("svg");
    assert!(svg.contains("<svg") && svg.contains("<polyline"), "{svg}");
}
