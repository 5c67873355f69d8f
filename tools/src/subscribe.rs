//! `tickwire subscribe`: a QUIC subscriber on the command line (the `tickwire_quic` client).
//!
//! It connects to a running service (`tickwire run`), authenticates with a token, subscribes
//! to market data by instrument pattern, execution reports and notifications, and prints one
//! line per event (readable, or JSON lines with `--json`) on stdout. It reconnects and
//! resumes every channel from its last sequence on its own (the client library does), and
//! reports gaps, refusals and reconnects on stderr. On exit (Ctrl-C, `--count`,
//! `--duration`) it prints a summary to stderr: events, gaps, reconnects, and the latency
//! from each event's receive timestamp to its arrival here (p50/p99/max).
//!
//! Defaults follow the service's data directory: certificate `tickwire-data/quic/cert.der`,
//! token `tickwire-data/quic/token`, server `127.0.0.1:4433`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use tickwire_engine::event::{Body, BookAction, Event, ExecStatus, PRICE_SCALE, SIZE_SCALE, Side};
use tickwire_engine::latency::{Percentiles, format_ns, new_histogram};
use tickwire_quic::client::{
    Client, ClientAuth, ClientConfig, ClientError, Delivery, read_certificate,
};
use tickwire_quic::protocol::{
    ChannelId, ChannelKind, ErrorCode, Policy, SubscribeRequest, batch_flags,
};
use tickwire_strategies::notify::AlertKind;
use tickwire_strategies::risk::RejectReason;
use tokio::sync::Notify;

use crate::timestamp::utc;

/// The service's default token file (`tickwire run` creates it at first start, mode 0600).
const DEFAULT_TOKEN_FILE: &str = "tickwire-data/quic/token";

/// What to do when this subscriber falls behind (see docs/protocol.md, section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    /// Be disconnected, then reconnect and resume without loss (from the server's window
    /// or journal).
    Disconnect,
    /// Skip to the latest quote per instrument (reported as a conflated gap); a trade that
    /// does not fit still disconnects.
    Conflate,
}

/// Options of `tickwire subscribe`.
#[derive(Debug, Clone, Args)]
pub struct SubscribeArgs {
    /// The server, `host:port`.
    #[arg(long, default_value = "127.0.0.1:4433", value_name = "HOST:PORT")]
    pub server: String,
    /// Name the server's certificate is checked against (the self-signed one names
    /// `localhost` and `127.0.0.1`).
    #[arg(long, default_value = "localhost", value_name = "NAME")]
    pub server_name: String,
    /// The server's certificate, DER or PEM, trusted as the only root (pinned).
    #[arg(
        long,
        default_value = "tickwire-data/quic/cert.der",
        value_name = "PATH"
    )]
    pub cert: PathBuf,
    /// The token (visible to other users in the process list: prefer --token-file).
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    pub token: Option<String>,
    /// A file whose first line is the token [default: tickwire-data/quic/token].
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Client certificate chain (PEM), for a server with mutual TLS (`client_ca`).
    #[arg(long, value_name = "PATH", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "PATH", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Market data of the instruments whose symbol matches PATTERN (`*` any run, `?` one
    /// character); repeatable. With no channel option at all: every channel the token may
    /// read (`--md '*' --executions '*' --notifications '*'`).
    #[arg(long = "md", value_name = "PATTERN")]
    pub market_data: Vec<String>,
    /// Execution reports of the strategies whose id matches PATTERN (`*` for all); repeatable.
    #[arg(long = "executions", value_name = "PATTERN")]
    pub executions: Vec<String>,
    /// Notifications of the users whose id matches PATTERN (`*` for all); repeatable.
    #[arg(long = "notifications", value_name = "PATTERN")]
    pub notifications: Vec<String>,
    /// What the server does when this subscriber falls behind.
    #[arg(long, value_enum, default_value = "disconnect")]
    pub policy: PolicyArg,
    /// One JSON object per event and line (prices and sizes as exact decimal strings).
    #[arg(long)]
    pub json: bool,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Time allowed to connect and authenticate, seconds.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub connect_timeout: f64,
}

