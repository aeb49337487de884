//! Requests the gateway must refuse, with the right code and a message that says what is
//! accepted; and an unreachable Kafka is UNAVAILABLE within seconds, never a hang.

use std::time::{Duration, Instant};

use alertmesh_proto::v1::{FetchRequest, SubscribeRequest};
use alertmesh_tests::client::{
    alert_ref, earliest, latest, request, start_offsets, start_time, subscribe_all, until_now,
    until_time,
};
use alertmesh_tests::fixtures::now_ms;
use alertmesh_tests::process::free_port;
use alertmesh_tests::{Gateway, GatewaySpec, Mesh, Ready, WAIT, ZTF_TOPIC};
use anyhow::{ensure, Result};
use tonic::{transport::Channel, Code};

type Client = alertmesh_proto::v1::alert_mesh_client::AlertMeshClient<Channel>;

/// Subscribes and returns the error status the request ends with.
async fn refusal(
    client: &mut Client,
    req: SubscribeRequest,
    within: Duration,
) -> Result<tonic::Status> {
    let got = subscribe_all(client, req, within).await;
    match got.end {
        Some(Err(status)) => Ok(status),
        other => anyhow::bail!(
            "expected an error, got {other:?} after {} alerts",
            got.alerts.len()
        ),
    }
}

fn says(status: &tonic::Status, words: &[&str]) -> Result<()> {
    let msg = status.message().to_lowercase();
    for w in words {
        ensure!(
            msg.contains(w),
            "message {:?} should mention {w:?}",
            status.message()
        );
    }
    Ok(())
}

#[tokio::test]
async fn unknown_topic_is_not_found_and_names_the_exposed_topics() -> Result<()> {
    let site = Mesh::new("lasair").topic(ZTF_TOPIC, 3).start().await?;
    let mut client = site.gateway.client().await?;
    let mut req = request("not.exposed");
    req.start = earliest();
    let status = refusal(&mut client, req, WAIT).await?;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    says(&status, &["not.exposed", ZTF_TOPIC])
}

#[tokio::test]
async fn bad_start_end_and_limit_are_invalid_arguments() -> Result<()> {
    let site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 3)
        .ztf_alerts()
        .start()
        .await?;
    let mut client = site.gateway.client().await?;
    let t = now_ms();
    let cases: Vec<(&str, SubscribeRequest, &[&str])> = vec![
        (
            "partition 7 of 3",
            {
                let mut r = request(ZTF_TOPIC);
                r.start = start_offsets(&[(0, 0), (7, 0)]);
                r
            },
            &["partition", "7"],
        ),
        (
            "negative partition",
            {
                let mut r = request(ZTF_TOPIC);
                r.start = start_offsets(&[(-1, 0)]);
                r
            },
            &["partition"],
        ),
        (
            "negative offset",
            {
                let mut r = request(ZTF_TOPIC);
                r.start = start_offsets(&[(1, -5)]);
                r
            },
            &["offset"],
        ),
        (
            "zero limit",
            {
                let mut r = request(ZTF_TOPIC);
                r.start = earliest();
                r.limit = Some(0);
                r
            },
            &["limit"],
        ),
        (
            "end before start",
            {
                let mut r = request(ZTF_TOPIC);
                r.start = start_time(t);
                r.end = until_time(t - 1000);
                r
            },
            &["end"],
        ),
    ];
    for (what, req, words) in cases {
        let status = refusal(&mut client, req, WAIT).await?;
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        says(&status, words).map_err(|e| e.context(what))?;
    }
    // The gateway still serves a good request on the same connection.
    let mut ok = request(ZTF_TOPIC);
    ok.start = earliest();
    ok.end = until_now();
    let got = subscribe_all(&mut client, ok, WAIT).await;
    ensure!(
        matches!(got.end, Some(Ok(()))) && got.alerts.len() == 45,
        "good request after errors: {:?}",
        got.end
    );
    Ok(())
}

