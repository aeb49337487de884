//! gRPC helpers: request builders, stream collection with deadlines, and the check that a
//! streamed alert is exactly the record that was produced.

use std::time::Duration;

use alertmesh_proto::v1::{
    alert_mesh_client::AlertMeshClient, end, start, Alert, AlertBatch, End, Now, PartitionOffset,
    PartitionOffsets, Start, SubscribeRequest,
};
use anyhow::{bail, ensure, Result};
use prost_types::Timestamp;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use crate::broker::Produced;

/// A `Subscribe` request for `topic` with every option unset.
pub fn request(topic: &str) -> SubscribeRequest {
    SubscribeRequest {
        topic: topic.to_owned(),
        ..Default::default()
    }
}

/// `start = earliest`.
pub fn earliest() -> Option<Start> {
    Some(Start {
        position: Some(start::Position::Earliest(Default::default())),
    })
}

/// `start = latest`.
pub fn latest() -> Option<Start> {
    Some(Start {
        position: Some(start::Position::Latest(Default::default())),
    })
}

/// `start = time`.
pub fn start_time(ms: i64) -> Option<Start> {
    Some(Start {
        position: Some(start::Position::Time(timestamp(ms))),
    })
}

/// `start = offsets`, only the listed partitions.
pub fn start_offsets(offsets: &[(i32, i64)]) -> Option<Start> {
    Some(Start {
        position: Some(start::Position::Offsets(PartitionOffsets {
            offsets: partition_offsets(offsets),
        })),
    })
}

/// `end = now`.
pub fn until_now() -> Option<End> {
    Some(End {
        position: Some(end::Position::Now(Now {})),
    })
}

/// `end = time`.
pub fn until_time(ms: i64) -> Option<End> {
    Some(End {
        position: Some(end::Position::Time(timestamp(ms))),
    })
}

/// `(partition, offset)` pairs as protobuf messages.
pub fn partition_offsets(offsets: &[(i32, i64)]) -> Vec<PartitionOffset> {
    offsets
        .iter()
        .map(|&(partition, offset)| PartitionOffset { partition, offset })
        .collect()
}