/// Runs `tickwire subscribe`.
pub fn subscribe(args: &SubscribeArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(args))
}

fn seconds(what: &str, s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("--{what} {s}: not a duration"))
}

fn resolve(server: &str) -> Result<SocketAddr> {
    server
        .to_socket_addrs()
        .with_context(|| format!("--server {server}: not a host:port"))?
        .next()
        .with_context(|| format!("--server {server}: the name has no address"))
}

fn token(args: &SubscribeArgs) -> Result<(String, String)> {
    if let Some(token) = &args.token {
        return Ok((token.clone(), "--token".to_owned()));
    }
    let path = args
        .token_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_TOKEN_FILE));
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading the token file {} (the service writes it at first start; or pass --token)",
            path.display()
        )
    })?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        bail!("the token file {} is empty", path.display());
    }
    Ok((token.to_owned(), path.display().to_string()))
}

fn subscriptions(args: &SubscribeArgs, policy: Policy) -> Vec<SubscribeRequest> {
    let mut out = Vec::new();
    let none =
        args.market_data.is_empty() && args.executions.is_empty() && args.notifications.is_empty();
    let or_all = |patterns: &Vec<String>| {
        if none {
            vec!["*".to_owned()]
        } else {
            patterns.clone()
        }
    };
    for (kind, patterns) in [
        (ChannelKind::MarketData, or_all(&args.market_data)),
        (ChannelKind::ExecutionReports, or_all(&args.executions)),
        (ChannelKind::Notifications, or_all(&args.notifications)),
    ] {
        if !patterns.is_empty() {
            out.push(SubscribeRequest {
                id: out.len() as u32 + 1,
                kind,
                policy,
                patterns,
            });
        }
    }
    out
}

/// Why the loop ended.
enum End {
    Count,
    Duration,
    Signal,
    /// The client stopped for good (a refused reconnect).
    Closed,
}

