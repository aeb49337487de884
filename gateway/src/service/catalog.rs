//! `ListTopics` and `DescribeGateway`: what this gateway serves, and how to reach it.

use alertmesh_proto::v1;
use tonic::{Request, Response, Status};

use super::GatewayService;
use crate::auth::{authorize_query_quietly, caller, Caller};
use crate::catalog::TOPICS_NEED_TOKEN;
use crate::config::TopicConfig;

pub(super) async fn list_topics(
    svc: &GatewayService,
    req: Request<v1::ListTopicsRequest>,
) -> Result<Response<v1::ListTopicsResponse>, Status> {
    let (topics, hidden) = topics(svc, &caller(&req)).await;
    Ok(with_hidden(
        Response::new(v1::ListTopicsResponse {
            topics,
            queries: queries(svc, &caller(&req)),
        }),
        hidden,
    ))
}

/// Tells the caller how many topics need a token (`TOPICS_NEED_TOKEN`), when any do.
fn with_hidden<T>(mut response: Response<T>, hidden: usize) -> Response<T> {
    if hidden > 0 {
        response
            .metadata_mut()
            .insert(TOPICS_NEED_TOKEN, hidden.into());
    }
    response
}

pub(super) async fn describe_gateway(
    svc: &GatewayService,
    req: Request<v1::DescribeGatewayRequest>,
) -> Result<Response<v1::GatewayDescription>, Status> {
    let parts = &svc.parts;
    let (topics, hidden) = topics(svc, &caller(&req)).await;
    let description = Response::new(v1::GatewayDescription {
        name: parts.gateway.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        endpoints: vec![
            v1::Endpoint {
                kind: "grpc".into(),
                url: parts.advertised_url.clone(),
            },
            v1::Endpoint {
                kind: "http".into(),
                url: parts.http_url.clone(),
            },
        ],
        topics,
        auth: parts.admin.auth_methods(),
        peers: parts.mirrors.peers(),
        queries: queries(svc, &caller(&req)),
    });
    Ok(with_hidden(description, hidden))
}

/// The exposed topics the caller may use, and how many are hidden: the public ones, and
/// those its scopes cover (with any action), so a caller without a token on a gateway that
/// requires one sees the public ones, and a token's holder what it grants.
async fn topics(svc: &GatewayService, caller: &Caller) -> (Vec<v1::TopicInfo>, usize) {
    let all = svc.parts.catalog.topics();
    let visible: Vec<&TopicConfig> = all
        .iter()
        .filter(|t| crate::auth::may_see_topic(svc.parts.auth.as_deref(), caller, &t.name))
        .collect();
    let hidden = all.len() - visible.len();
    let mut described = svc.parts.catalog.describe(&visible).await;
    let with_schemas = svc.parts.schemas.topics_with_schemas();
    for (t, config) in described.iter_mut().zip(&visible) {
        t.publishable = config.publish;
        t.publish_schema = config.schema.as_ref().map(|s| s.text()).unwrap_or_default();
        if with_schemas.contains(&t.name) {
            t.schema_ids = svc.parts.schemas.topic_ids(&t.name);
            t.schema_registry = svc.parts.http_url.clone();
        }
    }
    (described, hidden)
}

/// The declared queries the caller may use: the public ones, and those its scopes cover.
fn queries(svc: &GatewayService, caller: &Caller) -> Vec<v1::QueryInfo> {
    let auth = svc.parts.auth.as_deref();
    let visible =
        |q: &crate::config::QueryConfig| authorize_query_quietly(auth, caller, &q.name, q.public);
    let queries = &svc.parts.queries;
    queries
        .infos()
        .into_iter()
        .filter(|q| {
            queries
                .get(&q.name, &visible)
                .is_ok_and(|d| visible(&d.config))
        })
        .collect()
}
