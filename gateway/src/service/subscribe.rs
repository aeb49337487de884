//! `Subscribe`: the caller's scope check, then
//! [`Subscriptions::open`](crate::subscription::Subscriptions::open), served without
//! tonic's encoder.
//!
//! tonic writes every response message into a fresh buffer of its own: for a stream of
//! alerts that is one more copy of every payload (and page faults on every new buffer),
//! about as much work as reading the records from Kafka. The records of a batch are
//! already serialised as `AlertBatch` elements in shared blocks ([`v1::Framed`]), so
//! this route sends them as they are: each gRPC message goes out as its 5-byte prefix and
//! slices of those blocks, and HTTP/2 writes the slices to the socket.
//!
//! Only plain requests take this route; anything else (another content type, a
//! compressed request) goes to tonic's generated service, which serves `Subscribe` the
//! same way, only with the copy.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use alertmesh_auth::Action;
use alertmesh_proto::v1::{self, alert_mesh_server::AlertMeshServer};
use bytes::{BufMut, Bytes, BytesMut};
use http_body::Frame;
use http_body_util::{BodyExt as _, Limited};
use prost::Message as _;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};
use tower::Service;

use super::{GatewayService, MAX_REQUEST_BYTES};
use crate::auth::stream::{guard, Guarded};
use crate::auth::{authorize_topic, caller};

const SUBSCRIBE: &str = "/alertmesh.v1.AlertMesh/Subscribe";

/// Opens the subscription `req` asks for, once its caller may read the topic: the
/// batches to stream.
async fn open(
    svc: &GatewayService,
    req: Request<v1::SubscribeRequest>,
) -> Result<Guarded<v1::AlertBatch>, Status> {
    let who = caller(&req);
    let auth = svc.parts.auth.clone();
    authorize_topic(
        auth.as_deref(),
        &who,
        Action::Subscribe,
        &req.get_ref().topic,
    )?;
    let client = (req.remote_addr(), who.token.is_some());
    let rx = svc
        .parts
        .subscriptions
        .open(&who.principal, client, req.into_inner())
        .await?;
    Ok(guard(auth, &who, rx, &svc.parts.tasks))
}

/// `Subscribe` through tonic's generated service: requests this route does not take.
pub(super) async fn generated(
    svc: &GatewayService,
    req: Request<v1::SubscribeRequest>,
) -> Result<Response<Guarded<v1::AlertBatch>>, Status> {
    Ok(Response::new(open(svc, req).await?))
}

/// The `AlertMesh` service: `Subscribe` on its own route, the rest through tonic.
#[derive(Debug, Clone)]
pub(crate) struct MeshService {
    generated: AlertMeshServer<GatewayService>,
    service: GatewayService,
}

impl MeshService {
    pub(super) fn new(generated: AlertMeshServer<GatewayService>, service: GatewayService) -> Self {
        MeshService { generated, service }
    }
}

impl NamedService for MeshService {
    const NAME: &'static str = <AlertMeshServer<GatewayService> as NamedService>::NAME;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl Service<http::Request<Body>> for MeshService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() == SUBSCRIBE && plain(&req) {
            let service = self.service.clone();
            Box::pin(async move { Ok(subscribe(service, req).await) })
        } else {
            let mut generated = self.generated.clone();
            Box::pin(async move { generated.call(req).await })
        }
    }
}

/// A gRPC request this route understands: protobuf, not compressed.
fn plain<B>(req: &http::Request<B>) -> bool {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    matches!(
        header(http::header::CONTENT_TYPE),
        Some("application/grpc" | "application/grpc+proto")
    ) && header(http::HeaderName::from_static("grpc-encoding")).is_none_or(|e| e == "identity")
}

async fn subscribe(service: GatewayService, req: http::Request<Body>) -> http::Response<Body> {
    let (parts, body) = req.into_parts();
    let message = match read_request(body).await {
        Ok(m) => m,
        Err(status) => return status.into_http(),
    };
    // Metadata and extensions (the caller the auth layer found) as tonic would pass them.
    let req = Request::from_http(http::Request::from_parts(parts, message));
    match open(&service, req).await {
        Ok(rx) => {
            let mut response = http::Response::new(Body::new(BatchBody::new(rx)));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/grpc"),
            );
            response
        }
        Err(status) => status.into_http(),
    }
}

