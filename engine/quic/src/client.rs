//! The async client: connects, authenticates, subscribes, and on any disconnect reconnects
//! and resumes every channel from its last sequence; reports gaps and conflation; measures
//! latency from each event's `receive_ts` to its arrival.
//!
//! ```no_run
//! # async fn example(cert: Vec<u8>) -> Result<(), tickwire_quic::client::ClientError> {
//! use tickwire_quic::client::{Client, ClientConfig, Delivery};
//! use tickwire_quic::protocol::{ChannelKind, Policy, SubscribeRequest};
//!
//! let mut config = ClientConfig::new("127.0.0.1:4433".parse().expect("address"), cert, "secret");
//! config.subscriptions.push(SubscribeRequest {
//!     id: 1, kind: ChannelKind::MarketData, policy: Policy::Conflate, patterns: vec!["BTC*".into()],
//! });
//! let mut client = Client::connect(config).await?;
//! while let Some(delivery) = client.next().await {
//!     if let Delivery::Batch(batch) = delivery {
//!         println!("{:?} #{}: {} events", batch.channel, batch.first_sequence, batch.events.len());
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use quinn::rustls;
use quinn::rustls::pki_types::CertificateDer;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use tickwire_engine::clock::wall_ns;
use tickwire_engine::event::Event;
use tickwire_engine::latency::new_histogram;

use crate::protocol::{
    ALPN, ChannelId, ChannelKind, Control, DEFAULT_MAX_FRAME, ErrorCode, MessageType,
    SubscribeRequest, access_event_batch, aligned_payload, batch_flags, decode_control,
};
use crate::server::{ReadError, read_header};

