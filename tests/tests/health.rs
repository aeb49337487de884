//! Readiness follows Kafka: `/readyz` and gRPC health say NOT_SERVING while the cluster is
//! gone, and liveness (`/healthz`) stays up so the process is not restarted for it.

use std::time::{Duration, Instant};

use alertmesh_tests::metrics::http_get;
use alertmesh_tests::{Mesh, ZTF_TOPIC};
use anyhow::{bail, Result};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const SERVICE: &str = "alertmesh.v1.AlertMesh";

async fn grpc_health(url: &str) -> Result<ServingStatus> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())?
        .connect()
        .await?;
    let mut client = HealthClient::new(channel);
    let resp = client
        .check(HealthCheckRequest {
            service: SERVICE.to_owned(),
        })
        .await?;
    Ok(resp.into_inner().status())
}

async fn wait_for(
    what: &str,
    limit: Duration,
    mut check: impl AsyncFnMut() -> Result<bool>,
) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("{what} not seen within {limit:?}")
}

#[tokio::test]
async fn readiness_follows_kafka_while_liveness_stays_up() -> Result<()> {
    let mut site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 3)
        .kafka_timeout_ms(1_000)
        .start()
        .await?;
    let http = site.gateway.http_addr();
    let url = site.gateway.grpc_url();

    wait_for("ready with kafka up", Duration::from_secs(20), async || {
        Ok(http_get(&http, "/readyz").await?.0 == 200
            && grpc_health(&url).await? == ServingStatus::Serving)
    })
    .await?;

    site.broker.kill();
    wait_for(
        "not ready with kafka gone",
        Duration::from_secs(20),
        async || {
            let (code, body) = http_get(&http, "/readyz").await?;
            Ok(code == 503
                && body.contains("kafka unreachable")
                && grpc_health(&url).await? == ServingStatus::NotServing)
        },
    )
    .await?;
    let (code, _) = http_get(&http, "/healthz").await?;
    assert_eq!(code, 200, "liveness must not depend on kafka");
    Ok(())
}