/// The one request message: a 5-byte prefix (uncompressed, length) and a
/// `SubscribeRequest`.
async fn read_request(body: Body) -> Result<v1::SubscribeRequest, Status> {
    let bytes = Limited::new(body, 5 + MAX_REQUEST_BYTES)
        .collect()
        .await
        .map_err(|e| match e.downcast::<Status>() {
            // The request limits' own verdicts (budget, deadline) keep their codes.
            Ok(status) => *status,
            Err(e) => Status::invalid_argument(format!(
                "cannot read the SubscribeRequest (at most {MAX_REQUEST_BYTES} bytes): {e}"
            )),
        })?
        .to_bytes();
    let Some((prefix, message)) = bytes.split_first_chunk::<5>() else {
        return Err(Status::invalid_argument(
            "the request carries no SubscribeRequest",
        ));
    };
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if prefix[0] != 0 {
        return Err(Status::invalid_argument(
            "the request is flagged compressed without a grpc-encoding",
        ));
    }
    if len != message.len() {
        return Err(Status::invalid_argument(
            "the request must be exactly one SubscribeRequest message",
        ));
    }
    v1::SubscribeRequest::decode(message)
        .map_err(|e| Status::invalid_argument(format!("malformed SubscribeRequest: {e}")))
}

/// The response body: each batch as a gRPC message made of its prefix and the batch's
/// runs, then the stream's status in trailers.
struct BatchBody {
    /// Polled only as hyper asks for the next piece (one ahead of the stream's window):
    /// nothing else takes batches out of the subscription's queue for a client that does
    /// not read (README "Clients that do not read").
    rx: Guarded<v1::AlertBatch>,
    /// Pieces of the message being sent.
    pieces: VecDeque<Bytes>,
    done: bool,
}

impl BatchBody {
    fn new(rx: Guarded<v1::AlertBatch>) -> Self {
        BatchBody {
            rx,
            pieces: VecDeque::new(),
            done: false,
        }
    }
}

impl http_body::Body for BatchBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(piece) = self.pieces.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(piece))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        let status = match std::task::ready!(self.rx.poll_recv(cx)) {
            Some(Ok(batch)) => match message_pieces(batch, &mut self.pieces) {
                Ok(()) => {
                    let first = self.pieces.pop_front().unwrap_or_default();
                    return Poll::Ready(Some(Ok(Frame::data(first))));
                }
                Err(status) => status,
            },
            Some(Err(status)) => status,
            None => Status::ok(""),
        };
        self.done = true;
        let mut trailers = http::HeaderMap::new();
        if let Err(e) = status.add_header(&mut trailers) {
            // Only a message that cannot be a header value gets here; the code still can.
            if let Some(suppressed) = NO_MESSAGE.admit() {
                tracing::warn!(error = %e, suppressed, "stream status without its message");
            }
            trailers.clear();
            let _ = Status::new(status.code(), "").add_header(&mut trailers);
        }
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.pieces.is_empty()
    }
}

/// Appends the pieces of `batch` as one gRPC message: the prefix (uncompressed, length)
/// with any alerts not yet serialised, the framed runs as they are, then the skipped
/// records. The fields come in the order prost writes them.
fn message_pieces(batch: v1::AlertBatch, pieces: &mut VecDeque<Bytes>) -> Result<(), Status> {
    // A batch is bounded by limits.max_batch_bytes plus one record; Kafka records are far
    // below the 4 GiB a gRPC message can hold.
    let len = u32::try_from(batch.encoded_len()).map_err(|_| {
        Status::resource_exhausted("a batch is larger than a gRPC message can be (4 GiB)")
    })?;
    let v1::AlertBatch {
        alerts,
        skipped,
        framed,
        starts,
    } = batch;
    let head = v1::AlertBatch {
        alerts,
        ..v1::AlertBatch::default()
    };
    let mut first = BytesMut::with_capacity(5 + head.encoded_len());
    first.put_u8(0);
    first.put_u32(len);
    head.encode_raw(&mut first);
    pieces.push_back(first.freeze());
    pieces.extend(framed.into_runs());
    if !skipped.is_empty() || !starts.is_empty() {
        let tail = v1::AlertBatch {
            skipped,
            starts,
            ..v1::AlertBatch::default()
        };
        pieces.push_back(tail.encode_to_vec().into());
    }
    Ok(())
}

