//! A `Subscribe` stream read straight from its HTTP/2 frames.
//!
//! tonic's client copies every frame it receives into one buffer before decoding: for a
//! stream of alerts, one more copy of every payload in the subscriber. This reader keeps
//! the frames as they arrived and decodes each `AlertBatch` across them, so an alert that
//! arrived within one frame (nearly all: a gateway sends whole runs of alerts per frame)
//! is a slice of it; only an alert split between frames is copied, to join its parts.

use std::collections::VecDeque;
use std::pin::Pin;

use http_body_util::BodyExt as _;
use prost::bytes::{Buf, Bytes, BytesMut};
use prost::Message as _;
use tonic::codegen::{http, Body, StdError};
use tonic::{Code, Status};

use super::{AlertBatchView, ViewError};
use crate::v1::SubscribeRequest;

const PATH: &str = "/alertmesh.v1.AlertMesh/Subscribe";

/// `Subscribe` on `service` (a tonic channel: plain, TLS, or with an interceptor adding a
/// token), answered as [`AlertBatchView`]s read in place. A batch larger than
/// `max_message_bytes` ends the stream with `RESOURCE_EXHAUSTED`, as tonic's limit does.
pub async fn subscribe_views<T>(
    service: &mut T,
    request: impl tonic::IntoRequest<SubscribeRequest>,
    max_message_bytes: usize,
) -> Result<tonic::Response<ViewStream<T::ResponseBody>>, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    std::future::poll_fn(|cx| service.poll_ready(cx))
        .await
        .map_err(|e| Status::unavailable(format!("gateway not ready: {}", e.into())))?;
    let (metadata, extensions, message) = request.into_request().into_parts();
    // The gRPC prefix (not compressed, length), then the message.
    let len = message.encoded_len();
    let mut body = Vec::with_capacity(5 + len);
    body.push(0);
    body.extend_from_slice(&(len as u32).to_be_bytes());
    message.encode_raw(&mut body);
    let mut req = http::Request::new(tonic::body::Body::new(http_body_util::Full::new(
        Bytes::from(body),
    )));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = http::Uri::from_static(PATH);
    *req.headers_mut() = metadata.into_headers();
    *req.extensions_mut() = extensions;
    let headers = req.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    let response = service
        .call(req)
        .await
        .map_err(|e| Status::from_error(e.into()))?;
    let (parts, body) = response.into_parts();
    // An error before any message comes as headers only.
    if let Some(status) = Status::from_header_map(&parts.headers) {
        if status.code() != Code::Ok {
            return Err(status);
        }
    }
    if parts.status != http::StatusCode::OK {
        return Err(Status::unknown(format!(
            "the gateway answered HTTP {}",
            parts.status
        )));
    }
    let stream = ViewStream {
        body: Box::pin(body),
        frames: Frames::default(),
        max_message_bytes,
        ended: false,
    };
    Ok(tonic::Response::from_parts(
        tonic::metadata::MetadataMap::from_headers(parts.headers),
        stream,
        parts.extensions,
    ))
}

/// The batches of a `Subscribe` stream; see [`subscribe_views`].
pub struct ViewStream<B> {
    body: Pin<Box<B>>,
    frames: Frames,
    max_message_bytes: usize,
    /// The stream's status arrived (OK): nothing more will.
    ended: bool,
}

impl<B> std::fmt::Debug for ViewStream<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewStream")
            .field("buffered", &self.frames.len)
            .field("ended", &self.ended)
            .finish()
    }
}

impl<B> ViewStream<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<StdError>,
{
    /// The next batch; `None` once the stream ended with OK, an error for any other
    /// status.
    pub async fn message(&mut self) -> Result<Option<AlertBatchView>, Status> {
        loop {
            if let Some(batch) = self.frames.next_message(self.max_message_bytes)? {
                return Ok(Some(batch));
            }
            if self.ended {
                return Ok(None);
            }
            match self.body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.frames.push(data),
                    Err(frame) => {
                        let trailers = frame.into_trailers().unwrap_or_default();
                        self.end(Status::from_header_map(&trailers))?;
                    }
                },
                Some(Err(e)) => return Err(Status::from_error(e.into())),
                None => self.end(None)?,
            }
        }
    }

    /// The stream's status arrived (or the body ended without one).
    fn end(&mut self, status: Option<Status>) -> Result<(), Status> {
        let status =
            status.unwrap_or_else(|| Status::internal("the stream ended without a gRPC status"));
        if status.code() != Code::Ok {
            return Err(status);
        }
        if self.frames.len > 0 {
            return Err(Status::internal(
                "the stream ended in the middle of a message",
            ));
        }
        self.ended = true;
        Ok(())
    }
}

