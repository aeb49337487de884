//! Accepting client connections on the gateway's two ports.
//!
//! Each port holds at most `limits.max_connections` client connections, and at most
//! `limits.max_connections_per_ip` from one address: one more is closed as soon as it is
//! accepted (`alertmesh_connections_refused_total`), so a flood of connections cannot take
//! the file descriptors the gateway's own Kafka and PostgreSQL connections need, one host
//! cannot take every place, and neither port starves the other (metrics and health stay
//! reachable while the gRPC port is full). When accepting fails for want of resources (no
//! file descriptor left), the port pauses briefly instead of retrying at once: the
//! listening socket stays readable, and retrying at once would spin a core until a
//! descriptor is freed.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::metrics::{ConnRefusal, Metrics, Port, PortLabels, RefusedLabels};

/// How long a port stops accepting after a failure that is not the client's (out of file
/// descriptors or memory): long enough not to spin, short enough that clients barely wait
/// once a descriptor is free.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Warnings about refused connections and accept failures, which a flood repeats.
static REFUSED: alertmesh_mirror::limit::RateLimit = alertmesh_mirror::limit::RateLimit::new();
static ACCEPT_FAILED: alertmesh_mirror::limit::RateLimit =
    alertmesh_mirror::limit::RateLimit::new();

/// A client connection holding one of its port's `limits.max_connections` places until
/// it is dropped.
#[derive(Debug)]
pub(crate) struct Conn {
    tcp: TcpStream,
    peer: SocketAddr,
    _place: Place,
}

impl Conn {
    /// The client's address.
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub(crate) fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.tcp.set_nodelay(nodelay)
    }
}

/// How many connections a port may hold: in all, and from one address.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    pub(crate) total: usize,
    pub(crate) per_ip: usize,
}

/// The connections a port holds, in all and by client address (only addresses with one
/// open, so the map is bounded by the total).
#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

impl Open {
    /// Takes a place for a connection from `ip`, or says which cap it would pass.
    fn admit(&mut self, ip: IpAddr, caps: Caps) -> Result<(), ConnRefusal> {
        if self.total >= caps.total {
            return Err(ConnRefusal::port_full);
        }
        let from_ip = self.by_ip.entry(ip).or_default();
        if *from_ip >= caps.per_ip {
            return Err(ConnRefusal::per_ip);
        }
        *from_ip += 1;
        self.total += 1;
        Ok(())
    }

    fn release(&mut self, ip: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.by_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.by_ip.remove(&ip);
            }
        }
    }
}

/// One of a port's places; given back when dropped.
#[derive(Debug)]
struct Place {
    open: Arc<Mutex<Open>>,
    ip: IpAddr,
    gauge: Gauge,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .release(self.ip);
        self.gauge.dec();
    }
}

/// Accepts connections on `listener` until `cancel`, on a task of `tasks`, holding at most
/// `caps` open at once (see the module docs). The listening socket closes when the task
/// ends. Connections wait in a short queue for the server to take them; while it is full,
/// nothing more is accepted.
pub(crate) fn accept(
    listener: TcpListener,
    port: Port,
    caps: Caps,
    metrics: &Metrics,
    cancel: CancellationToken,
    tasks: &TaskTracker,
) -> mpsc::Receiver<Conn> {
    let (tx, rx) = mpsc::channel(16);
    let labels = PortLabels { port };
    let gauge = metrics.connections.get_or_create(&labels).clone();
    let refused = |reason| {
        metrics
            .connections_refused
            .get_or_create(&RefusedLabels { port, reason })
            .clone()
    };
    let (port_full, per_ip) = (
        refused(ConnRefusal::port_full),
        refused(ConnRefusal::per_ip),
    );
    let failed = metrics.accept_errors.get_or_create(&labels).clone();
    let open = Arc::new(Mutex::new(Open::default()));
    tasks.spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = cancel.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((tcp, peer)) => {
                    let admitted = open
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .admit(peer.ip(), caps);
                    if let Err(reason) = admitted {
                        let (counter, limit) = match reason {
                            ConnRefusal::port_full => (&port_full, "limits.max_connections"),
                            ConnRefusal::per_ip => (&per_ip, "limits.max_connections_per_ip"),
                        };
                        counter.inc();
                        if let Some(suppressed) = REFUSED.admit() {
                            tracing::warn!(
                                ?port, %peer, limit, suppressed,
                                "connection refused: the limit is reached"
                            );
                        }
                        drop(tcp);
                        continue;
                    }
                    gauge.inc();
                    let place = Place {
                        open: Arc::clone(&open),
                        ip: peer.ip(),
                        gauge: gauge.clone(),
                    };
                    let conn = Conn {
                        tcp,
                        peer,
                        _place: place,
                    };
                    if tx.send(conn).await.is_err() {
                        return;
                    }
                }
                // The client went before it was accepted: nothing to wait for.
                Err(e) if is_the_clients(&e) => {}
                Err(e) => {
                    failed.inc();
                    if let Some(suppressed) = ACCEPT_FAILED.admit() {
                        tracing::warn!(
                            ?port, error = %e, suppressed,
                            "cannot accept connections (raise the open-file limit or lower \
                             limits.max_connections); pausing"
                        );
                    }
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(ACCEPT_PAUSE) => {}
                    }
                }
            }
        }
    });
    rx
}

