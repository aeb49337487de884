//! Subscribe over the 45 ZTF fixture alerts in a 3-partition topic: where a stream starts,
//! where it ends, and that every alert is the Kafka record byte for byte.

use std::collections::HashMap;
use std::time::Duration;

use alertmesh_proto::v1::CommitCursorRequest;
use alertmesh_tests::client::{
    check_exactly, earliest, partition_offsets, request, start_offsets, start_time, subscribe_all,
    until_now, until_time,
};
use alertmesh_tests::kafka::{delete_below, deletes_records};
use alertmesh_tests::mesh::FIXTURE_STEP_MS;
use alertmesh_tests::{Mesh, Site, WAIT, ZTF_TOPIC};
use anyhow::{ensure, Context as _, Result};

async fn ztf_site(name: &str) -> Result<Site> {
    Mesh::new(name)
        .topic(ZTF_TOPIC, 3)
        .ztf_alerts()
        .start()
        .await
}

#[tokio::test]
async fn earliest_until_now_returns_every_alert_byte_identical() -> Result<()> {
    let site = ztf_site("lasair").await?;
    let mut client = site.gateway.client().await?;
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    req.end = until_now();
    let got = subscribe_all(&mut client, req, WAIT).await;
    ensure!(
        matches!(got.end, Some(Ok(()))),
        "stream end {:?} after {} alerts",
        got.end,
        got.alerts.len()
    );
    assert_eq!(got.alerts.len(), 45);
    check_exactly(&got.alerts, &site.all_produced(), "lasair")?;
    for a in &got.alerts {
        assert_eq!(a.format, "avro-ocf", "format of {}", a.r#ref);
        assert_eq!(a.namespace, "ZTF", "namespace of {}", a.r#ref);
        assert_eq!(a.schema, "ztf-3.3", "schema from am-schema of {}", a.r#ref);
    }
    let metrics = site.gateway.metrics().await?;
    let served = metrics.value("alertmesh_alerts_served_total", &[("topic", ZTF_TOPIC)]);
    assert_eq!(served, 45.0, "alerts served metric");
    let bytes: usize = site.produced.iter().map(|p| p.record.payload.len()).sum();
    let served_bytes = metrics.value("alertmesh_bytes_served_total", &[("topic", ZTF_TOPIC)]);
    assert!(
        served_bytes >= bytes as f64,
        "bytes served {served_bytes} < {bytes}"
    );
    Ok(())
}

#[tokio::test]
async fn start_time_skips_alerts_before_it() -> Result<()> {
    // Tansu answers ListOffsets-by-time with the earliest offset, so this checks that the
    // gateway itself skips the earlier records.
    let site = ztf_site("lasair").await?;
    let mut client = site.gateway.client().await?;
    for (cut, label) in [(20, "exact"), (20, "between")] {
        let mut ms = site.base_ms + cut * FIXTURE_STEP_MS;
        if label == "between" {
            ms -= FIXTURE_STEP_MS / 2;
        }
        let mut req = request(ZTF_TOPIC);
        req.start = start_time(ms);
        req.end = until_now();
        let got = subscribe_all(&mut client, req, WAIT).await;
        ensure!(
            matches!(got.end, Some(Ok(()))),
            "{label}: end {:?}",
            got.end
        );
        let want = site.produced_where(|p| p.record.timestamp_ms >= ms);
        assert_eq!(want.len(), 25);
        check_exactly(&got.alerts, &want, "lasair").map_err(|e| e.context(label))?;
    }
    Ok(())
}

#[tokio::test]
async fn end_time_bounds_the_stream_inclusively() -> Result<()> {
    let site = ztf_site("lasair").await?;
    let mut client = site.gateway.client().await?;
    let end_ms = site.base_ms + 29 * FIXTURE_STEP_MS;
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    req.end = until_time(end_ms);
    let got = subscribe_all(&mut client, req, WAIT).await;
    ensure!(
        matches!(got.end, Some(Ok(()))),
        "end {:?} after {} alerts",
        got.end,
        got.alerts.len()
    );
    let want = site.produced_where(|p| p.record.timestamp_ms <= end_ms);
    assert_eq!(want.len(), 30);
    check_exactly(&got.alerts, &want, "lasair")?;

    // A window from a start time to an end time.
    let start_ms = site.base_ms + 10 * FIXTURE_STEP_MS;
    let mut req = request(ZTF_TOPIC);
    req.start = start_time(start_ms);
    req.end = until_time(end_ms);
    let got = subscribe_all(&mut client, req, WAIT).await;
    ensure!(matches!(got.end, Some(Ok(()))), "window end {:?}", got.end);
    let want = site.produced_where(|p| (start_ms..=end_ms).contains(&p.record.timestamp_ms));
    assert_eq!(want.len(), 20);
    check_exactly(&got.alerts, &want, "lasair")
}

#[tokio::test]
async fn limit_stops_after_that_many_alerts() -> Result<()> {
    let site = ztf_site("lasair").await?;
    let mut client = site.gateway.client().await?;
    // Bounded and live streams both end with OK after `limit` alerts.
    for bounded in [true, false] {
        let mut req = request(ZTF_TOPIC);
        req.start = earliest();
        req.limit = Some(10);
        if bounded {
            req.end = until_now();
        }
        let got = subscribe_all(&mut client, req, WAIT).await;
        ensure!(
            matches!(got.end, Some(Ok(()))),
            "bounded={bounded}: end {:?}",
            got.end
        );
        assert_eq!(got.alerts.len(), 10, "bounded={bounded}");
        // Each partition's alerts are a prefix of that partition, in order.
        let mut next: HashMap<i32, i64> = HashMap::new();
        for a in &got.alerts {
            let want = next.entry(a.partition).or_insert(0);
            assert_eq!(
                a.offset, *want,
                "bounded={bounded}: partition {}",
                a.partition
            );
            *want += 1;
        }
        let want: Vec<_> = site.produced_where(|p| {
            next.get(&p.record.partition)
                .is_some_and(|end| p.offset < *end)
        });
        check_exactly(&got.alerts, &want, "lasair")?;
    }
    Ok(())
}

#[tokio::test]
async fn explicit_offsets_stream_only_the_listed_partitions() -> Result<()> {
    let site = ztf_site("lasair").await?;
    let mut client = site.gateway.client().await?;
    let mut req = request(ZTF_TOPIC);
    req.start = start_offsets(&[(1, 5), (2, 14)]);
    req.end = until_now();
    let got = subscribe_all(&mut client, req, WAIT).await;
    ensure!(matches!(got.end, Some(Ok(()))), "end {:?}", got.end);
    let want = site.produced_where(|p| {
        (p.record.partition == 1 && p.offset >= 5) || (p.record.partition == 2 && p.offset >= 14)
    });
    assert_eq!(want.len(), 11);
    check_exactly(&got.alerts, &want, "lasair")
}

#[tokio::test]
async fn small_batches_still_deliver_everything_in_order() -> Result<()> {
    let site = ztf_site("lasair").await?;
    let mut client = site.gateway.client().await?;
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    req.end = until_now();
    req.max_batch_alerts = 2;
    req.max_batch_bytes = 1024;
    let mut stream = client.subscribe(req).await?.into_inner();
    let mut alerts = Vec::new();
    while let Some(batch) = tokio::time::timeout(WAIT, stream.message()).await?? {
        // A 60 KB alert exceeds 1 KB, so it travels alone.
        assert_eq!(
            batch.alerts.len(),
            1,
            "batch over max_batch_bytes holds one alert"
        );
        alerts.extend(batch.alerts);
    }
    check_exactly(&alerts, &site.all_produced(), "lasair")
}

#[tokio::test]
async fn earliest_until_now_on_an_empty_topic_ends_at_once() -> Result<()> {
    let site = Mesh::new("lasair").topic(ZTF_TOPIC, 3).start().await?;
    let mut client = site.gateway.client().await?;
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    req.end = until_now();
    let got = subscribe_all(&mut client, req, WAIT).await;
    ensure!(matches!(got.end, Some(Ok(()))), "end {:?}", got.end);
    assert!(
        got.alerts.is_empty(),
        "{} alerts from an empty topic",
        got.alerts.len()
    );
    Ok(())
}

/// The frame-reading client (`alertmesh_proto::view`) sees the same alerts as the generated
/// one, byte for byte, and the gateway's errors as statuses.
#[tokio::test]
async fn views_read_from_frames_match_the_generated_client() -> Result<()> {
    use alertmesh_proto::view::subscribe_views;
    use alertmesh_tests::gateway::MAX_MESSAGE;

    let site = ztf_site("lasair").await?;
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    req.end = until_now();
    // Small batches: several messages, each in pieces.
    req.max_batch_alerts = 7;
    let mut client = site.gateway.client().await?;
    let want = subscribe_all(&mut client, req.clone(), WAIT).await;
    ensure!(matches!(want.end, Some(Ok(()))), "end {:?}", want.end);

    let mut channel = site.gateway.channel().await?;
    let mut stream = subscribe_views(&mut channel, req, MAX_MESSAGE)
        .await?
        .into_inner();
    let mut got = Vec::new();
    let mut batches = 0;
    while let Some(batch) = tokio::time::timeout(WAIT, stream.message()).await?? {
        batches += 1;
        for view in &batch.alerts {
            got.push(view.to_alert()?);
        }
    }
    assert!(batches >= 45 / 7, "{batches} batches");
    // Partitions interleave differently from one read to the next; each is in order.
    let by_position = |alerts: &[alertmesh_proto::v1::Alert]| {
        let mut v = alerts.to_vec();
        v.sort_by_key(|a| (a.partition, a.offset));
        v
    };
    let (got, want) = (by_position(&got), by_position(&want.alerts));
    let refs =
        |v: &[alertmesh_proto::v1::Alert]| v.iter().map(|a| a.r#ref.clone()).collect::<Vec<_>>();
    assert_eq!(refs(&got), refs(&want));
    assert!(got == want, "alerts differ from the generated client's");

    let mut missing = request("no.such.topic");
    missing.start = earliest();
    let err = subscribe_views(&mut channel, missing, MAX_MESSAGE)
        .await
        .expect_err("unknown topic");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    Ok(())
}

/// A channel whose requests carry a content type `Subscribe`'s own route does not take
/// (`application/grpc+proto; charset=utf-8` is still gRPC): they reach tonic's generated
/// service.
#[derive(Clone)]
struct OtherContentType(tonic::transport::Channel);

impl tower::Service<http::Request<tonic::body::Body>> for OtherContentType {
    type Response =
        <tonic::transport::Channel as tower::Service<http::Request<tonic::body::Body>>>::Response;
    type Error = tonic::transport::Error;
    type Future =
        <tonic::transport::Channel as tower::Service<http::Request<tonic::body::Body>>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        req.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc+proto; charset=utf-8"),
        );
        self.0.call(req)
    }
}

#[tokio::test]
async fn subscribe_through_the_generated_service_streams_the_same_alerts() -> Result<()> {
    let site = ztf_site("lasair").await?;
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    req.end = until_now();
    req.max_batch_alerts = 10;
    let mut client = alertmesh_proto::v1::alert_mesh_client::AlertMeshClient::new(
        OtherContentType(site.gateway.channel().await?),
    )
    .max_decoding_message_size(alertmesh_tests::gateway::MAX_MESSAGE);
    let mut stream = client.subscribe(req).await?.into_inner();
    let mut got = Vec::new();
    while let Some(batch) = tokio::time::timeout(WAIT, stream.message()).await?? {
        got.extend(batch.alerts);
    }
    assert_eq!(got.len(), 45);
    check_exactly(&got, &site.all_produced(), "lasair")?;
    Ok(())
}

#[tokio::test]
async fn a_start_past_the_end_until_now_is_an_empty_finished_stream() -> Result<()> {
    let site = ztf_site("lasair").await?;
    let mut client = site.gateway.client().await?;
    let mut all = request(ZTF_TOPIC);
    all.start = earliest();
    all.end = until_now();
    let got = subscribe_all(&mut client, all, WAIT).await;
    ensure!(
        matches!(got.end, Some(Ok(()))),
        "reading all: {:?}",
        got.end
    );
    // The end of each partition: the offset its next record will get.
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for a in &got.alerts {
        let end = ends.entry(a.partition).or_default();
        *end = (*end).max(a.offset + 1);
    }
    let (end0, end1) = (ends[&0], ends[&1]);
    for (what, starts, expected) in [
        ("one past the end", vec![(0, end0 + 1)], 0),
        ("offset 100", vec![(0, 100)], 0),
        (
            "i64::MAX beside a partition from 0",
            vec![(0, i64::MAX), (1, 0)],
            end1,
        ),
    ] {
        let mut req = request(ZTF_TOPIC);
        req.start = start_offsets(&starts);
        req.end = until_now();
        let got = subscribe_all(&mut client, req, WAIT).await;
        ensure!(
            matches!(got.end, Some(Ok(()))),
            "{what}: stream end {:?}",
            got.end
        );
        assert_eq!(got.alerts.len() as i64, expected, "{what}");
    }
    // CommitCursor accepts any offset; a cursor past the end resumes at nothing there.
    client
        .commit_cursor(CommitCursorRequest {
            name: "far".to_owned(),
            topic: ZTF_TOPIC.to_owned(),
            offsets: partition_offsets(&[(2, i64::MAX)]),
        })
        .await?;
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    req.end = until_now();
    req.cursor = "far".to_owned();
    let got = subscribe_all(&mut client, req, WAIT).await;
    ensure!(
        matches!(got.end, Some(Ok(()))),
        "cursor at i64::MAX: {:?}",
        got.end
    );
    assert!(got.alerts.iter().all(|a| a.partition != 2));
    assert_eq!(got.alerts.len() as i64, end0 + end1);
    // The streams gave back their slots.
    site.gateway
        .wait_metrics("no open subscription", |m| {
            m.value("alertmesh_open_subscriptions", &[]) == 0.0
        })
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_start_time_before_1970_reads_from_the_earliest() -> Result<()> {
    let site = ztf_site("lasair").await?;
    let mut client = site.gateway.client().await?;
    let mut req = request(ZTF_TOPIC);
    // 1969-12-31T00:00:00Z: every Kafka timestamp is later.
    req.start = start_time(-86_400_000);
    req.end = until_now();
    let got = subscribe_all(&mut client, req, WAIT).await;
    ensure!(
        matches!(got.end, Some(Ok(()))),
        "stream end {:?} after {} alerts",
        got.end,
        got.alerts.len()
    );
    check_exactly(&got.alerts, &site.all_produced(), "lasair")
}

/// Records deleted while a stream is under way, before its read reaches them, are reported
/// too: here a client stops reading long enough for its subscription to be parked (its
/// Kafka reader stopped), most of two partitions are deleted meanwhile, and when the client
/// reads on, the restarted reader finds its position gone. The stream says which offsets
/// went and goes on from the first one held; every other alert arrives once, in order.
#[tokio::test]
async fn records_deleted_while_a_stream_is_parked_are_reported_not_passed_over() -> Result<()> {
    if !deletes_records() {
        return Ok(());
    }
    let site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 3)
        .ztf_alerts()
        .extra("[limits]\nunread_pause_ms = 500\nunread_drop_ms = 60000")
        .start()
        .await?;
    for copy in 1..10 {
        let records = alertmesh_tests::fixtures::ztf_records(3, site.base_ms + copy * 100_000, 1)?;
        site.broker.produce_all(ZTF_TOPIC, &records).await?;
    }
    let per_partition = (10 * site.produced.len() / 3) as i64;
    let mut client = site.gateway.client().await?;
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    req.end = until_now();
    let mut stream = client.subscribe(req).await?.into_inner();
    let first = tokio::time::timeout(WAIT, stream.message())
        .await
        .context("no batch")??
        .context("stream ended early")?;
    let mut alerts = first.alerts;
    let mut skipped = first.skipped;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let m = site.gateway.metrics().await?;
    ensure!(
        m.value("alertmesh_parked_subscriptions", &[]) == 1.0,
        "the paused client's subscription was not parked"
    );
    // Far beyond what the stream had handed over before it was parked, in two partitions
    // (librdkafka stops each with an error of its own).
    let cut = per_partition - 5;
    for p in [1, 2] {
        ensure!(delete_below(&site.broker.bootstrap(), ZTF_TOPIC, p, cut).await? == cut);
    }
    while let Some(batch) = tokio::time::timeout(WAIT, stream.message())
        .await
        .context("stream stalled after the pause")??
    {
        alerts.extend(batch.alerts);
        skipped.extend(batch.skipped);
    }
    // Each partition in order and without repeats; partitions 1 and 2 jump once, at the gap.
    let mut next = HashMap::<i32, i64>::new();
    let mut jumped = HashMap::<i32, i64>::new();
    for a in &alerts {
        let due = next.entry(a.partition).or_insert(0);
        if a.offset != *due {
            ensure!(
                a.partition != 0 && a.offset == cut && !jumped.contains_key(&a.partition),
                "partition {}: offset {} where {} was due",
                a.partition,
                a.offset,
                due
            );
            jumped.insert(a.partition, *due);
        }
        *due = a.offset + 1;
    }
    skipped.sort_by(|a, b| a.r#ref.cmp(&b.r#ref));
    ensure!(
        skipped.len() == 2,
        "one gap per partition, reported once: {skipped:?}"
    );
    for (p, gap) in [1, 2].into_iter().zip(&skipped) {
        let from = *jumped
            .get(&p)
            .with_context(|| format!("partition {p} did not jump"))?;
        ensure!(
            gap.r#ref == format!("am://lasair/{ZTF_TOPIC}/{p}/{from}")
                && gap
                    .reason
                    .contains(&format!("offsets {from} to {} of partition {p}", cut - 1))
                && gap.reason.contains(&format!("goes on from {cut}")),
            "gap {gap:?}, missing {from}..{cut} of partition {p}"
        );
    }
    ensure!(
        (0..3).all(|p| next.get(&p) == Some(&per_partition)),
        "every partition read to its end: {next:?} of {per_partition}"
    );
    Ok(())
}

/// Records deleted before a read reaches them (by retention, here by delete-records) are
/// reported, not passed over in silence: a start before what Kafka still holds gets a
/// `skipped` entry naming the missing offsets, then every alert that is left.
#[tokio::test]
async fn a_start_before_what_kafka_still_holds_reports_the_gap() -> Result<()> {
    if !deletes_records() {
        return Ok(());
    }
    let site = ztf_site("lasair").await?;
    let first = delete_below(&site.broker.bootstrap(), ZTF_TOPIC, 1, 6).await?;
    ensure!(first == 6, "partition 1 now starts at {first}");
    let mut client = site.gateway.client().await?;
    for resume in [false, true] {
        let mut req = request(ZTF_TOPIC);
        if resume {
            // A mirror's or a client's resume positions: the same report.
            req.start = earliest();
            req.resume = partition_offsets(&[(1, 2), (2, 14)]);
        } else {
            req.start = start_offsets(&[(1, 2), (2, 14)]);
        }
        req.end = until_now();
        let mut stream = client.subscribe(req).await?.into_inner();
        let (mut alerts, mut skipped) = (Vec::new(), Vec::new());
        while let Some(batch) = tokio::time::timeout(WAIT, stream.message()).await?? {
            alerts.extend(batch.alerts);
            skipped.extend(batch.skipped);
        }
        ensure!(
            skipped.len() == 1
                && skipped[0].r#ref == format!("am://lasair/{ZTF_TOPIC}/1/2")
                && skipped[0].reason.contains("offsets 2 to 5 of partition 1")
                && skipped[0].reason.contains("goes on from 6"),
            "resume {resume}: {skipped:?}"
        );
        let want = site.produced_where(|p| {
            (p.record.partition == 1 && p.offset >= 6)
                || (p.record.partition == 2 && p.offset >= 14)
                || (resume && p.record.partition == 0)
        });
        check_exactly(&alerts, &want, "lasair")?;
    }
    // A start at or after the first offset held reports nothing.
    let mut req = request(ZTF_TOPIC);
    req.start = start_offsets(&[(1, 6)]);
    req.end = until_now();
    let mut stream = client.subscribe(req).await?.into_inner();
    while let Some(batch) = tokio::time::timeout(WAIT, stream.message()).await?? {
        ensure!(batch.skipped.is_empty(), "{:?}", batch.skipped);
    }
    Ok(())
}
