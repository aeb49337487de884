//! A peer gateway's exposed topic as a mirror source: `DescribeGateway` gives its name (the
//! `<gateway>` of its alert refs), `ListTopics` the partition count, and `Subscribe` with
//! `resume` positions streams from exactly where the destination ends.

use std::time::Duration;

use alertmesh_alert::Format;
use alertmesh_client::{Gateway, Grpc, Options};
use alertmesh_proto::v1::{self as pb, start::Position};
use tokio::sync::mpsc;

use super::{Batches, SourceInfo, CHANNEL_BATCHES};
use crate::convert::SourceRecord;
use crate::resume::{gateway_prefix, source_ref};
use crate::{Error, GatewaySource, MirrorEnv, MirrorSpec, Result, ResumePositions, Start};

/// A connected peer gateway.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(super) client: Grpc,
    pub(super) source: Box<GatewaySource>,
    pub(super) name: String,
    pub(super) label: String,
    timeout: Duration,
}

pub(super) fn failure(label: &str, reason: String) -> Error {
    Error::Source {
        source_name: label.to_owned(),
        reason,
    }
}

/// A status from the source gateway: refusals a retry cannot fix (a filter or request it
/// rejects, a topic it does not have, credentials it does not accept) are permanent.
pub(super) fn status_failure(label: &str, context: &str, s: &tonic::Status) -> Error {
    let reason = format!("{context}{}", alertmesh_client::status_line(s));
    match s.code() {
        tonic::Code::InvalidArgument
        | tonic::Code::NotFound
        | tonic::Code::PermissionDenied
        | tonic::Code::Unauthenticated => Error::Refused {
            source_name: label.to_owned(),
            reason,
        },
        _ => failure(label, reason),
    }
}

/// Connects, learns the peer's name and the topic's partition count.
pub(crate) async fn connect(
    spec: &MirrorSpec,
    source: &GatewaySource,
    env: &MirrorEnv,
) -> Result<(Peer, SourceInfo)> {
    let label = spec.source_label(None);
    // The token is bound to the configured URL; the client crate keeps it there.
    let options = Options {
        connect_timeout: env.timeout,
        ..source.options.clone()
    };
    let gateway =
        Gateway::new(&source.url, &options).map_err(|e| failure(&label, e.to_string()))?;
    let client = tokio::time::timeout(env.timeout, gateway.connect())
        .await
        .map_err(|_| failure(&label, "connect timed out".into()))?
        .map_err(|e| failure(&label, e.to_string()))?;
    let mut peer = Peer {
        client: client.into_grpc().max_decoding_message_size(64 << 20),
        source: Box::new(source.clone()),
        name: String::new(),
        label,
        timeout: env.timeout,
    };
    let description = peer
        .call(
            |mut c, r| async move { c.describe_gateway(r).await },
            pb::DescribeGatewayRequest {},
        )
        .await?;
    // The name goes into refs, topic names, this gateway's own description and logs: a
    // source that names itself with anything but a gateway name is refused.
    if alertmesh_alert::naming::check_gateway_name(&description.name).is_err() {
        return Err(Error::Refused {
            source_name: peer.label.clone(),
            reason: format!(
                "the gateway names itself \"{}\", not 1-249 characters of [a-zA-Z0-9._-]",
                alertmesh_alert::echo::shown(&description.name, 64)
            ),
        });
    }
    peer.name = description.name;
    peer.label = spec.source_label(Some(&peer.name));
    let topics = peer
        .call(
            |mut c, r| async move { c.list_topics(r).await },
            pb::ListTopicsRequest {},
        )
        .await?;
    if let Some(query) = &source.query {
        // The source gateway's catalog lists the queries these credentials may run.
        if !topics.queries.iter().any(|q| q.name == query.name) {
            return Err(Error::Refused {
                source_name: peer.label.clone(),
                reason: format!(
                    "the gateway does not serve this query, or these credentials have no \
                     permission for it (a token needs query:{})",
                    query.name
                ),
            });
        }
        let info = SourceInfo {
            partitions: 1,
            prefix: gateway_prefix(&peer.name, &source.topic),
            default_destination: format!("{}.query.{}", peer.name, query.name),
            gateway_name: Some(peer.name.clone()),
        };
        return Ok((peer, info));
    }
    let topic = topics
        .topics
        .iter()
        .find(|t| t.name == source.topic)
        .ok_or_else(|| Error::Refused {
            source_name: peer.label.clone(),
            reason: format!(
                "the gateway does not expose this topic, or these credentials have no \
                 permission for it (a token needs subscribe:{})",
                source.topic
            ),
        })?;
    if topic.partitions <= 0 {
        return Err(failure(
            &peer.label,
            "the gateway reports no partitions (its kafka is unreachable)".into(),
        ));
    }
    let info = SourceInfo {
        partitions: topic.partitions as usize,
        prefix: gateway_prefix(&peer.name, &source.topic),
        default_destination: format!("{}.{}", peer.name, source.topic),
        gateway_name: Some(peer.name.clone()),
    };
    Ok((peer, info))
}

