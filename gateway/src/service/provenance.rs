//! `Provenance`: the graph behind an alert ref; each record of this gateway is read with
//! the caller's Fetch scope.

use alertmesh_auth::Action;
use alertmesh_proto::v1;
use tonic::{Request, Response, Status};

use super::GatewayService;
use crate::auth::{authorize_topic, caller};
use crate::provenance::Access;

pub(super) async fn provenance(
    svc: &GatewayService,
    req: Request<v1::ProvenanceRequest>,
) -> Result<Response<v1::ProvenanceGraph>, Status> {
    let who = caller(&req);
    let auth = svc.parts.auth.as_deref();
    let request = req.into_inner();
    let tokenless = auth.is_some_and(|a| a.require()) && who.token.is_none();
    // A ref that does not parse is reported by the walk, after the check Fetch makes.
    if request.r#ref.parse::<alertmesh_alert::AlertRef>().is_err() && tokenless {
        authorize_topic(auth, &who, Action::Fetch, "")?;
    }
    let authorize = |topic: &str| authorize_topic(auth, &who, Action::Fetch, topic);
    let access = Access {
        local: &authorize,
        peers: !tokenless,
    };
    let graph = svc
        .parts
        .provenance
        .walk(
            &request.r#ref,
            request.max_depth,
            request.timeout_ms,
            access,
        )
        .await?;
    Ok(Response::new(graph))
}
