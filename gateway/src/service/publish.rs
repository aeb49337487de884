//! `Publish`: derived records written to a publishable topic.

use alertmesh_proto::v1;
use tonic::{Request, Response, Status};

use super::GatewayService;
use crate::auth::{authorize_publish, caller};
use crate::error::Error;
use crate::metrics::PublishRejection;
use crate::publish::{agent, rejection};

pub(super) async fn publish(
    svc: &GatewayService,
    req: Request<v1::PublishRequest>,
) -> Result<Response<v1::PublishResponse>, Status> {
    let who = caller(&req);
    let req = req.into_inner();
    let publisher = &svc.parts.publisher;
    let refused = |reason: PublishRejection, e: Error| {
        publisher.metrics.publish_rejected(reason);
        e
    };
    // Unknown and non-publishable topics are named before the scope is checked: the
    // topic list is public (ListTopics), and the operator's fix differs from the caller's.
    publisher.publishable(&req.topic).map_err(|e| {
        let reason = match e {
            Error::NotFound(_) => PublishRejection::unknown_topic,
            _ => PublishRejection::not_publishable,
        };
        refused(reason, e)
    })?;
    authorize_publish(svc.parts.auth.as_deref(), &who, &req.topic)
        .map_err(|e| refused(PublishRejection::scope, e))?;
    let issuer = match &who.token {
        Some(t) => t.issuer.clone(),
        None => svc.parts.gateway.clone(),
    };
    let agent = agent(&who.principal.name, &issuer);
    let results = publisher
        .publish(&req.topic, &agent, &req.records)
        .await
        .map_err(|e| refused(rejection(&e), e))?;
    Ok(Response::new(v1::PublishResponse { results }))
}
