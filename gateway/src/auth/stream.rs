//! Ends an open `Subscribe` or `Query` stream within seconds once its token is revoked or
//! expires.
//!
//! The token is verified once when the stream opens; afterwards it is re-checked (expiry
//! and revocation list, no signature work) once a second and whenever a revocation
//! arrives, never per alert. Failing the check drops the stream's receiver, which stops
//! what feeds it (a subscription's reader, a query's polling), and the stream then ends
//! with UNAUTHENTICATED.
//!
//! The check runs beside the stream, not in front of it: batches go from the
//! subscription's queue to the response body only when the body asks for the next one.
//! A task forwarding batches would take them out of the queue whether or not the client
//! reads, and a subscription whose batches are taken moves to its full Kafka read (see
//! README "Reads start small"): a client that presents a token and never reads would then
//! hold a full read's memory instead of staying small and being parked.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use alertmesh_auth::VerifiedToken;
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;
use tonic::Status;

use super::{unix_now, Auth, Caller};

/// A stream's batches (`AlertBatch`, `QueryBatch`), then at most one error status.
type Outbound<T> = mpsc::Receiver<Result<T, Status>>;

const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The subscription's receiver, shared with the check so that it can drop it (stopping
/// the reader) while the client is not reading and nothing polls the stream.
type Shared<T> = Arc<Mutex<Option<Outbound<T>>>>;

/// A subscription's batches as the client takes them, ended with UNAUTHENTICATED once the
/// caller's token stops being valid.
#[derive(Debug)]
pub(crate) struct Guarded<T> {
    inner: Shared<T>,
    /// The check's verdict: a status once the token fails. `None` without a token, or
    /// once the verdict is taken or the check is gone.
    verdict: Option<oneshot::Receiver<Status>>,
}

impl<T> Guarded<T> {
    /// The next batch, taken out of the subscription's queue only now (the caller wants
    /// it), or the check's status, or the end of the stream.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, Status>>> {
        if let Some(status) = self.poll_verdict(cx) {
            return Poll::Ready(Some(Err(status)));
        }
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match inner.as_mut() {
            Some(rx) => rx.poll_recv(cx),
            None => {
                drop(inner);
                // The check sends its verdict before it drops the receiver: one that
                // arrived between the two looks above is still the stream's end.
                let status = self.verdict.take().and_then(|mut v| v.try_recv().ok());
                Poll::Ready(status.map(Err))
            }
        }
    }

    fn poll_verdict(&mut self, cx: &mut Context<'_>) -> Option<Status> {
        let verdict = self.verdict.as_mut()?;
        let ready = match Pin::new(verdict).poll(cx) {
            Poll::Pending => return None,
            Poll::Ready(ready) => ready,
        };
        self.verdict = None;
        let status = ready.ok()?;
        // Whatever is still queued is not sent after the verdict.
        let rx = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(rx);
        Some(status)
    }
}

impl<T> tokio_stream::Stream for Guarded<T> {
    type Item = Result<T, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

/// Wraps `inner` so that it ends when the caller's token stops being valid. Callers
/// without a token (open gateways, public topics) keep the stream as is. The check runs
/// on `tasks`.
pub(crate) fn guard<T: Send + 'static>(
    auth: Option<Arc<Auth>>,
    caller: &Caller,
    inner: Outbound<T>,
    tasks: &TaskTracker,
) -> Guarded<T> {
    let inner = Arc::new(Mutex::new(Some(inner)));
    let (Some(auth), Some(token)) = (auth, caller.token.clone()) else {
        return Guarded {
            inner,
            verdict: None,
        };
    };
    let (tx, verdict) = oneshot::channel();
    tasks.spawn(check(auth, token, Arc::clone(&inner), tx));
    Guarded {
        inner,
        verdict: Some(verdict),
    }
}

/// Re-checks `token` until it fails (then sends the status and drops the subscription's
/// receiver), the subscription ends, or the stream is dropped.
async fn check<T>(
    auth: Arc<Auth>,
    token: Arc<VerifiedToken>,
    inner: Shared<T>,
    mut verdict: oneshot::Sender<Status>,
) {
    let mut changes = auth.store.changes();
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Ok(()) = changes.changed() => {}
            _ = verdict.closed() => return,
        }
        let over = match inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            // The subscription has ended (its last items may still be queued): nothing
            // left to stop.
            Some(rx) => rx.is_closed() && rx.is_empty(),
            None => true,
        };
        if over {
            return;
        }
        if let Err(e) = token.check_still_valid(unix_now(), auth.leeway(), &auth.store) {
            tracing::info!(sub = %token.principal.name, error = %e, "ending stream");
            let _ = verdict.send(Status::unauthenticated(format!("stream ended: {e}")));
            let rx = inner.lock().unwrap_or_else(PoisonError::into_inner).take();
            drop(rx);
            return;
        }
    }
}
