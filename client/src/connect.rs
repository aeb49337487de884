//! The TCP connection under a TLS channel.
//!
//! rustls reads the socket at most 4 KiB at a time, so each 16 KiB TLS record costs
//! four or five system calls and a stream of large batches spends more time entering the
//! kernel than decrypting. Under TLS the socket is read through a buffer instead: one
//! large read serves many of rustls's small ones.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tonic::codegen::http::Uri;

/// Bytes read from the socket at once under TLS: sixteen records.
const READ_BUFFER: usize = 256 << 10;

/// Connects a TLS channel's TCP stream (tonic adds TLS on top), read through
/// [`READ_BUFFER`] bytes, with `TCP_NODELAY` as every connection.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BufferedTcp;

impl tower::Service<Uri> for BufferedTcp {
    type Response = TokioIo<BufReader<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host in the URL"))?;
            // An IPv6 address comes in brackets.
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            Ok(TokioIo::new(BufReader::with_capacity(READ_BUFFER, tcp)))
        })
    }
}
