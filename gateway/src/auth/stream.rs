//! Ends an open `Subscribe` stream within seconds once its token is revoked or expires.
//!
//! The token is verified once when the stream opens; afterwards it is re-checked (expiry
//! and revocation list, no signature work) once a second and whenever a revocation
//! arrives, never per alert. Failing the check sends UNAUTHENTICATED and drops the
//! subscription's receiver, which stops its reader.

use std::sync::Arc;
use std::time::Duration;

use alertmesh_auth::VerifiedToken;
use alertmesh_proto::v1;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tonic::Status;

use super::{unix_now, Auth, Caller};

/// A subscription's stream of batches, then at most one error status.
type Outbound = mpsc::Receiver<Result<v1::AlertBatch, Status>>;

const CHECK_EVERY: Duration = Duration::from_secs(1);
const SEND_TIMEOUT: Duration = Duration::from_secs(3);

/// Wraps `inner` so that it ends when the caller's token stops being valid. Callers
/// without a token (open gateways, public topics) keep the stream as is. The check runs
/// on `tasks`.
pub(crate) fn guard(
    auth: Option<Arc<Auth>>,
    caller: &Caller,
    inner: Outbound,
    tasks: &TaskTracker,
) -> Outbound {
    let (Some(auth), Some(token)) = (auth, caller.token.clone()) else {
        return inner;
    };
    let (tx, rx) = mpsc::channel(2);
    tasks.spawn(forward(auth, token, inner, tx));
    rx
}

async fn forward(
    auth: Arc<Auth>,
    token: Arc<VerifiedToken>,
    mut inner: Outbound,
    tx: mpsc::Sender<Result<v1::AlertBatch, Status>>,
) {
    let mut changes = auth.store.changes();
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = None;
    loop {
        let check = match pending.take() {
            None => tokio::select! {
                item = inner.recv() => match item {
                    Some(item) => { pending = Some(item); false }
                    None => return,
                },
                _ = tick.tick() => true,
                _ = changes.changed() => true,
                _ = tx.closed() => return,
            },
            Some(item) => tokio::select! {
                permit = tx.reserve() => match permit {
                    Ok(permit) => { permit.send(item); false }
                    Err(_) => return,
                },
                _ = tick.tick() => { pending = Some(item); true }
                _ = changes.changed() => { pending = Some(item); true }
            },
        };
        if check {
            if let Err(e) = token.check_still_valid(unix_now(), auth.leeway(), &auth.store) {
                tracing::info!(sub = %token.principal.name, error = %e, "ending stream");
                let status = Status::unauthenticated(format!("stream ended: {e}"));
                drop(inner);
                let _ = tokio::time::timeout(SEND_TIMEOUT, tx.send(Err(status))).await;
                return;
            }
        }
    }
}