async fn run(args: &SubscribeArgs) -> Result<()> {
    let addr = resolve(&args.server)?;
    let certificate = read_certificate(&args.cert).map_err(|e| match e {
        ClientError::Certificate { path, reason } => anyhow::anyhow!(
            "the server certificate {}: {reason} (the service keeps it in tickwire-data/quic/; \
             pass --cert)",
            path.display()
        ),
        other => other.into(),
    })?;
    let (token, token_source) = token(args)?;
    let policy = match args.policy {
        PolicyArg::Disconnect => Policy::Disconnect,
        PolicyArg::Conflate => Policy::Conflate,
    };
    let mut config = ClientConfig::new(addr, certificate, &token);
    config.server_name = args.server_name.clone();
    config.name = "tickwire-subscribe".to_owned();
    config.subscriptions = subscriptions(args, policy);
    config.connect_timeout = seconds("connect-timeout", args.connect_timeout)?;
    if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) {
        config.client_auth = Some(ClientAuth::from_pem_files(cert, key)?);
    }
    let wanted = config.subscriptions.len();
    let hint = "is `tickwire run` running?";
    let mut client = match Client::connect(config.clone()).await {
        Ok(c) => c,
        Err(ClientError::Timeout) => bail!(
            "cannot connect to {addr}: no answer within {:?} ({hint})",
            config.connect_timeout
        ),
        Err(ClientError::Connect { addr, reason }) => {
            bail!("cannot connect to {addr}: {reason} ({hint})")
        }
        Err(ClientError::Refused {
            code: ErrorCode::Unauthenticated,
            message,
        }) => bail!(
            "{addr} refused the token from {token_source}: {message} (UNAUTHENTICATED; check \
             --token / --token-file)"
        ),
        Err(ClientError::Setup(reason)) => bail!(
            "setting up TLS with the server certificate {}: {reason}",
            args.cert.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("subscribing at {addr}")),
    };

    let stop = Arc::new(Notify::new());
    install_ctrl_c(&stop)?;
    let deadline = args
        .duration
        .map(|s| seconds("duration", s))
        .transpose()?
        .map(|d| tokio::time::Instant::now() + d);
    let started = Instant::now();
    let mut latency = new_histogram();
    let mut printed = 0u64;
    let mut per_channel: BTreeMap<(u8, u32), u64> = BTreeMap::new();
    let mut subscribed: HashSet<u32> = HashSet::new();
    let mut refused: HashSet<u32> = HashSet::new();
    let (mut gaps, mut conflated, mut missing) = (0u64, 0u64, 0u64);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let end = 'events: loop {
        let delivery = tokio::select! {
            d = client.next() => d,
            _ = stop.notified() => break End::Signal,
            _ = sleep_until(deadline) => break End::Duration,
        };
        let Some(delivery) = delivery else {
            break End::Closed;
        };
        match delivery {
            Delivery::Batch(batch) => {
                for (i, event) in batch.events.iter().enumerate() {
                    if args.count.is_some_and(|n| printed >= n) {
                        break;
                    }
                    let sequence = batch.first_sequence + i as u64;
                    let _ =
                        latency.record(batch.arrival_ns.saturating_sub(event.receive_ts).max(1));
                    *per_channel
                        .entry((batch.channel.kind as u8, batch.channel.key))
                        .or_default() += 1;
                    let line = if args.json {
                        json_line(
                            batch.channel,
                            sequence,
                            batch.flags,
                            event,
                            batch.arrival_ns,
                        )
                    } else {
                        human_line(batch.channel, sequence, batch.flags, event)
                    };
                    writeln!(out, "{line}").context("writing to stdout")?;
                    printed += 1;
                }
                out.flush().context("writing to stdout")?;
                if args.count.is_some_and(|n| printed >= n) {
                    break End::Count;
                }
            }
            Delivery::Gap {
                channel,
                expected,
                got,
                conflated: was_conflated,
            } => {
                let n = got - expected;
                if was_conflated {
                    conflated += 1;
                } else {
                    gaps += 1;
                }
                missing += n;
                eprintln!(
                    "gap on {}: sequences {expected}..{} ({n} events) {}",
                    channel_label(channel),
                    got - 1,
                    if was_conflated {
                        "conflated by the server (policy conflate)"
                    } else {
                        "LOST"
                    }
                );
            }
            Delivery::Connected {
                session,
                reconnects,
                restarted,
            } => {
                if !restarted.is_empty() {
                    let kinds: Vec<&str> = restarted.iter().map(|k| kind_name(*k)).collect();
                    eprintln!(
                        "reconnected to {addr} (session {session}): the server restarted, so the {} \
                         channels count from 1 again and resume from the start of its new run; \
                         the others resume from the last sequences",
                        kinds.join(" and ")
                    );
                } else if reconnects > 0 {
                    eprintln!(
                        "reconnected to {addr} (session {session}); resuming from the last sequences"
                    );
                } else {
                    eprintln!("connected to {addr} (session {session})");
                }
            }
            Delivery::Disconnected { code, reason } => {
                let code = code.map_or_else(|| "connection lost".to_owned(), |c| c.to_string());
                eprintln!("disconnected from {addr}: {code} ({reason}); reconnecting");
            }
            Delivery::Subscribed { id } => {
                if subscribed.insert(id) || refused.remove(&id) {
                    let what = describe(&config.subscriptions, id);
                    eprintln!("subscribed: {what}");
                }
            }
            Delivery::Refused { id, code, message } => {
                let what = describe(&config.subscriptions, id);
                eprintln!("refused: {what}: {code} ({message})");
                subscribed.remove(&id);
                refused.insert(id);
                if code == ErrorCode::ResumeTooOld {
                    client.close().await;
                    summary(
                        &client,
                        &latency,
                        printed,
                        &per_channel,
                        gaps,
                        conflated,
                        missing,
                        started,
                    );
                    bail!(
                        "{what}: the server no longer holds the events after our last sequence \
                         ({message}); they are lost"
                    );
                }
                if refused.len() == wanted {
                    break 'events End::Closed;
                }
            }
        }
    };
    drop(out);
    // A clean close: the server frees this subscriber at once instead of finding it stopped
    // reading.
    client.close().await;
    summary(
        &client,
        &latency,
        printed,
        &per_channel,
        gaps,
        conflated,
        missing,
        started,
    );
    match end {
        End::Count | End::Duration | End::Signal => Ok(()),
        End::Closed if refused.len() == wanted => {
            bail!("every subscription was refused by {addr}")
        }
        End::Closed => bail!("the connection to {addr} ended and could not be resumed"),
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// First Ctrl-C (or SIGTERM): stop and print the summary. Second: exit now.
fn install_ctrl_c(stop: &Arc<Notify>) -> Result<()> {
    let stop = Arc::clone(stop);
    let already = AtomicBool::new(false);
    ctrlc::set_handler(move || {
        if already.swap(true, Ordering::Relaxed) {
            std::process::exit(130);
        }
        stop.notify_one();
    })
    .context("installing the Ctrl-C handler")
}

fn describe(subs: &[SubscribeRequest], id: u32) -> String {
    subs.iter().find(|s| s.id == id).map_or_else(
        || format!("subscription {id}"),
        |s| format!("{} {}", kind_name(s.kind), s.patterns.join(",")),
    )
}

#[allow(clippy::too_many_arguments)]
fn summary(
    client: &Client,
    latency: &hdrhistogram::Histogram<u64>,
    events: u64,
    per_channel: &BTreeMap<(u8, u32), u64>,
    gaps: u64,
    conflated: u64,
    missing: u64,
    started: Instant,
) {
    let secs = started.elapsed().as_secs_f64();
    let stats = client.stats();
    eprintln!(
        "summary: {events} events on {} channel{} in {secs:.1} s; gaps {gaps} lost + {conflated} \
         conflated ({missing} sequences skipped); duplicates dropped {}; reconnects {}",
        per_channel.len(),
        if per_channel.len() == 1 { "" } else { "s" },
        stats.duplicates.load(Ordering::Relaxed),
        stats.reconnects.load(Ordering::Relaxed),
    );
    if events > 0 {
        let p = Percentiles::of(latency);
        eprintln!(
            "latency receive_ts -> arrival: p50 {} p99 {} max {} ({} events)",
            format_ns(p.p50),
            format_ns(p.p99),
            format_ns(p.max),
            p.count
        );
    }
}

fn kind_name(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::MarketData => "md",
        ChannelKind::Notifications => "notifications",
        ChannelKind::ExecutionReports => "executions",
    }
}

