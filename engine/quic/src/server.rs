//! The QUIC server: TLS (configured or self-signed, kept on disk), token authentication,
//! entitlements, limits, one control stream and one event stream per connection.
//!
//! Each accepted connection gets a task that runs the control protocol and a writer task
//! that drains the connection's bounded queue (filled by the [`PublisherAgent`]) into its
//! event stream with `write_all_chunks` (the shared frames are written without a copy).
//! Anything wrong with one connection closes that connection with an [`ErrorCode`]; the
//! endpoint and the other connections carry on.
//!
//! [`PublisherAgent`]: crate::fanout::PublisherAgent

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::rustls;
use quinn::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::fanout::{Closer, ConnId, FanoutHandle};
use crate::protocol::{
    ALPN, ChannelKind, Control, DEFAULT_MAX_FRAME, ErrorCode, HEADER_LEN, MAX_CONTROL_FRAME,
    MessageType, WireError, decode_control, decode_header, pattern_matches,
};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Reading or writing the certificate or key.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Generating the self-signed certificate.
    #[error("generating the certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// TLS configuration refused the certificate or key.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// A PEM file could not be parsed.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Binding the UDP socket.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// The channels and names a token may read: patterns for one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entitlement {
    /// The kind.
    pub kind: ChannelKind,
    /// Patterns over channel names (as in `Subscribe`).
    pub patterns: Vec<String>,
}

impl Entitlement {
    /// An entitlement to `kind`'s channels matching `patterns`.
    pub fn new<S: Into<String>>(kind: ChannelKind, patterns: impl IntoIterator<Item = S>) -> Self {
        Self {
            kind,
            patterns: patterns.into_iter().map(Into::into).collect(),
        }
    }
}

/// A configured token: stored as its SHA-256, never in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// Who holds it, for logs.
    pub name: String,
    /// SHA-256 of the token bytes.
    pub sha256: [u8; 32],
    /// What it may read.
    pub entitlements: Vec<Entitlement>,
}

impl fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEntry")
            .field("name", &self.name)
            .field("entitlements", &self.entitlements)
            .finish_non_exhaustive()
    }
}

impl TokenEntry {
    /// An entry for `secret`, hashed here.
    pub fn new(name: impl Into<String>, secret: &str, entitlements: Vec<Entitlement>) -> Self {
        Self {
            name: name.into(),
            sha256: hash_token(secret.as_bytes()),
            entitlements,
        }
    }
}

/// SHA-256 of a token.
pub fn hash_token(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Server limits; defaults in brackets.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Concurrent connections [1024].
    pub max_connections: usize,
    /// Subscriptions per connection [64].
    pub max_subscriptions: usize,
    /// Largest event-frame payload announced to clients, bytes [4 MiB].
    pub max_frame: u32,
    /// Control frames per connection per second [200].
    pub max_control_per_sec: u32,
    /// Frames in each connection's queue [1024].
    pub queue_frames: usize,
    /// Resume frames held per connection before their subscribe [4096].
    pub max_pending_resumes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_subscriptions: 64,
            max_frame: DEFAULT_MAX_FRAME,
            max_control_per_sec: 200,
            queue_frames: 1024,
            max_pending_resumes: 4096,
        }
    }
}

/// The server's configuration; defaults in brackets.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// UDP address to bind [127.0.0.1:4433].
    pub bind: SocketAddr,
    /// Where the self-signed certificate is kept (`cert.der`, `key.der`) [`./quic-data`].
    pub data_dir: PathBuf,
    /// PEM certificate chain and key files, instead of the self-signed certificate.
    pub cert_files: Option<(PathBuf, PathBuf)>,
    /// Mutual TLS [none]: a PEM file of CA certificates; when set, every client must
    /// present a certificate chain signed by one of them (rustls `WebPkiClientVerifier`),
    /// or the handshake fails, before any token is read.
    pub client_ca: Option<PathBuf>,
    /// Accepted tokens.
    pub tokens: Vec<TokenEntry>,
    /// Limits.
    pub limits: Limits,
    /// Idle timeout [10 s].
    pub idle_timeout: Duration,
    /// QUIC keep-alive PING interval [2 s].
    pub keep_alive: Duration,
    /// Time allowed from handshake to `Hello` [5 s].
    pub hello_timeout: Duration,
    /// Heartbeat interval suggested in `Welcome` [1 s].
    pub heartbeat: Duration,
    /// UDP send and receive buffer asked of the kernel, bytes [`SOCKET_BUFFER`, 4 MiB; 0
    /// keeps the kernel's defaults].
    ///
    /// [`SOCKET_BUFFER`]: crate::SOCKET_BUFFER
    pub socket_buffer: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 4433)),
            data_dir: PathBuf::from("quic-data"),
            cert_files: None,
            client_ca: None,
            tokens: Vec::new(),
            limits: Limits::default(),
            idle_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(2),
            hello_timeout: Duration::from_secs(5),
            heartbeat: Duration::from_secs(1),
            socket_buffer: crate::SOCKET_BUFFER,
        }
    }
}

