//! `Query`: the caller's access to the declared query, then
//! [`Queries::open`](crate::query::Queries::open).

use alertmesh_proto::v1;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::GatewayService;
use crate::auth::{authorize_query, caller};

pub(super) async fn query(
    svc: &GatewayService,
    req: Request<v1::QueryRequest>,
) -> Result<Response<ReceiverStream<Result<v1::QueryBatch, Status>>>, Status> {
    let who = caller(&req);
    let queries = &svc.parts.queries;
    let declared = queries.get(&req.get_ref().name)?;
    authorize_query(
        svc.parts.auth.as_deref(),
        &who,
        &declared.config.name,
        declared.config.public,
    )?;
    let rx = queries.open(req.into_inner()).await?;
    Ok(Response::new(ReceiverStream::new(rx)))
}