fn channel_label(channel: ChannelId) -> String {
    format!("{}/{}", kind_name(channel.kind), channel.key)
}

/// A price in 10⁻⁹ as an exact decimal, trailing zeros trimmed: `100.5`, `-0.000000001`.
fn px(v: i64) -> String {
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    decimal(sign, a / PRICE_SCALE as u64, a % PRICE_SCALE as u64, 9)
}

/// A size in 10⁻⁸ as an exact decimal, trailing zeros trimmed.
fn sz(v: u64) -> String {
    decimal("", v / SIZE_SCALE, v % SIZE_SCALE, 8)
}

fn decimal(sign: &str, whole: u64, frac: u64, digits: usize) -> String {
    if frac == 0 {
        return format!("{sign}{whole}");
    }
    let f = format!("{frac:0digits$}");
    format!("{sign}{whole}.{}", f.trim_end_matches('0'))
}

fn side(code: u8) -> &'static str {
    match Side::from_code(code) {
        Side::Bid => "buy",
        Side::Ask => "sell",
        Side::None => "-",
    }
}

/// The name of a code, or `unknown(<code>)` for a code this client does not know (the
/// only case that allocates).
fn named(code: u8, name: Option<&'static str>) -> Cow<'static, str> {
    name.map_or_else(|| Cow::Owned(format!("unknown({code})")), Cow::Borrowed)
}

fn action(code: u8) -> Cow<'static, str> {
    named(code, BookAction::from_code(code).map(BookAction::name))
}