/// Bytes of randomness in a generated token (printed as 64 hex digits).
const TOKEN_BYTES: usize = 32;

/// The token in `path` (its first line, trimmed), or, if the file does not exist, a new
/// random one (32 bytes from the OS, via `ring`, as 64 hex digits) written there with mode
/// 0600 on Unix (directories created as needed). The service creates its default token this
/// way at first start (`tickwire-data/quic/token`) and `tickwire subscribe` reads it from
/// the same place. An empty file is an error, not an empty token.
pub fn load_or_create_token(path: &Path) -> Result<String, ServerError> {
    let io = |source| ServerError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.lines().next().unwrap_or("").trim();
            if token.is_empty() {
                return Err(ServerError::Io {
                    path: path.to_owned(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the token file is empty",
                    ),
                });
            }
            return Ok(token.to_owned());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let mut secret = [0u8; TOKEN_BYTES];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut secret)
        .map_err(|_| {
            io(std::io::Error::other(
                "the system random number generator failed",
            ))
        })?;
    let token: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| ServerError::Io {
            path: dir.to_owned(),
            source,
        })?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    std::io::Write::write_all(&mut file, format!("{token}\n").as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(token)
}

/// The certificate and key the server presents.
fn load_or_create_certificate(
    config: &ServerConfig,
) -> Result<
    (
        CertificateDer<'static>,
        Vec<CertificateDer<'static>>,
        PrivateKeyDer<'static>,
    ),
    ServerError,
> {
    use rustls::pki_types::pem::PemObject;
    if let Some((cert_path, key_path)) = &config.cert_files {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| ServerError::Pem {
                path: cert_path.clone(),
                reason: e.to_string(),
            })?;
        let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| ServerError::Pem {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        let Some(leaf) = chain.first().cloned() else {
            return Err(ServerError::Pem {
                path: cert_path.clone(),
                reason: "no certificate".to_owned(),
            });
        };
        return Ok((leaf, chain, key));
    }
    let dir = &config.data_dir;
    let cert_path = dir.join("cert.der");
    let key_path = dir.join("key.der");
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ServerError::Io { path, source }
    };
    if cert_path.exists() && key_path.exists() {
        let cert = std::fs::read(&cert_path).map_err(io(&cert_path))?;
        let key = std::fs::read(&key_path).map_err(io(&key_path))?;
        let cert = CertificateDer::from(cert);
        return Ok((
            cert.clone(),
            vec![cert],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        ));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let cert = generated.cert.der().clone();
    let key = generated.signing_key.serialize_der();
    std::fs::write(&key_path, &key).map_err(io(&key_path))?;
    std::fs::write(&cert_path, cert.as_ref()).map_err(io(&cert_path))?;
    Ok((
        cert.clone(),
        vec![cert],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
    ))
}

