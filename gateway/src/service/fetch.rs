//! `Fetch`: the one alert a ref names.

use alertmesh_auth::Action;
use alertmesh_proto::v1;
use tonic::{Request, Response, Status};

use super::GatewayService;
use crate::auth::{authorize_query, authorize_topic, caller};

pub(super) async fn fetch(
    svc: &GatewayService,
    req: Request<v1::FetchRequest>,
) -> Result<Response<v1::Alert>, Status> {
    let who = caller(&req);
    let auth = svc.parts.auth.as_deref();
    let text = req.into_inner().r#ref;
    // `am://<gateway>/query:<name>/<order value>`: a row of a declared query.
    if let Some((gateway, name, order)) = crate::query::parse_ref(&text) {
        if gateway != svc.parts.gateway {
            return Err(crate::Error::NotFound(format!(
                "ref names gateway {gateway:?}; this gateway is {:?}: ask that gateway",
                svc.parts.gateway
            ))
            .into());
        }
        let queries = &svc.parts.queries;
        let visible = |q: &crate::config::QueryConfig| {
            crate::auth::authorize_query_quietly(auth, &who, &q.name, q.public)
        };
        let declared = queries.get(name, &visible)?;
        authorize_query(auth, &who, name, declared.config.public)?;
        return Ok(Response::new(queries.fetch(declared, order).await?));
    }
    // A ref that does not parse is reported by fetch itself, after the scope check of
    // what can be read from it.
    if let Ok(r) = text.parse::<alertmesh_alert::AlertRef>() {
        authorize_topic(auth, &who, Action::Fetch, &r.topic)?;
    } else if auth.is_some_and(|a| a.require()) && who.token.is_none() {
        authorize_topic(auth, &who, Action::Fetch, "")?;
    }
    let alert = match svc.parts.fetcher.fetch(&text).await {
        Ok(alert) => alert,
        // Gone from Kafka (retention, a deleted topic): an archive may still hold it.
        Err(crate::Error::NotFound(why)) => {
            let archived = match text.parse::<alertmesh_alert::AlertRef>() {
                Ok(r) if r.gateway == svc.parts.gateway => {
                    svc.parts
                        .queries
                        .fetch_archived(&r.topic, r.partition, r.offset)
                        .await?
                }
                _ => None,
            };
            archived.ok_or(crate::Error::NotFound(why))?
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Response::new(alert))
}
