//! `CommitCursor`: stores positions in one of the caller's durable cursors.

use alertmesh_auth::Action;
use alertmesh_proto::v1;
use tonic::{Request, Response, Status};

use super::GatewayService;
use crate::auth::{authorize_topic, caller};

pub(super) async fn commit_cursor(
    svc: &GatewayService,
    req: Request<v1::CommitCursorRequest>,
) -> Result<Response<v1::CommitCursorResponse>, Status> {
    let who = caller(&req);
    let req = req.into_inner();
    authorize_topic(
        svc.parts.auth.as_deref(),
        &who,
        Action::Subscribe,
        &req.topic,
    )?;
    let offsets = svc
        .parts
        .subscriptions
        .commit_cursor(&who.principal, &req.name, &req.topic, &req.offsets)
        .await?;
    Ok(Response::new(v1::CommitCursorResponse { offsets }))
}