/// Logs of statuses without their message, which a peer, a producer or a failing cluster can repeat.
static NO_MESSAGE: alertmesh_mirror::limit::RateLimit = alertmesh_mirror::limit::RateLimit::new();

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(offset: i64) -> v1::Alert {
        v1::Alert {
            r#ref: format!("am://g/t/0/{offset}"),
            topic: "t".into(),
            offset,
            payload: Bytes::from(vec![offset as u8; 50]),
            ..v1::Alert::default()
        }
    }

    #[test]
    fn a_batch_is_one_grpc_message_in_pieces() {
        let mut batch = v1::AlertBatch {
            alerts: vec![alert(1)],
            skipped: vec![v1::Skipped {
                r#ref: "am://g/t/0/4".into(),
                reason: "not Avro".into(),
            }],
            starts: vec![v1::PartitionOffset {
                partition: 2,
                offset: 17,
            }],
            ..v1::AlertBatch::default()
        };
        batch.framed.push_alert(&alert(2));
        batch.framed.push_alert(&alert(3));
        let whole = batch.encode_to_vec();
        let mut pieces = VecDeque::new();
        message_pieces(batch.clone(), &mut pieces).unwrap();
        assert_eq!(pieces.len(), 4, "prefix, two runs, skipped and starts");
        let joined: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        assert_eq!(joined[0], 0, "not compressed");
        assert_eq!(&joined[1..5], &(whole.len() as u32).to_be_bytes());
        assert_eq!(&joined[5..], &whole[..], "the bytes tonic would send");
        let back = v1::AlertBatch::decode(&joined[5..]).unwrap();
        assert_eq!(back.alerts, vec![alert(1), alert(2), alert(3)]);
        assert_eq!(back.skipped, batch.skipped);
        assert_eq!(back.starts, batch.starts);
    }

    #[tokio::test]
    async fn a_request_must_be_one_plain_subscribe_request() {
        let framed = |flag: u8, msg: &[u8], extra: usize| {
            let mut b = vec![flag];
            b.extend_from_slice(&((msg.len() + extra) as u32).to_be_bytes());
            b.extend_from_slice(msg);
            Body::new(http_body_util::Full::new(Bytes::from(b)))
        };
        let req = v1::SubscribeRequest {
            topic: "ztf".into(),
            ..v1::SubscribeRequest::default()
        };
        let ok = read_request(framed(0, &req.encode_to_vec(), 0)).await;
        assert_eq!(ok.unwrap(), req);
        for (body, says) in [
            (framed(1, &req.encode_to_vec(), 0), "compressed"),
            (framed(0, &req.encode_to_vec(), 3), "exactly one"),
            (framed(0, &[0xff, 0xff], 0), "malformed"),
            (Body::empty(), "no SubscribeRequest"),
        ] {
            let status = read_request(body).await.unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(status.message().contains(says), "{}", status.message());
        }
    }

    #[test]
    fn only_plain_grpc_takes_the_route() {
        let req = |ct: &str, enc: Option<&str>| {
            let mut b = http::Request::builder().header("content-type", ct);
            if let Some(e) = enc {
                b = b.header("grpc-encoding", e);
            }
            b.body(()).unwrap()
        };
        assert!(plain(&req("application/grpc", None)));
        assert!(plain(&req("application/grpc+proto", Some("identity"))));
        assert!(!plain(&req("application/grpc", Some("gzip"))));
        assert!(!plain(&req("application/grpc-web", None)));
        assert!(!plain(&req("application/json", None)));
    }
}