impl Peer {
    /// One unary call, bounded by the timeout.
    pub(super) async fn call<T, R, F, Fut>(&self, f: F, message: T) -> Result<R>
    where
        F: FnOnce(Grpc, tonic::Request<T>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let request = tonic::Request::new(message);
        tokio::time::timeout(self.timeout, f(self.client.clone(), request))
            .await
            .map_err(|_| failure(&self.label, "request timed out".into()))?
            .map(tonic::Response::into_inner)
            .map_err(|s| status_failure(&self.label, "", &s))
    }

    /// Subscribes at `positions`, else at `start`, and forwards batches until the stream
    /// ends, fails, or the receiver is dropped.
    pub(crate) async fn stream(
        self,
        start: Start,
        positions: &ResumePositions,
        starts: &crate::resume::Starts,
    ) -> Result<Batches> {
        let position = match start {
            Start::Earliest => Position::Earliest(pb::Earliest {}),
            Start::Latest => Position::Latest(pb::Latest {}),
            Start::Time(ms) => Position::Time(prost_types::Timestamp {
                seconds: ms.div_euclid(1000),
                nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
            }),
        };
        let message = pb::SubscribeRequest {
            topic: self.source.topic.clone(),
            start: Some(pb::Start {
                position: Some(position),
            }),
            filter: self.source.filter.clone().unwrap_or_default(),
            output: pb::Output::Native as i32,
            resume: positions
                .positions()
                .into_iter()
                .map(|(partition, offset)| pb::PartitionOffset { partition, offset })
                .collect(),
            ..Default::default()
        };
        let mut stream = self
            .call(|mut c, r| async move { c.subscribe(r).await }, message)
            .await?;
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let prefix = gateway_prefix(&self.name, &self.source.topic);
        let starts = starts.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = tx.closed() => return,
                    next = stream.message() => next,
                };
                let sent = match next {
                    Ok(Some(batch)) => {
                        for skipped in &batch.skipped {
                            if let Some(suppressed) = SKIPPED.admit() {
                                tracing::warn!(source_ref = %skipped.r#ref, reason = %skipped.reason, suppressed, "source skipped a record");
                            }
                        }
                        // The first message says where the stream starts: kept for
                        // the partitions nothing gets copied from before an error.
                        if !batch.starts.is_empty() {
                            starts.record(
                                &prefix,
                                batch.starts.iter().map(|s| (s.partition, s.offset)),
                            );
                        }
                        if batch.alerts.is_empty() {
                            continue;
                        }
                        let records = batch
                            .alerts
                            .into_iter()
                            .map(|a| record(a, &self.name, &prefix))
                            .collect();
                        tx.send(Ok(records)).await
                    }
                    Ok(None) => {
                        tx.send(Err(failure(&self.label, "the stream ended".into())))
                            .await
                    }
                    Err(s) => {
                        tx.send(Err(status_failure(&self.label, "stream failed: ", &s)))
                            .await
                    }
                };
                if sent.is_err() || tx.is_closed() {
                    return;
                }
            }
        });
        Ok(rx)
    }
}

/// A streamed alert in the mirror's terms. `am-source` is rebuilt from the peer's name,
/// topic, partition and offset so it always matches the prefix recovery looks for.
fn record(alert: pb::Alert, gateway: &str, prefix: &str) -> SourceRecord {
    // The peer's word: a time Kafka cannot hold (before 1970, or past i64 milliseconds)
    // is left out, and the copy gets its produce time, rather than a produce that fails
    // on every retry.
    let timestamp = alert.timestamp.and_then(|t| {
        t.seconds
            .checked_mul(1000)?
            .checked_add(i64::from(t.nanos) / 1_000_000)
            .filter(|ms| *ms >= 0)
    });
    SourceRecord {
        partition: alert.partition,
        offset: alert.offset,
        timestamp,
        key: alert.key.map(|k| k.to_vec()),
        payload: alert.payload,
        headers: alert
            .headers
            .into_iter()
            .map(|h| (h.key, h.value.map(|v| v.to_vec())))
            .collect(),
        source_ref: source_ref(prefix, alert.partition, alert.offset),
        gateway: Some(gateway.to_owned()),
        format: alert.format.parse::<Format>().ok(),
        namespace: alert.namespace,
        schema: Some(alert.schema).filter(|s| !s.is_empty()),
        mesh_key: Some(alert.mesh_key).filter(|k| !k.is_empty()),
        resume: None,
    }
}

/// Logs of records the source skipped, which a peer, a producer or a failing cluster can repeat.
static SKIPPED: crate::limit::RateLimit = crate::limit::RateLimit::new();

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer's timestamps are its word: one Kafka cannot hold is left out (the copy gets
    /// its produce time), never an overflow or a produce that fails on every retry.
    #[test]
    fn timestamps_a_kafka_record_cannot_hold_are_left_out() {
        let at = |seconds: i64, nanos: i32| {
            let alert = pb::Alert {
                timestamp: Some(prost_types::Timestamp { seconds, nanos }),
                ..pb::Alert::default()
            };
            record(alert, "lasair", "am://lasair/ztf").timestamp
        };
        assert_eq!(at(1_700_000_000, 5_000_000), Some(1_700_000_000_005));
        assert_eq!(at(i64::MAX / 10, 0), None);
        assert_eq!(at(-5, 0), None);
        assert_eq!(at(0, 0), Some(0));
    }
}
