//! Deadlines for gRPC connections that say nothing.
//!
//! tonic keeps a connection open as long as the client does: one that never sends the
//! HTTP/2 preface (slowloris), or that stays connected without a single call, holds a socket
//! and its buffers forever. [`Guarded`] wraps each accepted TCP stream: the first bytes of
//! the connection (the 24-byte preface, or a TLS ClientHello) must arrive within
//! `limits.header_timeout_ms`, and a connection without an open call for
//! `limits.idle_timeout_ms` is closed. Open calls are counted by [`CallCountLayer`], which
//! finds the connection by its peer address (unique among open connections).

use std::collections::HashMap;
use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{Instant, Sleep};
use tonic::body::Body;
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

use crate::listen::Conn;

/// Bytes a client must send before the header deadline: the HTTP/2 connection preface.
const PREFACE_LEN: usize = 24;

/// The deadlines, and the open connections' call counts.
#[derive(Debug, Clone)]
pub(crate) struct ConnGuard {
    header_timeout: Duration,
    idle_timeout: Duration,
    open: Arc<Mutex<HashMap<SocketAddr, Arc<Activity>>>>,
}

/// What a connection is doing: open calls, and when the last one ended.
#[derive(Debug)]
struct Activity {
    calls: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    fn call_ended(&self) {
        *self.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.calls.fetch_sub(1, Ordering::Relaxed);
    }

    /// When the connection may be closed for idleness, or `None` while a call is open.
    fn idle_deadline(&self, idle_timeout: Duration) -> Option<Instant> {
        if self.calls.load(Ordering::Relaxed) > 0 {
            return None;
        }
        Some(*self.idle_since.lock().unwrap_or_else(|p| p.into_inner()) + idle_timeout)
    }
}

impl ConnGuard {
    pub(crate) fn new(header_timeout: Duration, idle_timeout: Duration) -> Self {
        ConnGuard {
            header_timeout,
            idle_timeout,
            open: Arc::default(),
        }
    }

    /// Wraps an accepted connection.
    pub(crate) fn guard(&self, tcp: Conn) -> Guarded {
        let activity = Arc::new(Activity {
            calls: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        });
        let peer = tcp.peer();
        self.lock().insert(peer, Arc::clone(&activity));
        Guarded {
            tcp,
            peer,
            guard: self.clone(),
            activity,
            read: 0,
            timer: Box::pin(tokio::time::sleep(self.header_timeout)),
        }
    }

    /// The layer counting open calls per connection.
    pub(crate) fn layer(&self) -> CallCountLayer {
        CallCountLayer {
            guard: self.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Arc<Activity>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A TCP connection under the header and idle deadlines.
#[derive(Debug)]
pub(crate) struct Guarded {
    tcp: Conn,
    peer: SocketAddr,
    guard: ConnGuard,
    activity: Arc<Activity>,
    /// Bytes read so far, counted up to the preface.
    read: usize,
    /// The header deadline until the preface is in, then the idle deadline.
    timer: Pin<Box<Sleep>>,
}

impl Guarded {
    /// Err when a deadline has passed; otherwise the timer is armed to wake the reader.
    fn check_deadlines(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            if self.read < PREFACE_LEN {
                if self.timer.as_mut().poll(cx).is_ready() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request within limits.header_timeout_ms",
                    ));
                }
                return Ok(());
            }
            let Some(deadline) = self.activity.idle_deadline(self.guard.idle_timeout) else {
                // A call is open; its end restarts the idle clock, checked on the next read.
                let next = Instant::now() + self.guard.idle_timeout;
                self.timer.as_mut().reset(next);
                let _ = self.timer.as_mut().poll(cx);
                return Ok(());
            };
            if deadline <= Instant::now() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for limits.idle_timeout_ms",
                ));
            }
            self.timer.as_mut().reset(deadline);
            if self.timer.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let mut open = self.guard.lock();
        if open
            .get(&self.peer)
            .is_some_and(|a| Arc::ptr_eq(a, &self.activity))
        {
            open.remove(&self.peer);
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Checked on every read, so a trickle of bytes or pings does not defer them.
        self.check_deadlines(cx)?;
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if self.read < PREFACE_LEN {
            self.read += buf.filled().len() - before;
        }
        polled
    }
}

crate::listen::forward_async_write!(Guarded, tcp);

impl Connected for Guarded {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.tcp.connect_info()
    }
}

/// Counts each call as open on its connection until its response body is gone.
#[derive(Debug, Clone)]
pub(crate) struct CallCountLayer {
    guard: ConnGuard,
}

impl<S> Layer<S> for CallCountLayer {
    type Service = CallCount<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallCount {
            inner,
            guard: self.guard.clone(),
        }
    }
}

/// The service [`CallCountLayer`] wraps around the gRPC router.
#[derive(Debug, Clone)]
pub(crate) struct CallCount<S> {
    inner: S,
    guard: ConnGuard,
}

type Req = http::Request<Body>;
type Resp = http::Response<Body>;

impl<S> Service<Req> for CallCount<S>
where
    S: Service<Req, Response = Resp> + Send,
    S::Future: Send + 'static,
{
    type Response = Resp;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Resp, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let peer = req
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr)
            .or_else(|| {
                req.extensions()
                    .get::<TlsConnectInfo<TcpConnectInfo>>()
                    .and_then(|i| i.get_ref().remote_addr())
            });
        let activity = peer.and_then(|p| self.guard.lock().get(&p).cloned());
        let open = activity.map(|a| {
            a.calls.fetch_add(1, Ordering::Relaxed);
            OpenCall(a)
        });
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(match open {
                None => response,
                Some(open) => response.map(|body| Body::new(CountedBody { body, _open: open })),
            })
        })
    }
}

/// One open call; ends when dropped (with the response body, or the failed call).
struct OpenCall(Arc<Activity>);

impl Drop for OpenCall {
    fn drop(&mut self) {
        self.0.call_ended();
    }
}

/// A response body that keeps its call counted until it is dropped.
struct CountedBody {
    body: Body,
    _open: OpenCall,
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