/// The verifier for mutual TLS: client chains must lead to a CA of the PEM file `path`.
fn client_verifier(
    path: &Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, ServerError> {
    use rustls::pki_types::pem::PemObject;
    let pem = |reason: String| ServerError::Pem {
        path: path.to_owned(),
        reason,
    };
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem(e.to_string()))?;
    if cas.is_empty() {
        return Err(pem("no CA certificate".to_owned()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots
            .add(ca)
            .map_err(|e| pem(format!("CA certificate: {e}")))?;
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| pem(format!("client verifier: {e}")))
}

/// The transport settings, tuned for a stream of small frames to many subscribers:
///
/// * one bidirectional stream per client (control), none unidirectional;
/// * a 1 MiB per-stream / 2 MiB per-connection receive window on the server (it receives
///   only control frames, so this bounds what a client can make it buffer);
/// * a 4 MiB send window per connection: with the 1024-frame queue, the most memory one slow
///   subscriber can pin beyond the shared frames themselves;
/// * keep-alive below the idle timeout so quiet subscribers stay connected;
/// * no datagrams.
fn server_transport(config: &ServerConfig) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(1u32.into())
        .max_concurrent_uni_streams(0u32.into())
        .stream_receive_window((1u32 << 20).into())
        .receive_window((2u32 << 20).into())
        .send_window(4 << 20)
        .keep_alive_interval(Some(config.keep_alive))
        .datagram_receive_buffer_size(None);
    if let Ok(idle) = quinn::IdleTimeout::try_from(config.idle_timeout) {
        t.max_idle_timeout(Some(idle));
    }
    t
}

struct Context {
    config: ServerConfig,
    fanout: FanoutHandle,
    active: AtomicUsize,
    /// Event streams still being written (see [`Server::shutdown_gracefully`]).
    writing: Arc<AtomicUsize>,
    next_id: AtomicU64,
}

/// A running server. Dropping it closes the endpoint.
pub struct Server {
    endpoint: quinn::Endpoint,
    certificate: CertificateDer<'static>,
    context: Arc<Context>,
    accept: JoinHandle<()>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.endpoint.local_addr().ok())
            .field("connections", &self.connections())
            .finish()
    }
}

impl Server {
    /// Binds and starts accepting. Must be called inside a tokio runtime.
    pub fn start(config: ServerConfig, fanout: FanoutHandle) -> Result<Self, ServerError> {
        let (certificate, chain, key) = load_or_create_certificate(&config)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])?;
        let builder = match &config.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let verifier = client_verifier(path, provider)?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut tls = builder.with_single_cert(chain, key)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let quic_tls = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| ServerError::Tls(rustls::Error::General(e.to_string())))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(quic_tls));
        server_config.transport_config(Arc::new(server_transport(&config)));
        let bind_error = |source| ServerError::Bind {
            addr: config.bind,
            source,
        };
        let socket = crate::bind_udp(config.bind, config.socket_buffer).map_err(bind_error)?;
        let runtime = quinn::default_runtime().ok_or_else(|| {
            bind_error(std::io::Error::other(
                "no tokio runtime: start the server inside one",
            ))
        })?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server_config),
            socket,
            runtime,
        )
        .map_err(bind_error)?;
        let context = Arc::new(Context {
            config,
            fanout,
            active: AtomicUsize::new(0),
            writing: Arc::new(AtomicUsize::new(0)),
            next_id: AtomicU64::new(1),
        });
        let accept = tokio::spawn(accept_loop(endpoint.clone(), Arc::clone(&context)));
        Ok(Self {
            endpoint,
            certificate,
            context,
            accept,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .unwrap_or_else(|_| self.context.config.bind)
    }

    /// The certificate clients should pin (DER).
    pub fn certificate_der(&self) -> &[u8] {
        self.certificate.as_ref()
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.context.active.load(Ordering::Relaxed)
    }

    /// Stops accepting, lets every event stream finish once the [`PublisherAgent`] has
    /// ended (its rings drained, so it dropped every connection's queue) and the peer has
    /// acknowledged the last byte, then closes every connection with `NO_ERROR` and
    /// `reason`. Gives up waiting after `timeout` (a subscriber that stopped reading) and
    /// closes anyway.
    ///
    /// [`PublisherAgent`]: crate::fanout::PublisherAgent
    pub async fn shutdown_gracefully(&self, reason: &str, timeout: Duration) {
        self.accept.abort();
        let deadline = Instant::now() + timeout;
        while self.context.writing.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.endpoint
            .close(ErrorCode::NoError.var_int(), reason.as_bytes());
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(
            left.max(Duration::from_millis(100)),
            self.endpoint.wait_idle(),
        )
        .await;
    }

    /// Closes every connection with `INTERNAL` ("shutdown") and stops accepting.
    pub fn shutdown(&self) {
        self.endpoint
            .close(ErrorCode::Internal.var_int(), b"server shutting down");
        self.accept.abort();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, context: Arc<Context>) {
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(connection(incoming, Arc::clone(&context)));
    }
}

/// Decrements the active-connection count when the connection task ends.
struct ActiveGuard<'a>(&'a AtomicUsize);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The fan-out's way to close a connection: it hands the code and reason to the
/// connection's task (never blocking), which closes it as [`close_politely`] says.
struct QuicCloser(mpsc::UnboundedSender<(ErrorCode, String)>);