/// A protobuf timestamp for milliseconds since the epoch.
pub fn timestamp(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Milliseconds since the epoch of a protobuf timestamp.
pub fn millis(ts: &Timestamp) -> i64 {
    ts.seconds * 1000 + i64::from(ts.nanos) / 1_000_000
}

/// Everything a stream produced before it ended or the deadline passed.
#[derive(Debug)]
pub struct Collected {
    pub alerts: Vec<Alert>,
    /// `Some(Ok)` when the stream ended with OK, `Some(Err)` with an error status, `None`
    /// when the deadline passed first.
    pub end: Option<Result<(), Status>>,
}

/// Subscribes and reads until the stream ends or `deadline` passes. An error status at
/// subscribe time counts as the stream's end.
pub async fn subscribe_all(
    client: &mut AlertMeshClient<Channel>,
    request: SubscribeRequest,
    deadline: Duration,
) -> Collected {
    let started = tokio::time::Instant::now();
    match tokio::time::timeout(deadline, client.subscribe(request)).await {
        Err(_) => Collected {
            alerts: Vec::new(),
            end: None,
        },
        Ok(Err(status)) => Collected {
            alerts: Vec::new(),
            end: Some(Err(status)),
        },
        Ok(Ok(response)) => {
            let left = deadline.saturating_sub(started.elapsed());
            collect(response.into_inner(), left).await
        }
    }
}

/// Reads a stream until it ends or `deadline` passes.
pub async fn collect(mut stream: Streaming<AlertBatch>, deadline: Duration) -> Collected {
    let mut alerts = Vec::new();
    let read = async {
        loop {
            match stream.message().await {
                Ok(Some(batch)) => alerts.extend(batch.alerts),
                Ok(None) => return Ok(()),
                Err(status) => return Err(status),
            }
        }
    };
    let end = tokio::time::timeout(deadline, read).await.ok();
    Collected { alerts, end }
}

/// Reads exactly `n` alerts from a live stream, failing on an early end or timeout.
pub async fn take(
    stream: &mut Streaming<AlertBatch>,
    n: usize,
    deadline: Duration,
) -> Result<Vec<Alert>> {
    let mut alerts = Vec::with_capacity(n);
    let read = async {
        while alerts.len() < n {
            match stream.message().await {
                Ok(Some(batch)) => alerts.extend(batch.alerts),
                Ok(None) => bail!("stream ended after {} of {n} alerts", alerts.len()),
                Err(status) => bail!(
                    "stream failed after {} of {n} alerts: {status}",
                    alerts.len()
                ),
            }
        }
        Ok(())
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(result) => result?,
        Err(_) => bail!(
            "timed out after {deadline:?} with {} of {n} alerts",
            alerts.len()
        ),
    }
    Ok(alerts)
}

/// Reads `stream` past whatever it still delivers until it ends, for at most `within`:
/// the error it ended with (a clean end is an error here too, as is a stream still open).
pub async fn end_status<T>(stream: &mut Streaming<T>, within: Duration) -> Result<Status> {
    let ended = tokio::time::timeout(within, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await;
    match ended {
        Err(_) => bail!("the stream was still open after {within:?}"),
        Ok(Ok(_)) => bail!("the stream ended without an error"),
        Ok(Err(status)) => Ok(status),
    }
}

/// `am://<gateway>/<topic>/<partition>/<offset>`.
pub fn alert_ref(gateway: &str, topic: &str, partition: i32, offset: i64) -> String {
    format!("am://{gateway}/{topic}/{partition}/{offset}")
}

/// Checks that `alert` is byte for byte the produced record, with the right ref.
pub fn check_alert(alert: &Alert, produced: &Produced, gateway: &str) -> Result<()> {
    let r = &produced.record;
    let at = format!("{}/{}/{}", produced.topic, r.partition, produced.offset);
    ensure!(
        alert.topic == produced.topic,
        "{at}: topic {:?}",
        alert.topic
    );
    ensure!(
        alert.partition == r.partition,
        "{at}: partition {}",
        alert.partition
    );
    ensure!(
        alert.offset == produced.offset,
        "{at}: offset {}",
        alert.offset
    );
    let want_ref = alert_ref(gateway, &produced.topic, r.partition, produced.offset);
    ensure!(
        alert.r#ref == want_ref,
        "{at}: ref {:?}, want {want_ref:?}",
        alert.r#ref
    );
    let ts = alert.timestamp.as_ref().map(millis);
    ensure!(
        ts == Some(r.timestamp_ms),
        "{at}: timestamp {ts:?}, want {}",
        r.timestamp_ms
    );
    ensure!(
        alert.key == r.key,
        "{at}: key {:?}, want {:?}",
        alert.key,
        r.key
    );
    let headers: Vec<(String, Option<bytes::Bytes>)> = alert
        .headers
        .iter()
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect();
    ensure!(
        headers == r.headers,
        "{at}: headers {headers:?}, want {:?}",
        r.headers
    );
    ensure!(
        alert.payload == r.payload,
        "{at}: payload differs ({} bytes, want {})",
        alert.payload.len(),
        r.payload.len()
    );
    Ok(())
}

/// Checks that `alerts` are exactly `expected` (each once, any interleaving of
/// partitions) and in offset order within each partition.
pub fn check_exactly(alerts: &[Alert], expected: &[&Produced], gateway: &str) -> Result<()> {
    let mut last: std::collections::HashMap<i32, i64> = Default::default();
    for a in alerts {
        if let Some(prev) = last.insert(a.partition, a.offset) {
            ensure!(
                a.offset > prev,
                "partition {} offset {} after {prev}",
                a.partition,
                a.offset
            );
        }
    }
    let got: Vec<(i32, i64)> = alerts.iter().map(|a| (a.partition, a.offset)).collect();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    let mut want: Vec<(i32, i64)> = expected
        .iter()
        .map(|p| (p.record.partition, p.offset))
        .collect();
    want.sort();
    ensure!(
        got_sorted == want,
        "got positions {got_sorted:?}\nwant {want:?}"
    );
    for a in alerts {
        let p = expected
            .iter()
            .find(|p| p.record.partition == a.partition && p.offset == a.offset)
            .expect("position checked above");
        check_alert(a, p, gateway)?;
    }
    Ok(())
}
