//! `Publish`: derived records written to a publishable topic.

use alertmesh_proto::v1;
use tonic::{Request, Response, Status};

use super::GatewayService;
use crate::auth::{authorize_publish, caller};
use crate::publish::agent;

pub(super) async fn publish(
    svc: &GatewayService,
    req: Request<v1::PublishRequest>,
) -> Result<Response<v1::PublishResponse>, Status> {
    let who = caller(&req);
    let req = req.into_inner();
    let publisher = &svc.parts.publisher;
    // Unknown and non-publishable topics are named before the scope is checked: the
    // topic list is public (ListTopics), and the operator's fix differs from the caller's.
    publisher.publishable(&req.topic)?;
    authorize_publish(svc.parts.auth.as_deref(), &who, &req.topic)?;
    let issuer = match &who.token {
        Some(t) => t.issuer.clone(),
        None => svc.parts.gateway.clone(),
    };
    let agent = agent(&who.principal.name, &issuer);
    let results = publisher.publish(&req.topic, &agent, &req.records).await?;
    Ok(Response::new(v1::PublishResponse { results }))
}