/// Why the client could not connect.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// TLS or endpoint setup failed.
    #[error("setup: {0}")]
    Setup(String),
    /// The connection could not be established or was lost during the handshake.
    #[error("connecting to {addr}: {reason}")]
    Connect {
        /// The server.
        addr: SocketAddr,
        /// What happened.
        reason: String,
    },
    /// The server refused (bad token, limits).
    #[error("refused by the server: {code} ({message})")]
    Refused {
        /// The error code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// A certificate or key file could not be read or parsed.
    #[error("{path}: {reason}")]
    Certificate {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The client's configuration; defaults in brackets.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server's address.
    pub server: SocketAddr,
    /// Name to verify the certificate against [`localhost`].
    pub server_name: String,
    /// The server's certificate (DER), trusted as the only root (pinned).
    pub server_certificate: Vec<u8>,
    /// The token.
    pub token: String,
    /// Client name sent in hello [`tickwire-client`].
    pub name: String,
    /// Subscriptions, renewed (with resume) on every reconnect.
    pub subscriptions: Vec<SubscribeRequest>,
    /// Reconnect after a disconnect [true].
    pub reconnect: bool,
    /// Delay before a reconnect attempt [50 ms].
    pub reconnect_delay: Duration,
    /// Time allowed for connect + hello [5 s].
    pub connect_timeout: Duration,
    /// Deliveries buffered for the application [1024].
    pub buffer: usize,
    /// QUIC receive window for the event stream, bytes [8 MiB: ~130k events in flight].
    pub receive_window: u32,
    /// The client certificate for a server with mutual TLS [none].
    pub client_auth: Option<ClientAuth>,
    /// UDP send and receive buffer asked of the kernel, bytes [`SOCKET_BUFFER`, 4 MiB; 0
    /// keeps the kernel's defaults].
    ///
    /// [`SOCKET_BUFFER`]: crate::SOCKET_BUFFER
    pub socket_buffer: usize,
}

/// A client certificate chain and its private key, for servers that require mutual TLS.
#[derive(Clone)]
pub struct ClientAuth {
    /// The chain, leaf first, DER.
    pub chain: Vec<Vec<u8>>,
    /// The private key, DER (PKCS#8, PKCS#1 or SEC1).
    pub key: Vec<u8>,
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuth")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl ClientAuth {
    /// Reads a PEM certificate chain and a PEM private key. Errors name the file.
    pub fn from_pem_files(
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Result<Self, ClientError> {
        use rustls::pki_types::PrivateKeyDer;
        use rustls::pki_types::pem::PemObject;
        let bad = |path: &std::path::Path, reason: String| ClientError::Certificate {
            path: path.to_owned(),
            reason,
        };
        let chain: Vec<Vec<u8>> = CertificateDer::pem_file_iter(cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| bad(cert, e.to_string()))?
            .into_iter()
            .map(|c| c.as_ref().to_vec())
            .collect();
        if chain.is_empty() {
            return Err(bad(cert, "no CERTIFICATE block".to_owned()));
        }
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
        Ok(Self {
            chain,
            key: key_der.secret_der().to_vec(),
        })
    }
}

impl ClientConfig {
    /// A configuration for `server` with pinned certificate `server_certificate` and
    /// `token`, no subscriptions yet.
    pub fn new(server: SocketAddr, server_certificate: Vec<u8>, token: &str) -> Self {
        Self {
            server,
            server_name: "localhost".to_owned(),
            server_certificate,
            token: token.to_owned(),
            name: "tickwire-client".to_owned(),
            subscriptions: Vec::new(),
            reconnect: true,
            reconnect_delay: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(5),
            buffer: 1024,
            receive_window: 8 << 20,
            client_auth: None,
            socket_buffer: crate::SOCKET_BUFFER,
        }
    }
}

/// Consecutive events of one channel, as they arrived.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The channel.
    pub channel: ChannelId,
    /// Sequence of `events[0]`.
    pub first_sequence: u64,
    /// Frame flags ([`batch_flags`]).
    pub flags: u8,
    /// The events (duplicates already removed).
    pub events: Vec<Event>,
    /// Wall clock at arrival, ns since the Unix epoch.
    pub arrival_ns: u64,
}

/// What the client hands the application.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// Events.
    Batch(Batch),
    /// Sequences `expected..got` of `channel` were not received: conflated away for a slow
    /// subscriber when `conflated`, lost otherwise.
    Gap {
        /// The channel.
        channel: ChannelId,
        /// The sequence that was due.
        expected: u64,
        /// The sequence that came.
        got: u64,
        /// Whether the server conflated them (policy `conflate`).
        conflated: bool,
    },
    /// Connected (first time or again); resume requests were sent.
    Connected {
        /// The server's session id.
        session: u64,
        /// Reconnects so far.
        reconnects: u64,
        /// The server restarted since the last connection (its `epoch` changed): the
        /// channels of these kinds count from 1 again, and were resumed from their start
        /// (what the new run still retains) instead of from the last sequences received.
        restarted: Vec<ChannelKind>,
    },
    /// The connection ended; `code` is the server's close code, if it closed it.
    Disconnected {
        /// The close code.
        code: Option<ErrorCode>,
        /// The reason text.
        reason: String,
    },
    /// A subscription is active (live events follow).
    Subscribed {
        /// The subscription id.
        id: u32,
    },
    /// A subscription was refused (for example `RESUME_TOO_OLD`, `NOT_ENTITLED`).
    Refused {
        /// The subscription id.
        id: u32,
        /// The error.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
}

/// Counters, updated by the client's tasks.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Events delivered.
    pub events: AtomicU64,
    /// Events received twice and dropped (a correct server sends none).
    pub duplicates: AtomicU64,
    /// Gaps that were not conflation.
    pub gaps: AtomicU64,
    /// Conflation gaps.
    pub conflations: AtomicU64,
    /// Reconnects.
    pub reconnects: AtomicU64,
}

struct Shared {
    force: Notify,
    /// `Client::close` was called: close the connection cleanly and stop.
    close: Notify,
    closing: AtomicBool,
    stats: ClientStats,
    last: Mutex<HashMap<ChannelId, u64>>,
}

