//! The `alertmesh.v1.AlertMesh` gRPC service: thin handlers over [`State`].

use std::sync::Arc;

use alertmesh_auth::Action;
use alertmesh_proto::v1::{self, alert_mesh_server::AlertMeshServer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::{authorize_topic, caller, require_admin};
use crate::server::State;
use crate::{admin, fetch};

/// Messages up to this size are accepted from clients (requests are small).
const MAX_REQUEST_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub(crate) struct GatewayService {
    state: Arc<State>,
}

mod subscribe_route;

pub(crate) use subscribe_route::MeshService;

/// The service, ready to add to a tonic server.
pub(crate) fn server(state: Arc<State>) -> MeshService {
    let service = GatewayService { state };
    let generated = AlertMeshServer::new(service.clone())
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        // A batch is bounded by limits.max_batch_bytes, but one alert may exceed it.
        .max_encoding_message_size(usize::MAX);
    MeshService::new(generated, service)
}

impl GatewayService {
    /// Opens the subscription `req` asks for, once its caller may read the topic: the
    /// batches to stream.
    async fn open_subscription(
        &self,
        req: Request<v1::SubscribeRequest>,
    ) -> Result<mpsc::Receiver<Result<v1::AlertBatch, Status>>, Status> {
        let who = caller(&req);
        let auth = self.state.auth.clone();
        authorize_topic(
            auth.as_deref(),
            &who,
            Action::Subscribe,
            &req.get_ref().topic,
        )?;
        let rx = self
            .state
            .subscriptions
            .open(&who.principal, req.into_inner())
            .await?;
        Ok(crate::auth::stream::guard(auth, &who, rx))
    }

    /// The exposed topics; a caller without a token on a gateway that requires one only
    /// sees the public ones.
    async fn topics(&self, caller: &crate::auth::Caller) -> Vec<v1::TopicInfo> {
        let auth = self.state.auth.as_deref();
        let visible: Vec<&crate::config::TopicConfig> = self
            .state
            .catalog
            .topics()
            .iter()
            .filter(|t| {
                !auth
                    .is_some_and(|a| a.require() && caller.token.is_none() && !a.is_public(&t.name))
            })
            .collect();
        self.state.catalog.describe(&visible).await
    }
}

#[tonic::async_trait]
impl v1::alert_mesh_server::AlertMesh for GatewayService {
    type SubscribeStream = ReceiverStream<Result<v1::AlertBatch, Status>>;

    async fn subscribe(
        &self,
        req: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        // Plain requests are served by `MeshService`'s own route; this serves the rest.
        let rx = self.open_subscription(req).await?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn commit_cursor(
        &self,
        req: Request<v1::CommitCursorRequest>,
    ) -> Result<Response<v1::CommitCursorResponse>, Status> {
        let who = caller(&req);
        let req = req.into_inner();
        authorize_topic(
            self.state.auth.as_deref(),
            &who,
            Action::Subscribe,
            &req.topic,
        )?;
        let offsets = self
            .state
            .subscriptions
            .commit_cursor(&who.principal, &req.name, &req.topic, &req.offsets)
            .await?;
        Ok(Response::new(v1::CommitCursorResponse { offsets }))
    }

    async fn list_topics(
        &self,
        req: Request<v1::ListTopicsRequest>,
    ) -> Result<Response<v1::ListTopicsResponse>, Status> {
        Ok(Response::new(v1::ListTopicsResponse {
            topics: self.topics(&caller(&req)).await,
        }))
    }

    async fn describe_gateway(
        &self,
        req: Request<v1::DescribeGatewayRequest>,
    ) -> Result<Response<v1::GatewayDescription>, Status> {
        let gw = &self.state.config.gateway;
        let http_scheme = if self.state.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
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
                    url: format!("{http_scheme}://{}", gw.http_listen),
                },
            ],
            topics: self.topics(&caller(&req)).await,
            auth: admin::auth_methods(&self.state),
            peers: crate::mirrors::peers(&self.state),
        }))
    }

    async fn mirror_status(
        &self,
        req: Request<v1::MirrorStatusRequest>,
    ) -> Result<Response<v1::MirrorStatusResponse>, Status> {
        if self.state.auth.is_some() {
            require_admin(self.state.auth.as_deref(), &caller(&req))?;
        }
        Ok(Response::new(v1::MirrorStatusResponse {
            mirrors: self
                .state
                .mirrors
                .iter()
                .map(crate::mirrors::info)
                .collect(),
        }))
    }

    async fn fetch(&self, req: Request<v1::FetchRequest>) -> Result<Response<v1::Alert>, Status> {
        let who = caller(&req);
        let text = req.into_inner().r#ref;
        // A ref that does not parse is reported by fetch itself, after the scope check of
        // what can be read from it.
        if let Ok(r) = text.parse::<alertmesh_alert::AlertRef>() {
            authorize_topic(self.state.auth.as_deref(), &who, Action::Fetch, &r.topic)?;
        } else if self.state.auth.as_ref().is_some_and(|a| a.require()) && who.token.is_none() {
            authorize_topic(self.state.auth.as_deref(), &who, Action::Fetch, "")?;
        }
        let alert = fetch::fetch(&self.state, &text).await?;
        Ok(Response::new(alert))
    }

    async fn issue_credential(
        &self,
        req: Request<v1::IssueCredentialRequest>,
    ) -> Result<Response<v1::IssueCredentialResponse>, Status> {
        require_admin(self.state.auth.as_deref(), &caller(&req))?;
        Ok(Response::new(
            admin::issue(&self.state, req.into_inner()).await?,
        ))
    }

    async fn list_credentials(
        &self,
        req: Request<v1::ListCredentialsRequest>,
    ) -> Result<Response<v1::ListCredentialsResponse>, Status> {
        require_admin(self.state.auth.as_deref(), &caller(&req))?;
        Ok(Response::new(admin::list(&self.state, &req.into_inner())?))
    }

    async fn revoke_credential(
        &self,
        req: Request<v1::RevokeCredentialRequest>,
    ) -> Result<Response<v1::RevokeCredentialResponse>, Status> {
        let who = caller(&req);
        require_admin(self.state.auth.as_deref(), &who)?;
        admin::revoke(&self.state, &who, req.into_inner()).await?;
        Ok(Response::new(v1::RevokeCredentialResponse {}))
    }
}
