//! TLS on the gateway's two ports, on rustls with the aws-lc-rs provider.
//!
//! - gRPC: [`grpc_incoming`], the `[tls]` certificate (ALPN `h2`); with `client_ca`, client
//!   certificates are verified against it in the handshake and their presence is enforced
//!   per call by [`crate::auth`] (so a missing certificate gets UNAUTHENTICATED with a
//!   message, not a bare handshake failure). The gateway's own acceptor rather than
//!   tonic's, so the server chooses the cipher suite (AES-128-GCM first, see
//!   [`alertmesh_auth::tls::crypto_provider`]): tonic's follows the client's order, and
//!   rustls clients put AES-256-GCM first, which costs alert streams about 5 % of their
//!   throughput here.
//! - HTTP side port: [`TlsListener`], an axum listener that serves `/metrics`, health,
//!   `/.well-known/jwks.json` and the schema registry API over HTTPS. With `client_ca` a
//!   client certificate is asked for but optional (Prometheus and stock registry clients
//!   come without one); one that is presented must chain to `client_ca`, and reaches the
//!   registry API's auth (a peer's token must come with that peer's certificate).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::{Stream, StreamExt as _};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::TlsConfig;
use crate::error::{Error, Result};
use crate::listen::Conn;

/// A handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Unsent TLS data rustls may hold per gRPC connection: bounded, since a client that does
/// not read leaves it full.
const GRPC_TLS_BUFFER: usize = 256 << 10;

/// Connections after their TLS handshakes with `config`: handshakes run concurrently on
/// `tasks`, off the accept loop, each within [`HANDSHAKE_TIMEOUT`]; failed ones are dropped
/// (logged at debug, as `port` says). `ready` is applied to each before it is handed on.
/// Ends with `cancel` or `incoming`.
fn accept_tls<S, Io>(
    incoming: S,
    config: rustls::ServerConfig,
    port: &'static str,
    ready: fn(&mut TlsStream<Io>),
    cancel: CancellationToken,
    tasks: &TaskTracker,
) -> mpsc::Receiver<TlsStream<Io>>
where
    S: Stream<Item = io::Result<Io>> + Send + 'static,
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let (tx, rx) = mpsc::channel(64);
    let handshakes = tasks.clone();
    tasks.spawn(async move {
        let mut incoming = std::pin::pin!(incoming);
        loop {
            let io = tokio::select! {
                _ = cancel.cancelled() => return,
                next = incoming.next() => match next {
                    None => return,
                    Some(Ok(io)) => io,
                    Some(Err(e)) => {
                        tracing::debug!(port, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            handshakes.spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                    Ok(Ok(mut stream)) => {
                        ready(&mut stream);
                        let _ = tx.send(stream).await;
                    }
                    Ok(Err(e)) => tracing::debug!(port, error = %e, "tls handshake failed"),
                    Err(_) => tracing::debug!(port, "tls handshake timed out"),
                }
            });
        }
    });
    rx
}

/// Connections of the gRPC port after their TLS handshakes (ALPN `h2`), for tonic's
/// `serve_with_incoming` (see [`accept_tls`]).
pub(crate) fn grpc_incoming<S, Io>(
    incoming: S,
    tls: &TlsConfig,
    cancel: CancellationToken,
    tasks: &TaskTracker,
) -> Result<impl Stream<Item = io::Result<TlsStream<Io>>>>
where
    S: Stream<Item = io::Result<Io>> + Send + 'static,
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut config = side_port_config(tls).map_err(|e| Error::Internal(format!("tls: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    // rustls holds at most this much unsent per connection (64 KiB by default): batches of
    // alerts go out in fewer, larger writes.
    let ready = |s: &mut TlsStream<Io>| s.get_mut().1.set_buffer_limit(Some(GRPC_TLS_BUFFER));
    let rx = accept_tls(incoming, config, "grpc", ready, cancel, tasks);
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok))
}

/// An HTTPS listener for axum: handshakes run concurrently, off the accept loop.
#[derive(Debug)]
pub(crate) struct TlsListener {
    rx: mpsc::Receiver<TlsStream<Conn>>,
}

/// A side-port client: the certificate it presented (DER), if any.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub(crate) cert: Option<Arc<[u8]>>,
}

impl TlsListener {
    /// Wraps the connections of [`crate::listen::accept`] with the `[tls]` certificate
    /// (ALPN `http/1.1`). The handshakes run on `tasks`.
    pub(crate) fn new(
        conns: mpsc::Receiver<Conn>,
        tls: &TlsConfig,
        cancel: CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<Self> {
        let mut config = side_port_config(tls).map_err(|e| Error::Internal(format!("tls: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let incoming = tokio_stream::wrappers::ReceiverStream::new(conns).map(Ok);
        let rx = accept_tls(incoming, config, "http", |_| {}, cancel, tasks);
        Ok(TlsListener { rx })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<Conn>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(stream) => {
                let cert = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| Arc::from(c.as_ref()));
                (stream, Peer { cert })
            }
            // The accept loop ended (shutdown): wait for axum's graceful shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(Peer { cert: None })
    }
}

/// The rustls configuration of both ports: the `[tls]` certificate, and with `client_ca` an
/// optional client certificate that must chain to it when presented; the server chooses
/// the cipher suite.
fn side_port_config(tls: &TlsConfig) -> std::result::Result<rustls::ServerConfig, String> {
    use alertmesh_auth::tls::{crypto_provider, load_certs, load_key};
    let Some(ca) = &tls.client_ca else {
        return alertmesh_auth::tls::server_config_from_files(&tls.cert, &tls.key, None)
            .map_err(|e| e.to_string());
    };
    let provider = crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(ca).map_err(|e| e.to_string())? {
        roots
            .add(cert)
            .map_err(|e| format!("tls.client_ca {}: {e}", ca.display()))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| format!("cannot build the client verifier: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            load_certs(&tls.cert).map_err(|e| e.to_string())?,
            load_key(&tls.key).map_err(|e| e.to_string())?,
        )
        .map_err(|e| format!("the certificate and key do not fit together: {e}"))?;
    config.ignore_client_order = true;
    Ok(config)
}