impl Closer for QuicCloser {
    fn close(&self, code: ErrorCode, reason: &str) {
        // Fails only when the connection's task has ended: the connection is closing anyway.
        let _ = self.0.send((code, reason.to_owned()));
    }
}

/// How long a connection closed by the server for falling behind waits for the client to
/// read its `Error` frame and close, before the server closes it.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Closes for the fan-out (`SLOW_CONSUMER`, `UNDELIVERABLE`) so that the client learns the
/// code even when the network drops packets: a QUIC `CONNECTION_CLOSE` is sent once and
/// not retransmitted, and if it is lost the client later meets only a stateless reset
/// ("reset by peer", no code). So the server first sends `Error{code, 0}` on the control
/// stream (reliable, and scheduled ahead of the event stream, see `session`), waits up to
/// [`CLOSE_GRACE`] for the client to close, then closes with the code itself.
async fn close_politely(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    code: ErrorCode,
    reason: String,
) -> Fatal {
    let error = Control::Error {
        code,
        id: 0,
        message: reason.clone(),
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if send.write_all(&error.to_frame()).await.is_ok() {
            conn.closed().await;
        }
    })
    .await;
    (code, reason)
}

async fn connection(incoming: quinn::Incoming, context: Arc<Context>) {
    let Ok(conn) = incoming.await else {
        return;
    };
    let active = context.active.fetch_add(1, Ordering::Relaxed) + 1;
    let _guard = ActiveGuard(&context.active);
    if active > context.config.limits.max_connections {
        conn.close(
            ErrorCode::TooManyConnections.var_int(),
            b"server at its connection limit",
        );
        return;
    }
    let id = context.next_id.fetch_add(1, Ordering::Relaxed);
    let outcome = session(&conn, id, &context).await;
    context.fanout.detach(id);
    if let Err((code, reason)) = outcome {
        conn.close(code.var_int(), reason.as_bytes());
    }
}

/// Why reading a frame stopped.
pub(crate) enum ReadError {
    /// The bytes broke the protocol.
    Wire(WireError),
    /// The stream or connection ended.
    Closed,
}

/// Reads one frame header from `recv`, checked against `max_payload`.
pub(crate) async fn read_header(
    recv: &mut quinn::RecvStream,
    max_payload: u32,
) -> Result<(MessageType, usize), ReadError> {
    let mut header = [0u8; HEADER_LEN];
    recv.read_exact(&mut header)
        .await
        .map_err(|_| ReadError::Closed)?;
    decode_header(&header, max_payload).map_err(ReadError::Wire)
}

async fn read_control(recv: &mut quinn::RecvStream) -> Result<Control, ReadError> {
    let (kind, len) = read_header(recv, MAX_CONTROL_FRAME).await?;
    let mut payload = vec![0u8; len];
    recv.read_exact(&mut payload)
        .await
        .map_err(|_| ReadError::Closed)?;
    decode_control(kind, &payload).map_err(ReadError::Wire)
}

type Fatal = (ErrorCode, String);

async fn send_control(send: &mut quinn::SendStream, msg: &Control) -> Result<(), Fatal> {
    send.write_all(&msg.to_frame())
        .await
        .map_err(|_| (ErrorCode::NoError, String::new()))
}

/// Sends `Error{code, 0}` then returns the fatal error the caller closes with.
async fn fatal(send: &mut quinn::SendStream, code: ErrorCode, message: String) -> Fatal {
    let _ = tokio::time::timeout(
        Duration::from_millis(200),
        send.write_all(
            &Control::Error {
                code,
                id: 0,
                message: message.clone(),
            }
            .to_frame(),
        ),
    )
    .await;
    (code, message)
}

fn authenticate<'a>(tokens: &'a [TokenEntry], token: &[u8]) -> Option<&'a TokenEntry> {
    let presented = hash_token(token);
    // Compare with every entry, in constant time each, without stopping at a match.
    let mut found = None;
    for entry in tokens {
        if bool::from(entry.sha256.ct_eq(&presented)) {
            found = Some(entry);
        }
    }
    found
}

