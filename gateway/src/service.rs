//! The `alertmesh.v1.AlertMesh` gRPC service: thin handlers over [`State`].

use std::collections::HashMap;
use std::sync::Arc;

use alertmesh_auth::Principal;
use alertmesh_proto::v1::{self, alert_mesh_server::AlertMeshServer};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::server::State;
use crate::{fetch, subscription};

/// Messages up to this size are accepted from clients (requests are small).
const MAX_REQUEST_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct GatewayService {
    state: Arc<State>,
}

/// The service, ready to add to a tonic server.
pub fn server(state: Arc<State>) -> AlertMeshServer<GatewayService> {
    AlertMeshServer::new(GatewayService { state })
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        // A batch is bounded by limits.max_batch_bytes, but one alert may exceed it.
        .max_encoding_message_size(usize::MAX)
}

/// The caller: set by an authentication layer when one is configured, else anonymous.
fn principal<T>(req: &Request<T>) -> Principal {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .unwrap_or_else(Principal::anonymous)
}

fn topic_info(state: &State, t: &crate::config::TopicConfig, partitions: i32) -> v1::TopicInfo {
    let _ = state;
    v1::TopicInfo {
        name: t.name.clone(),
        namespace: t.namespace.clone(),
        format: t.format.to_string(),
        description: t.description.clone(),
        partitions,
    }
}

impl GatewayService {
    async fn topics(&self) -> Vec<v1::TopicInfo> {
        let mut out = Vec::new();
        for t in &self.state.config.topics {
            // A topic Kafka cannot describe right now is still listed, with 0 partitions.
            let n = self
                .state
                .partitions(&t.name)
                .await
                .map_or(0, |p| p.len() as i32);
            out.push(topic_info(&self.state, t, n));
        }
        out
    }
}

#[tonic::async_trait]
impl v1::alert_mesh_server::AlertMesh for GatewayService {
    type SubscribeStream = ReceiverStream<Result<v1::AlertBatch, Status>>;

    async fn subscribe(
        &self,
        req: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let who = principal(&req);
        let rx = subscription::open(Arc::clone(&self.state), &who, req.into_inner()).await?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn commit_cursor(
        &self,
        req: Request<v1::CommitCursorRequest>,
    ) -> Result<Response<v1::CommitCursorResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        let topic = self.state.exposed(&req.topic)?.name.clone();
        if req.offsets.is_empty() {
            return Err(Error::InvalidArgument(
                "commit names no partition; send partition:offset pairs".into(),
            )
            .into());
        }
        let partitions = self.state.partitions(&topic).await?;
        let mut offsets = HashMap::new();
        for po in &req.offsets {
            if !partitions.contains(&po.partition) || po.offset < 0 {
                return Err(Error::InvalidArgument(format!(
                    "cannot commit offset {} of partition {}: partitions are {} and offsets start at 0",
                    po.offset,
                    po.partition,
                    subscription::describe_partitions(&partitions)
                ))
                .into());
            }
            offsets.insert(po.partition, po.offset);
        }
        let state = self
            .state
            .cursors
            .commit(&who.name, &req.name, &topic, &offsets)
            .await?;
        self.state.metrics.cursor_commits.inc();
        let mut offsets: Vec<v1::PartitionOffset> = state
            .into_iter()
            .map(|(partition, offset)| v1::PartitionOffset { partition, offset })
            .collect();
        offsets.sort_by_key(|po| po.partition);
        Ok(Response::new(v1::CommitCursorResponse { offsets }))
    }

    async fn list_topics(
        &self,
        _req: Request<v1::ListTopicsRequest>,
    ) -> Result<Response<v1::ListTopicsResponse>, Status> {
        Ok(Response::new(v1::ListTopicsResponse {
            topics: self.topics().await,
        }))
    }

    async fn describe_gateway(
        &self,
        _req: Request<v1::DescribeGatewayRequest>,
    ) -> Result<Response<v1::GatewayDescription>, Status> {
        let gw = &self.state.config.gateway;
        Ok(Response::new(v1::GatewayDescription {
            name: gw.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            endpoints: vec![
                v1::Endpoint {
                    kind: "grpc".into(),
                    url: gw.advertised_url.clone(),
                },
                v1::Endpoint {
                    kind: "http".into(),
                    url: format!("http://{}", gw.http_listen),
                },
            ],
            topics: self.topics().await,
            auth: vec![v1::AuthMethod {
                kind: "none".into(),
                params: HashMap::new(),
            }],
            peers: Vec::new(),
        }))
    }

    async fn mirror_status(
        &self,
        _req: Request<v1::MirrorStatusRequest>,
    ) -> Result<Response<v1::MirrorStatusResponse>, Status> {
        // No mirror jobs are configured on this gateway yet.
        Ok(Response::new(v1::MirrorStatusResponse {
            mirrors: Vec::new(),
        }))
    }

    async fn fetch(&self, req: Request<v1::FetchRequest>) -> Result<Response<v1::Alert>, Status> {
        let alert = fetch::fetch(&self.state, &req.into_inner().r#ref).await?;
        Ok(Response::new(alert))
    }
}