/// Errors of one connection rather than of the listener.
fn is_the_clients(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

/// The HTTP side port's plain-text listener for axum.
#[derive(Debug)]
pub(crate) struct ConnListener {
    rx: mpsc::Receiver<Conn>,
    local: SocketAddr,
}

impl ConnListener {
    pub(crate) fn new(rx: mpsc::Receiver<Conn>, local: SocketAddr) -> Self {
        ConnListener { rx, local }
    }
}

impl axum::serve::Listener for ConnListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        match self.rx.recv().await {
            Some(conn) => {
                let peer = conn.peer;
                (conn, peer)
            }
            // The accept loop ended (shutdown): wait for axum's graceful shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

/// Implements `AsyncWrite` for a connection wrapper by passing every call to its `$field`
/// (the wrappers watch or count, they never change what is written).
macro_rules! forward_async_write {
    ($wrapper:ty, $field:ident) => {
        impl tokio::io::AsyncWrite for $wrapper {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.$field).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.$field).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.$field.is_write_vectored()
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.$field).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.$field).poll_shutdown(cx)
            }
        }
    };
}
pub(crate) use forward_async_write;

forward_async_write!(Conn, tcp);

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.tcp.connect_info()
    }
}

/// Raises this process's soft open-file limit to its hard limit (as Go programs do at
/// start): distributions start services at 1024 descriptors, fewer than
/// `limits.max_connections` on both ports need. Warns when even the hard limit leaves too
/// little room for them and the gateway's own connections.
pub(crate) fn raise_open_file_limit(max_connections: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => limit.current = limit.maximum,
            Err(e) => tracing::debug!(error = %e, "cannot raise the open-file limit"),
        }
    }
    // Both ports full, plus Kafka, PostgreSQL and file descriptors of the gateway's own.
    let needed = (2 * max_connections as u64).saturating_add(OWN_DESCRIPTORS);
    if let Some(current) = limit.current.filter(|&c| c < needed) {
        tracing::warn!(
            open_file_limit = current,
            max_connections,
            "the open-file limit is below what limits.max_connections on both ports needs \
             (and {OWN_DESCRIPTORS} for the gateway's own connections): raise it (ulimit -n, \
             systemd LimitNOFILE=) or lower limits.max_connections"
        );
    }
}

/// Descriptors the gateway keeps for its own use beyond client connections: Kafka
/// clients (each reader has its own), PostgreSQL, files.
const OWN_DESCRIPTORS: u64 = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_capped_in_all_and_per_address_and_come_back() {
        let caps = Caps {
            total: 3,
            per_ip: 2,
        };
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            "10.0.0.3".parse().unwrap(),
        );
        let mut open = Open::default();
        assert_eq!(open.admit(a, caps), Ok(()));
        assert_eq!(open.admit(a, caps), Ok(()));
        assert_eq!(open.admit(a, caps), Err(ConnRefusal::per_ip));
        assert_eq!(open.admit(b, caps), Ok(()));
        assert_eq!(open.admit(c, caps), Err(ConnRefusal::port_full));
        // A refusal takes nothing: the counts are those of the three admitted.
        assert_eq!(open.total, 3);
        assert_eq!(open.by_ip.get(&a), Some(&2));
        assert_eq!(open.by_ip.get(&c), None);
        open.release(a);
        assert_eq!(open.admit(c, caps), Ok(()));
        open.release(b);
        // An address with nothing open is forgotten, so the map stays within the total.
        assert_eq!(open.by_ip.get(&b), None);
        assert_eq!(open.by_ip.len(), 2);
    }
}