fn status(code: u8) -> Cow<'static, str> {
    named(code, ExecStatus::from_code(code).map(ExecStatus::name))
}

/// A reject reason's name; `none` for 0 (the report is not a reject).
fn reason(code: u8) -> Cow<'static, str> {
    if code == 0 {
        return Cow::Borrowed("none");
    }
    named(code, RejectReason::from_code(code).map(RejectReason::name))
}

fn alert(code: u8) -> Cow<'static, str> {
    named(code, AlertKind::from_code(code).map(AlertKind::name))
}

fn flag_note(flags: u8) -> &'static str {
    if flags & batch_flags::CONFLATED != 0 {
        " [conflated]"
    } else if flags & batch_flags::REPLAY != 0 {
        " [replay]"
    } else {
        ""
    }
}

/// One readable line: time, channel, sequence, kind, then the body.
fn human_line(channel: ChannelId, sequence: u64, flags: u8, e: &Event) -> String {
    let head = format!(
        "{} {:<16} #{sequence:<8}",
        utc(e.receive_ts),
        channel_label(channel)
    );
    let body = match e.body() {
        Some(Body::Quote(q)) => format!(
            "quote  bid {} x {}  ask {} x {}",
            px(q.bid_px),
            sz(q.bid_size),
            px(q.ask_px),
            sz(q.ask_size)
        ),
        Some(Body::Trade(t)) => format!(
            "trade  {} x {}  aggressor {}  id {}",
            px(t.price),
            sz(t.size),
            side(t.aggressor),
            t.trade_id
        ),
        Some(Body::BookDelta(b)) => format!(
            "book   {} {} {} x {}  order {}",
            action(b.action),
            side(b.side),
            px(b.price),
            sz(b.size),
            b.order_id
        ),
        Some(Body::Status(s)) => format!(
            "status {}  reason {:?}",
            s.status,
            String::from_utf8_lossy(&s.reason).trim_end_matches('\0')
        ),
        Some(Body::ExecutionReport(r)) => format!(
            "exec   order {} {} {} px {} filled {} leaves {} strategy {} reason {}",
            r.order_id,
            side(r.side),
            status(r.status),
            px(r.price),
            sz(r.filled),
            sz(r.leaves),
            r.strategy,
            reason(r.reason)
        ),
        Some(Body::Notification(n)) => format!(
            "notify user {} rule {} alert {} value {} threshold {} order {}",
            n.user,
            n.rule,
            alert(n.alert),
            px(n.value),
            px(n.threshold),
            n.order_id
        ),
        Some(Body::Order(_)) | None => format!("kind {}", e.kind),
    };
    format!("{head} {body}  inst {}{}", e.instrument, flag_note(flags))
}