/// Received data not yet decoded, as the frames it came in.
#[derive(Debug, Default)]
struct Frames {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl Frames {
    fn push(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.len += data.len();
            self.chunks.push_back(data);
        }
    }

    /// Decodes the next whole message, if it has arrived.
    fn next_message(&mut self, max: usize) -> Result<Option<AlertBatchView>, Status> {
        if self.len < 5 {
            return Ok(None);
        }
        // The prefix, left in place until the whole message has arrived.
        let mut prefix = [0u8; 5];
        for (out, byte) in prefix
            .iter_mut()
            .zip(self.chunks.iter().flat_map(|c| c.iter()))
        {
            *out = *byte;
        }
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        if prefix[0] != 0 {
            return Err(Status::internal(
                "the gateway sent a compressed message, which was not asked for",
            ));
        }
        if len > max {
            return Err(Status::resource_exhausted(format!(
                "a batch of {len} bytes is over the limit of {max} bytes"
            )));
        }
        if self.len < 5 + len {
            return Ok(None);
        }
        self.advance(5);
        let mut message = Message {
            frames: self,
            left: len,
        };
        let batch = AlertBatchView::decode_bounded(&mut message).map_err(|e| match e {
            ViewError::TooMany => Status::resource_exhausted(e.to_string()),
            e => Status::internal(format!("malformed AlertBatch: {e}")),
        });
        // A message decoded in error may have been left part read.
        let rest = message.left;
        self.advance(rest);
        batch.map(Some)
    }

    fn advance(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if front.len() > n {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.chunks.pop_front();
        }
    }
}

/// One message of the received frames, read as a [`Buf`]: taking a value that lies in one
/// frame is a slice of it.
struct Message<'a> {
    frames: &'a mut Frames,
    left: usize,
}