/// A connected client (see the module docs). Dropping it closes the connection in the
/// background; [`close`](Self::close) closes it and waits.
pub struct Client {
    deliveries: mpsc::Receiver<Delivery>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    latency: Histogram<u64>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("stats", &self.shared.stats)
            .finish()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Not an abort: the connection's stream tasks would outlive it and hold the
        // connection open. The background task closes it cleanly and ends (`close` waits
        // for that; a drop does not).
        self.shared.closing.store(true, Ordering::Relaxed);
        self.shared.close.notify_one();
    }
}

fn client_transport(receive_window: u32) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    // Large receive windows by default: a subscriber should be limited by its own reading,
    // not by flow-control round trips.
    t.stream_receive_window(receive_window.into())
        .receive_window((receive_window.saturating_mul(2)).into())
        .max_concurrent_bidi_streams(0u32.into())
        .max_concurrent_uni_streams(1u32.into())
        .keep_alive_interval(Some(Duration::from_secs(2)))
        .datagram_receive_buffer_size(None);
    if let Ok(idle) = quinn::IdleTimeout::try_from(Duration::from_secs(10)) {
        t.max_idle_timeout(Some(idle));
    }
    t
}

/// A certificate file as DER: the file itself if it is DER, or the first certificate of a
/// PEM file (`-----BEGIN CERTIFICATE-----`). Errors name the file.
pub fn read_certificate(path: &std::path::Path) -> Result<Vec<u8>, ClientError> {
    use rustls::pki_types::pem::PemObject;
    let bytes = std::fs::read(path).map_err(|e| ClientError::Certificate {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if !bytes.starts_with(b"-----BEGIN") {
        return Ok(bytes);
    }
    CertificateDer::pem_slice_iter(&bytes)
        .next()
        .ok_or_else(|| "no CERTIFICATE block".to_owned())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map(|c| c.as_ref().to_vec())
        .map_err(|reason| ClientError::Certificate {
            path: path.to_owned(),
            reason,
        })
}

/// A QUIC connection to a tickwire server, TLS with the pinned certificate and the
/// `tickwire/1` ALPN, nothing sent yet. For tools and tests that speak the protocol raw.
pub async fn connect_raw(
    server: SocketAddr,
    server_name: &str,
    certificate: &[u8],
) -> Result<quinn::Connection, ClientError> {
    let (_endpoint, conn) = connect_with(
        server,
        server_name,
        certificate,
        8 << 20,
        crate::SOCKET_BUFFER,
        None,
    )
    .await?;
    // The connection keeps the endpoint's driver alive.
    Ok(conn)
}

async fn connect_with(
    server: SocketAddr,
    server_name: &str,
    certificate: &[u8],
    receive_window: u32,
    socket_buffer: usize,
    client_auth: Option<&ClientAuth>,
) -> Result<(quinn::Endpoint, quinn::Connection), ClientError> {
    let setup = |e: &dyn fmt::Display| ClientError::Setup(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(certificate.to_vec()))
        .map_err(|e| setup(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| setup(&e))?
        .with_root_certificates(roots);
    let mut tls = match client_auth {
        None => tls.with_no_client_auth(),
        Some(auth) => {
            use rustls::pki_types::PrivateKeyDer;
            let chain = auth
                .chain
                .iter()
                .map(|c| CertificateDer::from(c.clone()))
                .collect();
            let key = PrivateKeyDer::try_from(auth.key.clone()).map_err(|e| setup(&e))?;
            tls.with_client_auth_cert(chain, key)
                .map_err(|e| setup(&e))?
        }
    };
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic_tls = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| setup(&e))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic_tls));
    config.transport_config(Arc::new(client_transport(receive_window)));
    let bind: SocketAddr = if server.ip().is_loopback() {
        SocketAddr::from(([127, 0, 0, 1], 0))
    } else {
        SocketAddr::from(([0, 0, 0, 0], 0))
    };
    let socket = crate::bind_udp(bind, socket_buffer).map_err(|e| setup(&e))?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| setup(&"no tokio runtime: connect from inside one"))?;
    let mut endpoint =
        quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)
            .map_err(|e| setup(&e))?;
    endpoint.set_default_client_config(config);
    let connecting = endpoint
        .connect(server, server_name)
        .map_err(|e| setup(&e))?;
    let conn = connecting.await.map_err(|e| ClientError::Connect {
        addr: server,
        reason: e.to_string(),
    })?;
    Ok((endpoint, conn))
}

