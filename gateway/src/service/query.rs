//! `Query`: the caller's access to the declared query, then
//! [`Queries::open`](crate::query::Queries::open). A stream with a token ends once the
//! token is revoked or expires (a `follow` stream would otherwise serve a revoked caller
//! for as long as its connection lasts).

use alertmesh_proto::v1;
use tonic::{Request, Response, Status};

use super::GatewayService;
use crate::auth::stream::{guard, Guarded};
use crate::auth::{authorize_query, authorize_query_quietly, caller};

pub(super) async fn query(
    svc: &GatewayService,
    req: Request<v1::QueryRequest>,
) -> Result<Response<Guarded<v1::QueryBatch>>, Status> {
    let who = caller(&req);
    let queries = &svc.parts.queries;
    let auth = svc.parts.auth.as_deref();
    let visible =
        |q: &crate::config::QueryConfig| authorize_query_quietly(auth, &who, &q.name, q.public);
    let declared = queries.get(&req.get_ref().name, &visible)?;
    authorize_query(
        svc.parts.auth.as_deref(),
        &who,
        &declared.config.name,
        declared.config.public,
    )?;
    // Counted per connection, and per principal when the caller presented a token.
    let token = who.token.is_some().then_some(who.principal.name.as_str());
    let connection = req.remote_addr();
    let rx = queries.open(req.into_inner(), connection, token).await?;
    let auth = svc.parts.auth.clone();
    Ok(Response::new(guard(auth, &who, rx, &svc.parts.tasks)))
}