impl Buf for Message<'_> {
    fn remaining(&self) -> usize {
        self.left
    }

    fn chunk(&self) -> &[u8] {
        match self.frames.chunks.front() {
            Some(front) => &front[..front.len().min(self.left)],
            None => &[],
        }
    }

    fn advance(&mut self, n: usize) {
        assert!(n <= self.left, "advance past the end of the message");
        self.left -= n;
        self.frames.advance(n);
    }

    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        assert!(len <= self.left, "read past the end of the message");
        if let Some(front) = self.frames.chunks.front_mut() {
            if front.len() >= len {
                let value = front.split_to(len);
                if front.is_empty() {
                    self.frames.chunks.pop_front();
                }
                self.frames.len -= len;
                self.left -= len;
                return value;
            }
        }
        // Split between frames: joined here.
        let mut joined = BytesMut::with_capacity(len);
        let mut want = len;
        while want > 0 {
            let chunk = self.chunk();
            let n = chunk.len().min(want);
            joined.extend_from_slice(&chunk[..n]);
            self.advance(n);
            want -= n;
        }
        joined.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Alert, AlertBatch, Skipped};
    use crate::view::MAX_BATCH_ELEMENTS;

    fn batch(first: i64, n: i64) -> AlertBatch {
        AlertBatch {
            alerts: (first..first + n)
                .map(|offset| Alert {
                    r#ref: format!("am://g/t/0/{offset}"),
                    offset,
                    payload: Bytes::from(vec![offset as u8; 300]),
                    ..Alert::default()
                })
                .collect(),
            skipped: vec![Skipped {
                r#ref: "am://g/t/0/99".into(),
                reason: "not Avro".into(),
            }],
            ..AlertBatch::default()
        }
    }

    fn grpc_message(b: &AlertBatch) -> Vec<u8> {
        let body = b.encode_to_vec();
        let mut out = vec![0];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn messages_decode_however_the_frames_cut_them() {
        let batches = [batch(0, 3), batch(3, 1), batch(4, 5)];
        let wire: Vec<u8> = batches.iter().flat_map(grpc_message).collect();
        for cut in [1, 2, 5, 7, 100, 333, 1000, wire.len()] {
            let mut frames = Frames::default();
            let mut got = Vec::new();
            for piece in wire.chunks(cut) {
                frames.push(Bytes::copy_from_slice(piece));
                while let Some(view) = frames.next_message(usize::MAX).unwrap() {
                    got.push(view);
                }
            }
            assert_eq!(frames.len, 0, "cut {cut}: everything decoded");
            let alerts: Vec<Alert> = got
                .iter()
                .flat_map(|v| v.alerts.iter().map(|a| a.to_alert().unwrap()))
                .collect();
            let want: Vec<Alert> = batches.iter().flat_map(|b| b.alerts.clone()).collect();
            assert_eq!(alerts, want, "cut {cut}");
            assert!(got.iter().all(|v| v.skipped == batches[0].skipped));
        }
    }

    #[test]
    fn an_alert_within_one_frame_is_a_slice_of_it() {
        let wire = Bytes::from(grpc_message(&batch(0, 4)));
        let mut frames = Frames::default();
        frames.push(wire.clone());
        let view = frames.next_message(usize::MAX).unwrap().unwrap();
        let range = wire.as_ptr_range();
        assert!(view
            .alerts
            .iter()
            .all(|a| range.contains(&a.bytes().as_ptr())));
    }

    #[test]
    fn oversized_compressed_and_malformed_messages_are_errors() {
        let wire = grpc_message(&batch(0, 2));
        let mut frames = Frames::default();
        frames.push(Bytes::copy_from_slice(&wire));
        let err = frames.next_message(10).unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);

        let mut compressed = wire.clone();
        compressed[0] = 1;
        let mut frames = Frames::default();
        frames.push(Bytes::from(compressed));
        assert_eq!(
            frames.next_message(usize::MAX).unwrap_err().code(),
            Code::Internal
        );

        // Field 1 claims 200 bytes inside a 3-byte message.
        let mut frames = Frames::default();
        frames.push(Bytes::from_static(&[0, 0, 0, 0, 3, 0x0a, 0xc8, 0x01]));
        frames.push(Bytes::copy_from_slice(&wire));
        assert_eq!(
            frames.next_message(usize::MAX).unwrap_err().code(),
            Code::Internal
        );
        // The stream can go on after the damaged message.
        assert_eq!(
            frames
                .next_message(usize::MAX)
                .unwrap()
                .unwrap()
                .alerts
                .len(),
            2
        );
    }

    /// Two bytes on the wire per empty alert or skipped record: a batch of more than the
    /// limit is refused as it is counted, not after a gigabyte of views.
    #[test]
    fn millions_of_empty_alerts_or_skipped_records_are_refused() {
        for tag in [0x0a_u8, 0x12] {
            let elements = MAX_BATCH_ELEMENTS + 1;
            let body = [tag, 0x00].repeat(elements);
            let mut wire = vec![0u8];
            wire.extend_from_slice(&(body.len() as u32).to_be_bytes());
            wire.extend_from_slice(&body);
            let mut frames = Frames::default();
            for piece in wire.chunks(16 << 10) {
                frames.push(Bytes::copy_from_slice(piece));
            }
            let err = frames.next_message(usize::MAX).unwrap_err();
            assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
            assert!(err.message().contains("1000000"), "{}", err.message());
            // One fewer is a batch.
            let body = [tag, 0x00].repeat(MAX_BATCH_ELEMENTS);
            let mut wire = vec![0u8];
            wire.extend_from_slice(&(body.len() as u32).to_be_bytes());
            wire.extend_from_slice(&body);
            let mut frames = Frames::default();
            frames.push(Bytes::from(wire));
            let view = frames.next_message(usize::MAX).unwrap().unwrap();
            assert_eq!(view.alerts.len() + view.skipped.len(), MAX_BATCH_ELEMENTS);
        }
    }
}