async fn session(conn: &quinn::Connection, id: ConnId, context: &Context) -> Result<(), Fatal> {
    let config = &context.config;
    let limits = &config.limits;
    let unauthenticated = |m: &str| (ErrorCode::Unauthenticated, m.to_owned());
    let (mut send, mut recv) =
        match tokio::time::timeout(config.hello_timeout, conn.accept_bi()).await {
            Err(_) => return Err(unauthenticated("no hello in time")),
            Ok(Err(_)) => return Ok(()),
            Ok(Ok(streams)) => streams,
        };
    let hello = match tokio::time::timeout(config.hello_timeout, read_control(&mut recv)).await {
        Err(_) => {
            return Err(fatal(
                &mut send,
                ErrorCode::Unauthenticated,
                "no hello in time".into(),
            )
            .await);
        }
        Ok(Err(ReadError::Closed)) => return Ok(()),
        Ok(Err(ReadError::Wire(e))) => return Err(fatal(&mut send, e.code(), e.to_string()).await),
        Ok(Ok(msg)) => msg,
    };
    let Control::Hello { token, .. } = hello else {
        return Err(fatal(
            &mut send,
            ErrorCode::Unauthenticated,
            "first message must be hello".into(),
        )
        .await);
    };
    let Some(entry) = authenticate(&config.tokens, &token) else {
        return Err(fatal(
            &mut send,
            ErrorCode::Unauthenticated,
            "unknown token".into(),
        )
        .await);
    };
    send_control(
        &mut send,
        &Control::Welcome {
            session: id,
            max_frame: limits.max_frame,
            heartbeat_ms: config.heartbeat.as_millis() as u32,
            epoch: context.fanout.epoch(),
            durable: context.fanout.durable_kinds(),
        },
    )
    .await?;
    let Ok(events) = conn.open_uni().await else {
        return Ok(());
    };
    // Control frames (an `Error` before a close above all) go ahead of queued events.
    let _ = send.set_priority(1);
    let (queue, frames) = mpsc::channel(limits.queue_frames.max(1));
    let (closer, mut closing) = mpsc::unbounded_channel();
    context
        .fanout
        .attach(id, queue, Arc::new(QuicCloser(closer)));
    // Counted here, released when the writer task is dropped, whether it ran or was
    // aborted before its first poll (see `Server::shutdown_gracefully`).
    let writing = WritingGuard::new(Arc::clone(&context.writing));
    let writer = tokio::spawn(write_events(events, frames, writing));
    let result = tokio::select! {
        biased;
        Some((code, reason)) = closing.recv() => {
            writer.abort();
            Err(close_politely(conn, &mut send, code, reason).await)
        }
        result = control_loop(&mut send, &mut recv, id, entry, context) => result,
    };
    writer.abort();
    result
}

