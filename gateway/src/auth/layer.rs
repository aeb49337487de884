//! The tower layer that authenticates every gRPC call once, before any handler runs: it
//! verifies the bearer token (and, for mutual TLS, the client certificate) and puts the
//! [`Caller`](super::Caller) into the request extensions. A bad token ends the call with UNAUTHENTICATED.
//! The gRPC health service is not checked.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

use super::Auth;

const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

/// Adds authentication to a service stack; without `[auth]` it passes calls through,
/// except those without a client certificate where `tls.client_ca` requires one
/// ([`super::certificate_only`]).
#[derive(Debug, Clone)]
pub(crate) struct AuthLayer {
    auth: Option<Arc<Auth>>,
    certificate_only: Option<Arc<str>>,
}

impl AuthLayer {
    pub(crate) fn new(auth: Option<Arc<Auth>>, certificate_only: Option<Arc<str>>) -> Self {
        AuthLayer {
            auth,
            certificate_only,
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            auth: self.auth.clone(),
            certificate_only: self.certificate_only.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the gRPC router.
#[derive(Debug, Clone)]
pub(crate) struct Authenticate<S> {
    inner: S,
    auth: Option<Arc<Auth>>,
    certificate_only: Option<Arc<str>>,
}

type Req = http::Request<tonic::body::Body>;

/// The leaf certificate (DER) the client of `req`'s connection presented, if any.
fn client_cert(req: &Req) -> Option<Vec<u8>> {
    req.extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs())
        .and_then(|certs| certs.first().map(|c| c.to_vec()))
}
type Resp = http::Response<tonic::body::Body>;

impl<S> Service<Req> for Authenticate<S>
where
    S: Service<Req, Response = Resp> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Resp;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Resp, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Req) -> Self::Future {
        // The clone is not ready; the ready one serves this call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if req.uri().path().starts_with(HEALTH_PREFIX) {
            return Box::pin(inner.call(req));
        }
        let Some(auth) = self.auth.clone() else {
            if let Some(gateway) = &self.certificate_only {
                if client_cert(&req).is_none() {
                    tracing::debug!(
                        path = req.uri().path(),
                        "call without a client certificate refused"
                    );
                    let refused = tonic::Status::from(super::certificate_missing(gateway));
                    return Box::pin(async move { Ok(refused.into_http()) });
                }
            }
            return Box::pin(inner.call(req));
        };
        Box::pin(async move {
            let authorization = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap_or("\u{0}invalid"));
            let cert = client_cert(&req);
            match auth.authenticate(authorization, cert.as_deref()).await {
                Ok(caller) => {
                    req.extensions_mut().insert(caller);
                    inner.call(req).await
                }
                Err(e) => {
                    tracing::debug!(path = req.uri().path(), error = %e, "call refused");
                    Ok(tonic::Status::from(e).into_http())
                }
            }
        })
    }
}
