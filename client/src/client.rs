//! [`Client`]: a connection to one gateway, with typed calls for what programs use most
//! and the generated gRPC client ([`Grpc`]) for everything else.

use std::collections::BTreeMap;

use alertmesh_proto::v1::{self, alert_mesh_client::AlertMeshClient};
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Streaming;

use crate::{Error, Result, Subscription, Token};

/// Largest message accepted from a gateway (one batch, or one large alert).
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// Adds `authorization: Bearer <token>` to every call. Its `Debug` hides the token.
#[derive(Clone)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Bearer(<redacted>)"
        } else {
            "Bearer(none)"
        })
    }
}

impl Bearer {
    /// The interceptor for `token`, or one that adds nothing.
    pub fn new(token: Option<&Token>) -> Result<Bearer> {
        let Some(token) = token else {
            return Ok(Bearer(None));
        };
        let mut value: AsciiMetadataValue = format!("Bearer {}", token.secret())
            .parse()
            .map_err(|_| Error::Token("the token has characters a header cannot carry"))?;
        value.set_sensitive(true);
        Ok(Bearer(Some(value)))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A `Subscribe` stream read in place (see [`Client::subscribe_views`]).
pub type ViewStream =
    alertmesh_proto::view::ViewStream<tonic::service::interceptor::ResponseBody<tonic::body::Body>>;

/// The generated gRPC client over a connection with a token.
pub type Grpc = AlertMeshClient<InterceptedService<Channel, Bearer>>;

/// A connection to a gateway (see [`crate::Gateway::connect`]). Cheap to clone: clones
/// share the connection.
#[derive(Debug, Clone)]
pub struct Client {
    grpc: Grpc,
    service: InterceptedService<Channel, Bearer>,
    url: String,
}

impl Client {
    /// A client over `channel`, adding `bearer` to every call.
    pub fn new(channel: Channel, bearer: Bearer, url: &str) -> Client {
        let service = InterceptedService::new(channel, bearer);
        let grpc = AlertMeshClient::new(service.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Client {
            grpc,
            service,
            url: url.to_owned(),
        }
    }

    /// This client, accepting answers of at most `bytes` (instead of
    /// [`MAX_MESSAGE_BYTES`]): for programs that talk to gateways they do not trust, so an
    /// answer cannot take more memory than they expect.
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Client {
        self.grpc = self.grpc.max_decoding_message_size(bytes);
        self
    }

    /// The URL this client is connected to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The generated gRPC client, for calls without a typed method here.
    pub fn grpc(&mut self) -> &mut Grpc {
        &mut self.grpc
    }

    /// The generated gRPC client, owned.
    pub fn into_grpc(self) -> Grpc {
        self.grpc
    }

    /// `DescribeGateway`: name, version, endpoints, topics, authentication, peers.
    pub async fn describe(&mut self) -> Result<v1::GatewayDescription> {
        Ok(self
            .grpc
            .describe_gateway(v1::DescribeGatewayRequest {})
            .await?
            .into_inner())
    }

    /// `ListTopics`: the topics the gateway exposes.
    pub async fn list_topics(&mut self) -> Result<Vec<v1::TopicInfo>> {
        Ok(self
            .grpc
            .list_topics(v1::ListTopicsRequest {})
            .await?
            .into_inner()
            .topics)
    }

    /// `Fetch`: the record an alert ref (`am://<gateway>/<topic>/<partition>/<offset>`)
    /// names.
    pub async fn fetch(&mut self, alert_ref: &str) -> Result<v1::Alert> {
        Ok(self
            .grpc
            .fetch(v1::FetchRequest {
                r#ref: alert_ref.to_owned(),
            })
            .await?
            .into_inner())
    }

    /// `CommitCursor`: stores `positions` (partition → next offset to read) under the
    /// caller's cursor `name` for `topic`.
    pub async fn commit_cursor(
        &mut self,
        name: &str,
        topic: &str,
        positions: &BTreeMap<i32, i64>,
    ) -> Result<()> {
        let request = v1::CommitCursorRequest {
            name: name.to_owned(),
            topic: topic.to_owned(),
            offsets: positions
                .iter()
                .map(|(&partition, &offset)| v1::PartitionOffset { partition, offset })
                .collect(),
        };
        self.grpc.commit_cursor(request).await?;
        Ok(())
    }

    /// `Subscribe`, as a [`Subscription`] that reconnects and resumes after a gateway
    /// restart or a cut connection. The first request is sent now, so a refused
    /// subscription (unknown topic, bad filter, missing scope) fails here.
    pub async fn subscribe(&self, request: v1::SubscribeRequest) -> Result<Subscription> {
        Subscription::open(self.grpc.clone(), request).await
    }

    /// `Subscribe` on this gateway, falling back on `replicas` (other processes of the
    /// same gateway: same name and config over the same Kafka cluster, see
    /// [`crate::connect_any`]): opened on the first that answers, and after a transient
    /// failure reopened on the next one, resuming after the last delivered alert, so a
    /// stream whose replica dies continues on another without a gap or a repeat.
    pub async fn subscribe_with_replicas(
        &self,
        replicas: &[Client],
        request: v1::SubscribeRequest,
    ) -> Result<Subscription> {
        let others = replicas.iter().map(|c| c.grpc.clone()).collect();
        Subscription::open_any(self.grpc.clone(), others, request).await
    }

    /// `Subscribe` once: the raw stream, which ends at the first failure.
    pub async fn subscribe_once(
        &mut self,
        request: impl tonic::IntoRequest<v1::SubscribeRequest>,
    ) -> Result<Streaming<v1::AlertBatch>> {
        Ok(self.grpc.subscribe(request).await?.into_inner())
    }

    /// `Subscribe` once, each batch's alerts kept as the bytes they arrived in (see
    /// [`alertmesh_proto::view`]): for readers that need a few fields of many alerts.
    pub async fn subscribe_views(
        &mut self,
        request: impl tonic::IntoRequest<v1::SubscribeRequest>,
    ) -> Result<ViewStream> {
        Ok(
            alertmesh_proto::view::subscribe_views(&mut self.service, request, MAX_MESSAGE_BYTES)
                .await?
                .into_inner(),
        )
    }
}
