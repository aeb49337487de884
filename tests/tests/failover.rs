//! Broker failover on a three-node Apache Kafka cluster (replication factor 3): killing the
//! leader of the partitions being read loses and repeats nothing, and live streams go on
//! after the election. Needs `ALERTMESH_TEST_KAFKA=apache` (`make test-apache`); with Tansu,
//! a single in-memory broker, there is no failover to test and the test says so.

use std::time::Duration;

use alertmesh_tests::apache::Flavor;
use alertmesh_tests::client::{check_exactly, earliest, request, take};
use alertmesh_tests::fixtures::{now_ms, ztf_records};
use alertmesh_tests::{Broker, Gateway, GatewaySpec, Produced, ZTF_TOPIC};
use anyhow::{ensure, Result};

/// Long enough for an election and the clients' metadata refresh on a busy machine.
const FAILOVER_WAIT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn a_live_subscription_loses_and_repeats_nothing_when_the_partition_leader_dies() -> Result<()>
{
    if Flavor::from_env() != Flavor::Apache {
        eprintln!("skipped: broker failover needs ALERTMESH_TEST_KAFKA=apache");
        return Ok(());
    }
    let mut cluster = Broker::start_cluster("failover", 3).await?;
    cluster.create_topic(ZTF_TOPIC, 3).await?;
    let gateway = Gateway::start(
        &GatewaySpec::new("lasair", &cluster.bootstrap()).topic(ZTF_TOPIC, "ZTF", "avro-ocf"),
    )
    .await?;

    let mut client = gateway.client().await?;
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    let mut stream = client.subscribe(req).await?.into_inner();

    let records = ztf_records(3, now_ms(), 1)?;
    let (before, after) = records.split_at(20);
    let mut produced: Vec<Produced> = cluster.produce_all(ZTF_TOPIC, before).await?;
    let mut alerts = take(&mut stream, before.len(), FAILOVER_WAIT).await?;

    let leader = cluster.leader(ZTF_TOPIC, 0).await?;
    cluster.kill_node(leader);
    // Written while the election runs: the idempotent producer retries until a new leader
    // takes them, each once.
    produced.extend(cluster.produce_all(ZTF_TOPIC, after).await?);
    alerts.extend(take(&mut stream, after.len(), FAILOVER_WAIT).await?);

    let want: Vec<&Produced> = produced.iter().collect();
    check_exactly(&alerts, &want, "lasair")?;
    let extra = tokio::time::timeout(Duration::from_secs(2), stream.message()).await;
    ensure!(
        extra.is_err(),
        "unexpected message after every alert: {extra:?}"
    );

    // The old leader comes back as a follower; the stream is not disturbed.
    cluster.restart_node(leader).await?;
    let more = ztf_records(3, now_ms(), 1)?;
    let more = cluster.produce_all(ZTF_TOPIC, &more[..6]).await?;
    let got = take(&mut stream, more.len(), FAILOVER_WAIT).await?;
    check_exactly(&got, &more.iter().collect::<Vec<_>>(), "lasair")?;
    Ok(())
}
