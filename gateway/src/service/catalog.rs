//! `ListTopics` and `DescribeGateway`: what this gateway serves, and how to reach it.

use alertmesh_proto::v1;
use tonic::{Request, Response, Status};

use super::GatewayService;
use crate::auth::{caller, Caller};
use crate::config::TopicConfig;

pub(super) async fn list_topics(
    svc: &GatewayService,
    req: Request<v1::ListTopicsRequest>,
) -> Result<Response<v1::ListTopicsResponse>, Status> {
    Ok(Response::new(v1::ListTopicsResponse {
        topics: topics(svc, &caller(&req)).await,
    }))
}

pub(super) async fn describe_gateway(
    svc: &GatewayService,
    req: Request<v1::DescribeGatewayRequest>,
) -> Result<Response<v1::GatewayDescription>, Status> {
    let parts = &svc.parts;
    let http_scheme = if parts.tls { "https" } else { "http" };
    Ok(Response::new(v1::GatewayDescription {
        name: parts.gateway.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        endpoints: vec![
            v1::Endpoint {
                kind: "grpc".into(),
                url: parts.advertised_url.clone(),
            },
            v1::Endpoint {
                kind: "http".into(),
                url: format!("{http_scheme}://{}", parts.http_listen),
            },
        ],
        topics: topics(svc, &caller(&req)).await,
        auth: parts.admin.auth_methods(),
        peers: parts.mirrors.peers(),
    }))
}

/// The exposed topics; a caller without a token on a gateway that requires one only
/// sees the public ones.
async fn topics(svc: &GatewayService, caller: &Caller) -> Vec<v1::TopicInfo> {
    let auth = svc.parts.auth.as_deref();
    let visible: Vec<&TopicConfig> = svc
        .parts
        .catalog
        .topics()
        .iter()
        .filter(|t| {
            !auth.is_some_and(|a| a.require() && caller.token.is_none() && !a.is_public(&t.name))
        })
        .collect();
    svc.parts.catalog.describe(&visible).await
}