/// The server's close code and reason, if it closed the connection.
pub fn close_code(conn: &quinn::Connection) -> (Option<ErrorCode>, String) {
    match conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(close)) => (
            ErrorCode::from_code(close.error_code.into_inner()),
            String::from_utf8_lossy(&close.reason).into_owned(),
        ),
        Some(other) => (None, other.to_string()),
        None => (None, "open".to_owned()),
    }
}

struct Established {
    /// Kept to wait for a clean close to reach the server (`Client::close`).
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    session: u64,
    max_frame: u32,
    heartbeat: Duration,
    /// The server's sequence space (`Welcome.epoch`).
    epoch: u64,
    /// The kinds whose sequences restarted since `previous_epoch` (empty on a first connect).
    restarted: Vec<ChannelKind>,
}

/// Connects, authenticates, and subscribes with a resume point for every channel in `last`.
/// `previous_epoch` is the server's epoch at the last connection: if it changed, the kinds
/// whose sequences restarted resume from their start instead.
async fn establish(
    config: &ClientConfig,
    last: &HashMap<ChannelId, u64>,
    previous_epoch: Option<u64>,
) -> Result<Established, ClientError> {
    let (endpoint, conn) = connect_with(
        config.server,
        &config.server_name,
        &config.server_certificate,
        config.receive_window,
        config.socket_buffer,
        config.client_auth.as_ref(),
    )
    .await?;
    let lost = |conn: &quinn::Connection| {
        let (code, reason) = close_code(conn);
        match code {
            Some(code) => ClientError::Refused {
                code,
                message: reason,
            },
            None => ClientError::Connect {
                addr: config.server,
                reason,
            },
        }
    };
    let Ok((mut send, mut recv)) = conn.open_bi().await else {
        return Err(lost(&conn));
    };
    let hello = Control::Hello {
        token: config.token.as_bytes().to_vec(),
        client: config.name.clone(),
    };
    if send.write_all(&hello.to_frame()).await.is_err() {
        return Err(lost(&conn));
    }
    let answer = match read_control(&mut recv).await {
        Ok(answer) => answer,
        Err(_) => return Err(lost(&conn)),
    };
    let (session, max_frame, heartbeat_ms, epoch, durable) = match answer {
        Control::Welcome {
            session,
            max_frame,
            heartbeat_ms,
            epoch,
            durable,
        } => (session, max_frame, heartbeat_ms, epoch, durable),
        Control::Error { code, message, .. } => {
            return Err(ClientError::Refused { code, message });
        }
        other => {
            return Err(ClientError::Connect {
                addr: config.server,
                reason: format!("expected welcome, got {:?}", other.message_type()),
            });
        }
    };
    // The subscribed kinds whose sequences restarted with the server (none if it did not).
    let mut restarted: Vec<ChannelKind> = Vec::new();
    if previous_epoch.is_some_and(|p| p != epoch) {
        for kind in config.subscriptions.iter().map(|s| s.kind) {
            if durable & kind.bit() == 0 && !restarted.contains(&kind) {
                restarted.push(kind);
            }
        }
    }
    // Resume points first (held by the server until the subscribe), then the subscribes.
    // A channel whose sequences restarted resumes from its start: everything the new run
    // still retains, or `RESUME_TOO_OLD` if it no longer does.
    let mut out = Vec::new();
    for sub in &config.subscriptions {
        for (channel, sequence) in last {
            if channel.kind == sub.kind {
                let last_sequence = if restarted.contains(&channel.kind) {
                    0
                } else {
                    *sequence
                };
                Control::Resume {
                    id: sub.id,
                    key: channel.key,
                    last_sequence,
                }
                .encode(&mut out);
            }
        }
        Control::Subscribe(sub.clone()).encode(&mut out);
        if out.len() > 32 << 10 {
            if send.write_all(&out).await.is_err() {
                return Err(lost(&conn));
            }
            out.clear();
        }
    }
    if send.write_all(&out).await.is_err() {
        return Err(lost(&conn));
    }
    Ok(Established {
        endpoint,
        conn,
        send,
        recv,
        session,
        max_frame: if max_frame == 0 {
            DEFAULT_MAX_FRAME
        } else {
            max_frame
        },
        heartbeat: Duration::from_millis(u64::from(heartbeat_ms.max(100))),
        epoch,
        restarted,
    })
}