async fn control_loop(
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    conn_id: ConnId,
    entry: &TokenEntry,
    context: &Context,
) -> Result<(), Fatal> {
    let limits = &context.config.limits;
    let mut subscriptions: HashMap<u32, ()> = HashMap::new();
    let mut resumes: HashMap<u32, Vec<(u32, u64)>> = HashMap::new();
    let mut pending_resumes = 0usize;
    let mut window = Instant::now();
    let mut in_window = 0u32;
    loop {
        let msg = match read_control(recv).await {
            Ok(msg) => msg,
            Err(ReadError::Closed) => return Ok(()),
            Err(ReadError::Wire(e)) => return Err(fatal(send, e.code(), e.to_string()).await),
        };
        if window.elapsed() >= Duration::from_secs(1) {
            window = Instant::now();
            in_window = 0;
        }
        in_window += 1;
        if in_window > limits.max_control_per_sec {
            return Err(fatal(
                send,
                ErrorCode::RateLimited,
                "too many control frames".into(),
            )
            .await);
        }
        match msg {
            Control::Subscribe(request) => {
                let sub_id = request.id;
                if subscriptions.contains_key(&sub_id) {
                    send_control(
                        send,
                        &Control::Error {
                            code: ErrorCode::DuplicateSubscription,
                            id: sub_id,
                            message: "id in use".into(),
                        },
                    )
                    .await?;
                    continue;
                }
                if subscriptions.len() >= limits.max_subscriptions {
                    return Err(fatal(
                        send,
                        ErrorCode::TooManySubscriptions,
                        format!("at most {} subscriptions", limits.max_subscriptions),
                    )
                    .await);
                }
                let entitled: Vec<String> = entry
                    .entitlements
                    .iter()
                    .filter(|e| e.kind == request.kind)
                    .flat_map(|e| e.patterns.iter().cloned())
                    .collect();
                let resume = resumes.remove(&sub_id).unwrap_or_default();
                pending_resumes -= resume.len();
                if entitled.is_empty() {
                    send_control(
                        send,
                        &Control::Error {
                            code: ErrorCode::NotEntitled,
                            id: sub_id,
                            message: format!("token may not read {}", request.kind.name()),
                        },
                    )
                    .await?;
                    continue;
                }
                // A channel named outright (no wildcard) that the token may not read is
                // refused now; with wildcards, the entitlement narrows what they match.
                let refused: Vec<&str> = request
                    .patterns
                    .iter()
                    .filter(|p| !p.contains(['*', '?']))
                    .filter(|p| !entitled.iter().any(|e| pattern_matches(e, p)))
                    .map(String::as_str)
                    .collect();
                if !refused.is_empty() {
                    let message = format!(
                        "token may not read {} {} (it may read {})",
                        request.kind.name(),
                        refused.join(", "),
                        entitled.join(", ")
                    );
                    send_control(
                        send,
                        &Control::Error {
                            code: ErrorCode::NotEntitled,
                            id: sub_id,
                            message,
                        },
                    )
                    .await?;
                    continue;
                }
                let answer = context
                    .fanout
                    .subscribe(conn_id, request, entitled, resume)
                    .await;
                match answer {
                    Ok(()) => {
                        subscriptions.insert(sub_id, ());
                        send_control(send, &Control::Subscribed { id: sub_id }).await?;
                    }
                    Err((code, message)) => {
                        send_control(
                            send,
                            &Control::Error {
                                code,
                                id: sub_id,
                                message,
                            },
                        )
                        .await?;
                    }
                }
            }
            Control::Unsubscribe { id } => {
                if subscriptions.remove(&id).is_some()
                    && context.fanout.unsubscribe(conn_id, id).await
                {
                    send_control(send, &Control::Unsubscribed { id }).await?;
                } else {
                    send_control(
                        send,
                        &Control::Error {
                            code: ErrorCode::UnknownSubscription,
                            id,
                            message: "not subscribed".into(),
                        },
                    )
                    .await?;
                }
            }
            Control::Resume {
                id,
                key,
                last_sequence,
            } => {
                if pending_resumes >= limits.max_pending_resumes {
                    return Err(fatal(
                        send,
                        ErrorCode::RateLimited,
                        "too many resume frames".into(),
                    )
                    .await);
                }
                pending_resumes += 1;
                resumes.entry(id).or_default().push((key, last_sequence));
            }
            Control::Heartbeat { timestamp_ns } => {
                send_control(send, &Control::HeartbeatAck { timestamp_ns }).await?;
            }
            other => {
                return Err(fatal(
                    send,
                    ErrorCode::Protocol,
                    format!("{:?} is not a client message here", other.message_type()),
                )
                .await);
            }
        }
    }
}

/// Drains the connection's queue into its event stream, many frames per write, no copy.
/// Writes what the publisher queues until it drops the queue (it ended), then finishes the
/// stream and waits until the peer has acknowledged every byte of it (or stopped it).
/// One event stream being written: counted while it lives.
struct WritingGuard(Arc<AtomicUsize>);

impl WritingGuard {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for WritingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn write_events(
    mut events: quinn::SendStream,
    mut frames: mpsc::Receiver<Bytes>,
    _writing: WritingGuard,
) {
    let mut chunks: Vec<Bytes> = Vec::with_capacity(64);
    while frames.recv_many(&mut chunks, 64).await > 0 {
        if events.write_all_chunks(&mut chunks).await.is_err() {
            return;
        }
        chunks.clear();
    }
    if events.finish().is_ok() {
        let _ = events.stopped().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_created_once_private_then_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("quic").join("token");
        let token = load_or_create_token(&path).expect("created");
        assert_eq!(token.len(), 2 * TOKEN_BYTES);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        }
        assert_eq!(load_or_create_token(&path).expect("read"), token);
        let other = dir.path().join("other");
        assert_ne!(load_or_create_token(&other).expect("created"), token);
        std::fs::write(&path, "\n").expect("written");
        let err = load_or_create_token(&path).expect_err("empty");
        assert!(err.to_string().contains("token"), "{err}");
    }
}