/// One JSON object: the header, the body fields (prices and sizes as exact decimal strings)
/// and the latency to arrival.
fn json_line(channel: ChannelId, sequence: u64, flags: u8, e: &Event, arrival_ns: u64) -> String {
    let mut v = json!({
        "channel": kind_name(channel.kind),
        "key": channel.key,
        "sequence": sequence,
        "kind": e.kind().map_or("unknown", |k| k.name()),
        "instrument": e.instrument,
        "feed": e.feed,
        "exchange_ts": e.exchange_ts,
        "receive_ts": e.receive_ts,
        "arrival_ns": arrival_ns,
        "latency_ns": arrival_ns.saturating_sub(e.receive_ts),
        "replay": flags & batch_flags::REPLAY != 0,
        "conflated": flags & batch_flags::CONFLATED != 0,
    });
    let body = match e.body() {
        Some(Body::Quote(q)) => json!({
            "bid_px": px(q.bid_px), "bid_size": sz(q.bid_size),
            "ask_px": px(q.ask_px), "ask_size": sz(q.ask_size), "seq": q.seq,
        }),
        Some(Body::Trade(t)) => json!({
            "price": px(t.price), "size": sz(t.size), "trade_id": t.trade_id,
            "seq": t.seq, "aggressor": side(t.aggressor),
        }),
        Some(Body::BookDelta(b)) => json!({
            "order_id": b.order_id, "price": px(b.price), "size": sz(b.size), "seq": b.seq,
            "side": side(b.side), "action": action(b.action),
        }),
        Some(Body::Status(s)) => json!({
            "seq": s.seq, "status": s.status,
            "reason": String::from_utf8_lossy(&s.reason).trim_end_matches('\0'),
        }),
        Some(Body::ExecutionReport(r)) => json!({
            "order_id": r.order_id, "price": px(r.price), "filled": sz(r.filled),
            "leaves": sz(r.leaves), "strategy": r.strategy, "side": side(r.side),
            "status": status(r.status), "reason": reason(r.reason),
        }),
        Some(Body::Notification(n)) => json!({
            "user": n.user, "rule": n.rule, "value": px(n.value),
            "threshold": px(n.threshold), "order_id": n.order_id, "alert": alert(n.alert),
        }),
        Some(Body::Order(_)) | None => Value::Null,
    };
    if let (Some(map), Value::Object(body)) = (v.as_object_mut(), body) {
        map.extend(body);
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact_and_trimmed() {
        assert_eq!(px(100 * PRICE_SCALE + PRICE_SCALE / 2), "100.5");
        assert_eq!(px(-1), "-0.000000001");
        assert_eq!(px(0), "0");
        assert_eq!(px(i64::MIN), "-9223372036.854775808");
        assert_eq!(sz(SIZE_SCALE), "1");
        assert_eq!(sz(1), "0.00000001");
    }

    #[test]
    fn codes_print_as_names_not_as_debug_text() {
        use tickwire_engine::event::{BookDelta, ExecutionReport, Notification};
        let channel = ChannelId {
            kind: ChannelKind::ExecutionReports,
            key: 0,
        };
        let mut e = Event::new(0, 1, 0, 0);
        e.set_execution_report(ExecutionReport {
            order_id: 2,
            status: ExecStatus::Rejected as u8,
            reason: RejectReason::MaxOrderSize.code(),
            side: Side::Ask as u8,
            ..ExecutionReport::default()
        });
        let line = human_line(channel, 0, 0, &e);
        assert!(line.contains("sell rejected px"), "{line}");
        assert!(line.contains("reason max_order_size"), "{line}");
        let json: Value = serde_json::from_str(&json_line(channel, 0, 0, &e, 0)).expect("JSON");
        assert_eq!(json["status"], "rejected");
        assert_eq!(json["reason"], "max_order_size");

        e.set_execution_report(ExecutionReport {
            status: ExecStatus::Filled as u8,
            ..ExecutionReport::default()
        });
        let json: Value = serde_json::from_str(&json_line(channel, 0, 0, &e, 0)).expect("JSON");
        assert_eq!(
            (&json["status"], &json["reason"]),
            (&json!("filled"), &json!("none"))
        );

        e.set_book_delta(BookDelta {
            action: BookAction::Modify as u8,
            ..BookDelta::default()
        });
        assert!(human_line(channel, 0, 0, &e).contains("book   modify "));
        let json: Value = serde_json::from_str(&json_line(channel, 0, 0, &e, 0)).expect("JSON");
        assert_eq!(json["action"], "modify");

        e.set_notification(Notification {
            alert: AlertKind::Fill as u8,
            ..Notification::default()
        });
        assert!(human_line(channel, 0, 0, &e).contains("alert fills "));
        e.set_notification(Notification {
            alert: 200,
            ..Notification::default()
        });
        let json: Value = serde_json::from_str(&json_line(channel, 0, 0, &e, 0)).expect("JSON");
        assert_eq!(json["alert"], "unknown(200)");
    }
}