async fn read_control(recv: &mut quinn::RecvStream) -> Result<Control, ReadError> {
    let (kind, len) = read_header(recv, crate::protocol::MAX_CONTROL_FRAME).await?;
    let mut payload = vec![0u8; len];
    recv.read_exact(&mut payload)
        .await
        .map_err(|_| ReadError::Closed)?;
    decode_control(kind, &payload).map_err(ReadError::Wire)
}

impl Client {
    /// Connects, authenticates and subscribes; then runs in the background, reconnecting
    /// and resuming on every disconnect (if `config.reconnect`).
    pub async fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        let shared = Arc::new(Shared {
            force: Notify::new(),
            close: Notify::new(),
            closing: AtomicBool::new(false),
            stats: ClientStats::default(),
            last: Mutex::new(HashMap::new()),
        });
        let first = tokio::time::timeout(
            config.connect_timeout,
            establish(&config, &HashMap::new(), None),
        )
        .await
        .map_err(|_| ClientError::Timeout)??;
        let (tx, deliveries) = mpsc::channel(config.buffer.max(1));
        let task = tokio::spawn(run(config, first, tx, Arc::clone(&shared)));
        Ok(Self {
            deliveries,
            shared,
            task,
            latency: new_histogram(),
        })
    }

    /// The next delivery; `None` once the client stopped for good (no reconnect, or a
    /// refused reconnect).
    pub async fn next(&mut self) -> Option<Delivery> {
        let delivery = self.deliveries.recv().await?;
        if let Delivery::Batch(batch) = &delivery {
            for e in &batch.events {
                let _ = self
                    .latency
                    .record(batch.arrival_ns.saturating_sub(e.receive_ts).max(1));
            }
        }
        Some(delivery)
    }

    /// Latency from each delivered event's `receive_ts` to its arrival, ns.
    pub fn latency(&self) -> &Histogram<u64> {
        &self.latency
    }

    /// The client's counters.
    pub fn stats(&self) -> &ClientStats {
        &self.shared.stats
    }

    /// The last sequence received per channel.
    pub fn last_sequences(&self) -> HashMap<ChannelId, u64> {
        self.shared
            .last
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// Drops the current connection abruptly (for tests and operators); the client then
    /// reconnects and resumes.
    pub fn force_disconnect(&self) {
        self.shared.force.notify_one();
    }

    /// Closes the connection cleanly and stops: the server sees QUIC `NO_ERROR` with the
    /// reason "client closing" at once, rather than a subscriber that stopped reading
    /// (which it would disconnect as slow once its queue filled, or time out). Waits up to
    /// [`CLOSE_TIMEOUT`] for the close to go out; deliveries not yet taken are discarded.
    pub async fn close(&mut self) {
        self.shared.closing.store(true, Ordering::Relaxed);
        self.shared.close.notify_one();
        // Senders now fail at once: the background task never waits on a full channel.
        self.deliveries.close();
        if tokio::time::timeout(CLOSE_TIMEOUT, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

/// How long [`Client::close`] waits for its close to reach the server.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

async fn run(
    config: ClientConfig,
    first: Established,
    tx: mpsc::Sender<Delivery>,
    shared: Arc<Shared>,
) {
    let mut epoch = first.epoch;
    let mut current = Some(first);
    let mut reconnects = 0u64;
    loop {
        if shared.closing.load(Ordering::Relaxed) {
            return;
        }
        let established = match current.take() {
            Some(e) => e,
            None => {
                tokio::time::sleep(config.reconnect_delay).await;
                let last = shared.last.lock().map(|m| m.clone()).unwrap_or_default();
                let attempt = establish(&config, &last, Some(epoch));
                match tokio::time::timeout(config.connect_timeout, attempt).await {
                    Ok(Ok(e)) => {
                        reconnects += 1;
                        shared.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                        e
                    }
                    Ok(Err(ClientError::Refused { code, message }))
                        if matches!(code, ErrorCode::Unauthenticated) =>
                    {
                        let _ = tx
                            .send(Delivery::Disconnected {
                                code: Some(code),
                                reason: message,
                            })
                            .await;
                        return;
                    }
                    _ => continue,
                }
            }
        };
        epoch = established.epoch;
        if !established.restarted.is_empty() {
            // Their old sequences mean nothing in the new run: forget them, or the first
            // events of the new run would be dropped as duplicates.
            if let Ok(mut last) = shared.last.lock() {
                last.retain(|channel, _| !established.restarted.contains(&channel.kind));
            }
        }
        if tx
            .send(Delivery::Connected {
                session: established.session,
                reconnects,
                restarted: established.restarted.clone(),
            })
            .await
            .is_err()
        {
            return;
        }
        let (code, reason) = serve(established, &tx, &shared).await;
        if tx
            .send(Delivery::Disconnected { code, reason })
            .await
            .is_err()
            || !config.reconnect
        {
            return;
        }
    }
}

/// Runs one connection until it ends; returns the server's close code and reason.
async fn serve(
    established: Established,
    tx: &mpsc::Sender<Delivery>,
    shared: &Arc<Shared>,
) -> (Option<ErrorCode>, String) {
    let Established {
        endpoint,
        conn,
        mut send,
        mut recv,
        max_frame,
        heartbeat,
        ..
    } = established;
    let control_tx = tx.clone();
    // The server's `Error{code, 0}` before it closes: the reason even if its QUIC close is
    // lost (the client then sees only a stateless reset).
    let server_error: Arc<Mutex<Option<(ErrorCode, String)>>> = Arc::default();
    let control_error = Arc::clone(&server_error);
    let mut control = tokio::spawn(async move {
        let mut tick = tokio::time::interval(heartbeat);
        loop {
            tokio::select! {
                msg = read_control(&mut recv) => match msg {
                    Ok(Control::Error { code, id, message }) if id != 0 => {
                        if control_tx.send(Delivery::Refused { id, code, message }).await.is_err() { return; }
                    }
                    Ok(Control::Subscribed { id }) => {
                        if control_tx.send(Delivery::Subscribed { id }).await.is_err() { return; }
                    }
                    Ok(Control::Error { code, message, .. }) => {
                        if let Ok(mut slot) = control_error.lock() {
                            *slot = Some((code, message));
                        }
                        return;
                    }
                    Err(_) => return,
                    Ok(_) => {}
                },
                _ = tick.tick() => {
                    let beat = Control::Heartbeat { timestamp_ns: wall_ns() }.to_frame();
                    if send.write_all(&beat).await.is_err() { return; }
                }
            }
        }
    });
    let events_conn = conn.clone();
    let events_tx = tx.clone();
    let events_shared = Arc::clone(shared);
    let mut events = tokio::spawn(async move {
        let Ok(mut stream) = events_conn.accept_uni().await else {
            return;
        };
        read_events(&mut stream, max_frame, &events_tx, &events_shared).await;
    });
    let (forced, closing) = tokio::select! {
        _ = &mut control => (false, false),
        _ = &mut events => (false, false),
        _ = shared.force.notified() => (true, false),
        _ = shared.close.notified() => (false, true),
    };
    if closing {
        control.abort();
        events.abort();
        conn.close(0u32.into(), b"client closing");
        // The close frame goes out from the endpoint's driver: wait for it (the endpoint is
        // idle once the connection drained, a few round trips).
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, endpoint.wait_idle()).await;
        return (None, "closed by the client".to_owned());
    }
    if !forced {
        // A stream ended: the connection is closing, or the server finished the event
        // stream because it is shutting down and will close once every subscriber has
        // read its last frame. Keep the control stream open meanwhile (closing it would
        // end the session first) and give the close reason time to land.
        let _ = tokio::time::timeout(Duration::from_secs(3), conn.closed()).await;
    }
    control.abort();
    events.abort();
    let told = server_error.lock().ok().and_then(|mut slot| slot.take());
    let outcome = if forced {
        (None, "disconnect forced by the client".to_owned())
    } else if let Some((code, message)) = told {
        (Some(code), message)
    } else {
        close_code(&conn)
    };
    conn.close(0u32.into(), b"client disconnect");
    outcome
}

async fn read_events(
    stream: &mut quinn::RecvStream,
    max_frame: u32,
    tx: &mpsc::Sender<Delivery>,
    shared: &Shared,
) {
    loop {
        let Ok((kind, len)) = read_header(stream, max_frame).await else {
            return;
        };
        if kind != MessageType::EventBatch {
            return;
        }
        // Read straight into a 16-byte-aligned buffer: the archive is then aligned.
        let mut payload = aligned_payload(len);
        if stream.read_exact(payload.as_mut_slice()).await.is_err() {
            return;
        }
        let arrival_ns = wall_ns();
        let Ok(archived) = access_event_batch(&payload) else {
            return;
        };
        let Some(kind) = ChannelKind::from_code(archived.channel) else {
            return;
        };
        let channel = ChannelId {
            kind,
            key: archived.key.to_native(),
        };
        let first = archived.first_sequence.to_native();
        let flags = archived.flags;
        let n = archived.events.len() as u64;
        // `last` moves only when the batch is handed over (below): this task can be
        // aborted at any await (a disconnect), and a batch it read but never delivered must
        // be asked for again by the resume, not skipped.
        let (gap, skip) = {
            let Ok(last) = shared.last.lock() else {
                return;
            };
            let prev = last.get(&channel).copied();
            let gap = prev.filter(|p| first > p + 1).map(|p| p + 1);
            let skip = prev.map_or(0, |p| (p + 1).saturating_sub(first)).min(n);
            (gap, skip)
        };
        if skip > 0 {
            shared.stats.duplicates.fetch_add(skip, Ordering::Relaxed);
        }
        if let Some(expected) = gap {
            let conflated = flags & batch_flags::CONFLATED != 0;
            let counter = if conflated {
                &shared.stats.conflations
            } else {
                &shared.stats.gaps
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let report = Delivery::Gap {
                channel,
                expected,
                got: first,
                conflated,
            };
            if tx.send(report).await.is_err() {
                return;
            }
        }
        if n == skip {
            continue;
        }
        let mut events = Vec::with_capacity((n - skip) as usize);
        for archived_event in archived.events.iter().skip(skip as usize) {
            match rkyv::deserialize::<Event, rkyv::rancor::Error>(archived_event) {
                Ok(e) => events.push(e),
                Err(_) => return,
            }
        }
        let batch = Batch {
            channel,
            first_sequence: first + skip,
            flags,
            events,
            arrival_ns,
        };
        // Reserve first (an abort while waiting loses nothing), then record the sequence
        // and hand the batch over with no await between: both happen or neither.
        let Ok(permit) = tx.reserve().await else {
            return;
        };
        let Ok(mut last) = shared.last.lock() else {
            return;
        };
        last.insert(channel, first + n - 1);
        drop(last);
        shared
            .stats
            .events
            .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
        permit.send(Delivery::Batch(batch));
    }
}
