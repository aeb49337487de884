//! `Fetch`: the one alert a ref names.

use alertmesh_auth::Action;
use alertmesh_proto::v1;
use tonic::{Request, Response, Status};

use super::GatewayService;
use crate::auth::{authorize_topic, caller};

pub(super) async fn fetch(
    svc: &GatewayService,
    req: Request<v1::FetchRequest>,
) -> Result<Response<v1::Alert>, Status> {
    let who = caller(&req);
    let auth = svc.parts.auth.as_deref();
    let text = req.into_inner().r#ref;
    // A ref that does not parse is reported by fetch itself, after the scope check of
    // what can be read from it.
    if let Ok(r) = text.parse::<alertmesh_alert::AlertRef>() {
        authorize_topic(auth, &who, Action::Fetch, &r.topic)?;
    } else if auth.is_some_and(|a| a.require()) && who.token.is_none() {
        authorize_topic(auth, &who, Action::Fetch, "")?;
    }
    let alert = svc.parts.fetcher.fetch(&text).await?;
    Ok(Response::new(alert))
}
