//! Bounds on what a client can make the gateway hold while its request arrives.
//!
//! Every RPC takes one small request message, which tonic (or the Subscribe route) collects
//! before anything else happens. A client that declares a large message and never finishes
//! it would otherwise pin that buffer forever, once per stream: 500 such streams on one
//! connection held half a gigabyte. So each request body is wrapped: its bytes count
//! against a gateway-wide budget while they are buffered (over it: RESOURCE_EXHAUSTED), and
//! it must be complete within `limits.request_timeout_ms` (else DEADLINE_EXCEEDED). HTTP/2
//! flow control already bounds what is buffered below this, per connection.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tonic::body::Body;
use tonic::Status;
use tower::{Layer, Service};

/// The gateway-wide budget of request bytes in flight, shared by every connection.
#[derive(Debug, Clone)]
pub(crate) struct RequestLimitLayer {
    budget: Arc<Budget>,
    timeout: Duration,
}

#[derive(Debug)]
struct Budget {
    used: AtomicUsize,
    max: usize,
}

impl RequestLimitLayer {
    pub(crate) fn new(max_bytes: usize, timeout: Duration) -> Self {
        RequestLimitLayer {
            budget: Arc::new(Budget {
                used: AtomicUsize::new(0),
                max: max_bytes,
            }),
            timeout,
        }
    }
}

impl<S> Layer<S> for RequestLimitLayer {
    type Service = RequestLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLimit {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`RequestLimitLayer`] wraps around the gRPC router.
#[derive(Debug, Clone)]
pub(crate) struct RequestLimit<S> {
    inner: S,
    layer: RequestLimitLayer,
}

impl<S> Service<http::Request<Body>> for RequestLimit<S>
where
    S: Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let body = Body::new(LimitedBody {
            inner: body,
            budget: Arc::clone(&self.layer.budget),
            held: 0,
            timeout: self.layer.timeout,
            deadline: Box::pin(tokio::time::sleep(self.layer.timeout)),
            failed: false,
        });
        self.inner.call(http::Request::from_parts(parts, body))
    }
}

/// A request body that counts its bytes against the budget until it is dropped, and fails
/// once its deadline passes before it has ended.
struct LimitedBody {
    inner: Body,
    budget: Arc<Budget>,
    /// Bytes of this body counted in the budget.
    held: usize,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    failed: bool,
}

impl LimitedBody {
    fn fail(&mut self, status: Status) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.failed = true;
        Poll::Ready(Some(Err(status)))
    }
}

impl http_body::Body for LimitedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, Bytes::len);
                if len > 0 {
                    let before = self.budget.used.fetch_add(len, Ordering::Relaxed);
                    self.held += len;
                    let max = self.budget.max;
                    if before + len > max {
                        return self.fail(Status::resource_exhausted(format!(
                            "the gateway is receiving too many requests at once ({max} bytes \
                             buffered at most); retry later"
                        )));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Status::from_error(e.into())))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if self.deadline.as_mut().poll(cx).is_ready() {
                    let secs = self.timeout.as_secs_f64();
                    return self.fail(Status::deadline_exceeded(format!(
                        "the request message did not arrive within {secs}s \
                         (limits.request_timeout_ms)"
                    )));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LimitedBody {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.held, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    fn limited(body: Body, layer: &RequestLimitLayer) -> LimitedBody {
        LimitedBody {
            inner: body,
            budget: Arc::clone(&layer.budget),
            held: 0,
            timeout: layer.timeout,
            deadline: Box::pin(tokio::time::sleep(layer.timeout)),
            failed: false,
        }
    }

    #[tokio::test]
    async fn bytes_count_while_held_and_return_on_drop() {
        let layer = RequestLimitLayer::new(1 << 20, Duration::from_secs(5));
        let body = limited(
            Body::new(http_body_util::Full::new(Bytes::from(vec![1u8; 1000]))),
            &layer,
        );
        let mut body = Box::pin(body);
        let frame = body.frame().await.expect("a frame").expect("no error");
        assert_eq!(frame.data_ref().map(Bytes::len), Some(1000));
        assert_eq!(layer.budget.used.load(Ordering::Relaxed), 1000);
        drop(body);
        assert_eq!(layer.budget.used.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn over_budget_is_resource_exhausted() {
        let layer = RequestLimitLayer::new(1500, Duration::from_secs(5));
        let a = limited(
            Body::new(http_body_util::Full::new(Bytes::from(vec![1u8; 1000]))),
            &layer,
        );
        let b = limited(
            Body::new(http_body_util::Full::new(Bytes::from(vec![1u8; 1000]))),
            &layer,
        );
        let (mut a, mut b) = (Box::pin(a), Box::pin(b));
        assert!(a.frame().await.expect("a frame").is_ok());
        let err = b.frame().await.expect("a frame").expect_err("over budget");
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        drop((a, b));
        assert_eq!(layer.budget.used.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn unfinished_body_fails_at_its_deadline() {
        let layer = RequestLimitLayer::new(1 << 20, Duration::from_secs(3));
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Status>>(1);
        let never =
            http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        let mut body = Box::pin(limited(Body::new(never), &layer));
        let err = body.frame().await.expect("a frame").expect_err("deadline");
        assert_eq!(err.code(), tonic::Code::DeadlineExceeded);
        assert!(err.message().contains("request_timeout_ms"), "{err:?}");
        assert!(body.frame().await.is_none());
    }
}
