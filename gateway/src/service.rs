//! The `alertmesh.v1.AlertMesh` gRPC service: authorization, then one module's handle per
//! call, one file per RPC.
//!
//! - `subscribe.rs`: `Subscribe`, served on its own route with a zero-copy response body.
//! - `commit_cursor.rs`: `CommitCursor`.
//! - `fetch.rs`: `Fetch`.
//! - `publish.rs`: `Publish`.
//! - `query.rs`: `Query`.
//! - `catalog.rs`: `ListTopics` and `DescribeGateway`.
//! - `admin.rs`: `IssueCredential`, `ListCredentials`, `RevokeCredential`.
//! - `mirror_status.rs`: `MirrorStatus`.
//! - `provenance.rs`: `Provenance`.
//! - `schema.rs`: `GetSchema`.
//! - `request_limit.rs`: what a client can make the gateway buffer while a request arrives.

use std::sync::Arc;
use std::time::Duration;

use alertmesh_proto::v1::{self, alert_mesh_server::AlertMeshServer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};

use crate::admin::Admin;
use crate::auth::Auth;
use crate::catalog::Catalog;
use crate::fetch::Fetcher;
use crate::kafka::cluster::Cluster;
use crate::mirrors::Mirrors;
use crate::publish::Publisher;
use crate::query::Queries;
use crate::registry::Schemas;
use crate::subscription::Subscriptions;

mod admin;
mod catalog;
mod commit_cursor;
mod fetch;
mod mirror_status;
mod provenance;
mod publish;
mod query;
mod request_limit;
mod schema;
mod subscribe;

pub(crate) use request_limit::RequestLimitLayer;
pub(crate) use subscribe::MeshService;

/// Messages up to this size are accepted from clients (requests are small).
const MAX_REQUEST_BYTES: usize = 1 << 20;

/// The handles the RPCs work with.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) gateway: String,
    /// The URL peers and users reach the gRPC port at.
    pub(crate) advertised_url: String,
    /// The URL others reach the HTTP side port at (see
    /// [`GatewayConfig::advertised_http_url`](crate::config::GatewayConfig::advertised_http_url)).
    pub(crate) http_url: String,
    pub(crate) auth: Option<Arc<Auth>>,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) subscriptions: Arc<Subscriptions>,
    pub(crate) fetcher: Fetcher,
    pub(crate) publisher: Arc<Publisher>,
    pub(crate) admin: Admin,
    pub(crate) mirrors: Arc<Mirrors>,
    pub(crate) provenance: crate::provenance::Provenance,
    /// The topics' Confluent schema ids (`GetSchema`, and the topic listing).
    pub(crate) schemas: Schemas,
    /// The declared database queries.
    pub(crate) queries: Arc<Queries>,
    /// Where stream guards run, so shutdown waits for them.
    pub(crate) tasks: TaskTracker,
}

#[derive(Debug, Clone)]
pub(crate) struct GatewayService {
    parts: Arc<Parts>,
}

/// The service, ready to add to a tonic server.
pub(crate) fn server(parts: Parts) -> MeshService {
    let service = GatewayService {
        parts: Arc::new(parts),
    };
    let generated = AlertMeshServer::new(service.clone())
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        // A batch is bounded by limits.max_batch_bytes, but one alert may exceed it.
        .max_encoding_message_size(usize::MAX);
    MeshService::new(generated, service)
}

/// Keeps readiness current: the AlertMesh service reports NOT_SERVING in gRPC health (and
/// `/readyz` 503) while Kafka cannot be reached; liveness (`/healthz`) is unaffected.
pub(crate) async fn watch_kafka(
    cluster: Cluster,
    health: tonic_health::server::HealthReporter,
    bootstrap: String,
    cancel: CancellationToken,
) {
    let mut was = None;
    while !cancel.is_cancelled() {
        let ok = cluster.probe().await;
        if was != Some(ok) {
            if ok {
                tracing::info!("kafka reachable");
                health.set_serving::<MeshService>().await;
            } else {
                tracing::warn!(bootstrap = %bootstrap, "kafka unreachable");
                health.set_not_serving::<MeshService>().await;
            }
            was = Some(ok);
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Each RPC lives in its own file; this only routes to it.
#[tonic::async_trait]
impl v1::alert_mesh_server::AlertMesh for GatewayService {
    type SubscribeStream = crate::auth::stream::Guarded<v1::AlertBatch>;

    async fn subscribe(
        &self,
        req: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        subscribe::generated(self, req).await
    }

    type QueryStream = crate::auth::stream::Guarded<v1::QueryBatch>;

    async fn query(
        &self,
        req: Request<v1::QueryRequest>,
    ) -> Result<Response<Self::QueryStream>, Status> {
        query::query(self, req).await
    }

    async fn commit_cursor(
        &self,
        req: Request<v1::CommitCursorRequest>,
    ) -> Result<Response<v1::CommitCursorResponse>, Status> {
        commit_cursor::commit_cursor(self, req).await
    }

    async fn publish(
        &self,
        req: Request<v1::PublishRequest>,
    ) -> Result<Response<v1::PublishResponse>, Status> {
        publish::publish(self, req).await
    }

    async fn list_topics(
        &self,
        req: Request<v1::ListTopicsRequest>,
    ) -> Result<Response<v1::ListTopicsResponse>, Status> {
        catalog::list_topics(self, req).await
    }

    async fn describe_gateway(
        &self,
        req: Request<v1::DescribeGatewayRequest>,
    ) -> Result<Response<v1::GatewayDescription>, Status> {
        catalog::describe_gateway(self, req).await
    }

    async fn mirror_status(
        &self,
        req: Request<v1::MirrorStatusRequest>,
    ) -> Result<Response<v1::MirrorStatusResponse>, Status> {
        mirror_status::mirror_status(self, req)
    }

    async fn fetch(&self, req: Request<v1::FetchRequest>) -> Result<Response<v1::Alert>, Status> {
        fetch::fetch(self, req).await
    }

    async fn provenance(
        &self,
        req: Request<v1::ProvenanceRequest>,
    ) -> Result<Response<v1::ProvenanceGraph>, Status> {
        provenance::provenance(self, req).await
    }

    async fn issue_credential(
        &self,
        req: Request<v1::IssueCredentialRequest>,
    ) -> Result<Response<v1::IssueCredentialResponse>, Status> {
        admin::issue_credential(self, req).await
    }

    async fn list_credentials(
        &self,
        req: Request<v1::ListCredentialsRequest>,
    ) -> Result<Response<v1::ListCredentialsResponse>, Status> {
        admin::list_credentials(self, req)
    }

    async fn revoke_credential(
        &self,
        req: Request<v1::RevokeCredentialRequest>,
    ) -> Result<Response<v1::RevokeCredentialResponse>, Status> {
        admin::revoke_credential(self, req).await
    }

    async fn get_schema(
        &self,
        req: Request<v1::GetSchemaRequest>,
    ) -> Result<Response<v1::SchemaInfo>, Status> {
        schema::get_schema(self, req).await
    }
}