#[tokio::test]
async fn closed_kafka_port_is_unavailable_within_seconds() -> Result<()> {
    let closed = format!("127.0.0.1:{}", free_port());
    let spec = GatewaySpec::new("lasair", &closed)
        .topic(ZTF_TOPIC, "ZTF", "avro-ocf")
        .timeout_ms(2000)
        .ready(Ready::GrpcPort);
    let gateway = Gateway::start(&spec).await?;
    let mut client = gateway.client().await?;
    let requests = [
        ("earliest until now", earliest(), until_now()),
        ("latest", latest(), None),
    ];
    for (what, start, end) in requests {
        let mut req = request(ZTF_TOPIC);
        req.start = start;
        req.end = end;
        let began = Instant::now();
        let status = refusal(&mut client, req, WAIT).await?;
        assert_eq!(status.code(), Code::Unavailable, "{what}: {status:?}");
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "{what}: took {:?}",
            began.elapsed()
        );
    }
    let began = Instant::now();
    let fetched = tokio::time::timeout(
        WAIT,
        client.fetch(FetchRequest {
            r#ref: alert_ref("lasair", ZTF_TOPIC, 0, 0),
        }),
    )
    .await?;
    let status = fetched.expect_err("fetch without kafka");
    assert_eq!(status.code(), Code::Unavailable, "fetch: {status:?}");
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "fetch took {:?}",
        began.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn killed_broker_makes_requests_unavailable_within_seconds() -> Result<()> {
    let mut site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 3)
        .ztf_alerts()
        .kafka_timeout_ms(2000)
        .start()
        .await?;
    let mut client = site.gateway.client().await?;
    // Served once, so the gateway knows the topic and holds Kafka connections.
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    req.end = until_now();
    let got = subscribe_all(&mut client, req.clone(), WAIT).await;
    ensure!(got.alerts.len() == 45, "before the kill: {:?}", got.end);

    site.broker.kill();
    let began = Instant::now();
    let status = refusal(&mut client, req, WAIT).await?;
    assert_eq!(status.code(), Code::Unavailable, "subscribe: {status:?}");
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "subscribe took {:?}",
        began.elapsed()
    );
    let began = Instant::now();
    let fetched = tokio::time::timeout(
        WAIT,
        client.fetch(FetchRequest {
            r#ref: alert_ref("lasair", ZTF_TOPIC, 0, 3),
        }),
    )
    .await?;
    let status = fetched.expect_err("fetch after the broker died");
    assert_eq!(status.code(), Code::Unavailable, "fetch: {status:?}");
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "fetch took {:?}",
        began.elapsed()
    );
    // Requests failed because of Kafka: the gateway counts Kafka errors.
    site.gateway
        .wait_metrics("alertmesh_kafka_errors_total > 0", |m| {
            m.value("alertmesh_kafka_errors_total", &[]) > 0.0
        })
        .await?;
    Ok(())
}

#[tokio::test]
async fn listing_topics_with_kafka_down_answers_once_not_once_per_topic() -> Result<()> {
    let closed = format!("127.0.0.1:{}", free_port());
    let mut spec = GatewaySpec::new("lasair", &closed)
        .timeout_ms(2000)
        .ready(Ready::GrpcPort);
    for i in 0..6 {
        spec = spec.topic(&format!("ztf.alerts.{i}"), "ZTF", "avro-ocf");
    }
    let gateway = Gateway::start(&spec).await?;
    let mut client = gateway.client().await?;
    let began = Instant::now();
    let topics = client
        .list_topics(alertmesh_proto::v1::ListTopicsRequest {})
        .await?
        .into_inner()
        .topics;
    // Six look-ups of 2 s each one after the other would take 12 s.
    ensure!(
        began.elapsed() < Duration::from_secs(8),
        "took {:?}",
        began.elapsed()
    );
    ensure!(topics.len() == 6, "{topics:?}");
    ensure!(topics.iter().all(|t| t.partitions == 0), "{topics:?}");
    let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
    ensure!(
        names[0] == "ztf.alerts.0" && names[5] == "ztf.alerts.5",
        "{names:?}"
    );
    Ok(())
}
