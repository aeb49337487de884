//! Fetch of a ref whose topic is gone: deleted in Kafka, or the whole cluster replaced
//! by a new, empty one on the same address. The gateway must answer with a clear status
//! and stay up (librdkafka's metadata cache has crashed a gateway here, taking every
//! subscriber with it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use alertmesh_proto::v1::FetchRequest;
use alertmesh_tests::apache::Flavor;
use alertmesh_tests::bench_mirror::delete_topics;
use alertmesh_tests::client::{alert_ref, check_alert};
use alertmesh_tests::fixtures::{now_ms, ztf_records};
use alertmesh_tests::{Gateway, Mesh, ZTF_TOPIC};
use anyhow::{bail, ensure, Result};
use tonic::Code;

/// A second exposed topic, left alone.
const OTHER: &str = "ztf.other";

/// Fetches `r` several times over a few seconds (long enough for librdkafka's clients to
/// learn the topic is gone): every answer must be NOT_FOUND or UNAVAILABLE naming the
/// topic, and the gateway must still run afterwards.
async fn gone(gateway: &mut Gateway, r: &str) -> Result<()> {
    let mut client = gateway.client().await?;
    for _ in 0..8 {
        let fetched = tokio::time::timeout(
            alertmesh_tests::WAIT,
            client.fetch(FetchRequest {
                r#ref: r.to_owned(),
            }),
        )
        .await;
        if let Some(exit) = gateway.exited() {
            bail!(
                "gateway exited with {exit} on fetch of {r}; stderr tail:\n{}",
                gateway.stderr_tail(40)
            );
        }
        let status = match fetched {
            Ok(Err(s)) => s,
            Ok(Ok(a)) => bail!(
                "{r}: fetched {:?} from a topic that is gone",
                a.into_inner().r#ref
            ),
            Err(_) => bail!("{r}: no answer within {:?}", alertmesh_tests::WAIT),
        };
        ensure!(
            [Code::NotFound, Code::Unavailable].contains(&status.code()),
            "{r}: {status:?}, want NOT_FOUND or UNAVAILABLE"
        );
        ensure!(
            status.message().contains(ZTF_TOPIC),
            "{r}: message {:?} should name the topic",
            status.message()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_from_a_deleted_topic_is_refused_and_the_gateway_stays_up() -> Result<()> {
    let mut site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 2)
        .topic(OTHER, 1)
        .ztf_alerts()
        .start()
        .await?;
    let mut client = site.gateway.client().await?;
    let first = &site.produced[0];
    let r = alert_ref("lasair", ZTF_TOPIC, first.record.partition, first.offset);
    let alert = client
        .fetch(FetchRequest { r#ref: r.clone() })
        .await?
        .into_inner();
    check_alert(&alert, first, "lasair")?;

    delete_topics(&site.broker.bootstrap(), &[ZTF_TOPIC]).await;
    gone(&mut site.gateway, &r).await?;

    // A live topic is still served.
    let records = ztf_records(1, now_ms(), 1)?;
    let produced = site.broker.produce_all(OTHER, &records[..1]).await?;
    let r = alert_ref(
        "lasair",
        OTHER,
        produced[0].record.partition,
        produced[0].offset,
    );
    let mut client = site.gateway.client().await?;
    let alert = client.fetch(FetchRequest { r#ref: r }).await?.into_inner();
    check_alert(&alert, &produced[0], "lasair")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_after_kafka_was_replaced_is_refused_and_the_gateway_stays_up() -> Result<()> {
    let mut site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 2)
        .ztf_alerts()
        .start()
        .await?;
    let mut client = site.gateway.client().await?;
    let last = site.produced.last().expect("fixtures");
    let r = alert_ref("lasair", ZTF_TOPIC, last.record.partition, last.offset);
    let alert = client
        .fetch(FetchRequest { r#ref: r.clone() })
        .await?
        .into_inner();
    check_alert(&alert, last, "lasair")?;

    // A new, empty broker on the same address: the topic does not exist there.
    site.broker.replace().await?;
    gone(&mut site.gateway, &r).await?;

    // Once the topic exists again, its new records are fetched.
    site.broker.create_topic(ZTF_TOPIC, 2).await?;
    let records = ztf_records(2, now_ms(), 1)?;
    let produced = site.broker.produce_all(ZTF_TOPIC, &records[..4]).await?;
    let mut client = site.gateway.client().await?;
    for p in &produced {
        let r = alert_ref("lasair", ZTF_TOPIC, p.record.partition, p.offset);
        let alert = client.fetch(FetchRequest { r#ref: r }).await?.into_inner();
        check_alert(&alert, p, "lasair")?;
    }
    // The old ref now names a record the new cluster does not have.
    gone(
        &mut site.gateway,
        &alert_ref("lasair", ZTF_TOPIC, last.record.partition, last.offset),
    )
    .await?;
    ensure!(site.gateway.exited().is_none(), "gateway exited");
    Ok(())
}

/// Fetches refs of `site`'s fixtures in a loop, on a connection of its own, until `stop`.
fn fetch_loop(
    endpoint: String,
    refs: Vec<String>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let Ok(mut client) =
            alertmesh_proto::v1::alert_mesh_client::AlertMeshClient::connect(endpoint).await
        else {
            return 0;
        };
        let mut answered = 0;
        for r in refs.iter().cycle() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let fetched = tokio::time::timeout(
                alertmesh_tests::WAIT,
                client.fetch(FetchRequest { r#ref: r.clone() }),
            )
            .await;
            match fetched {
                Ok(Ok(_)) => answered += 1,
                // The gateway went away, or the cluster is between brokers.
                Ok(Err(s)) if s.code() == Code::Unknown => break,
                _ => {}
            }
        }
        answered
    })
}

/// Runs on Apache Kafka (`make test-apache`). With Tansu the swap is a race the gateway
/// narrows but cannot close: a client that reconnects to the new cluster before the
/// gateway's watch pauses it fetches by the old topic ids, Tansu answers with a zero topic
/// id and a current-leader hint, and librdkafka 2.12.1 looks that topic up by a null name
/// (SIGSEGV in `rd_kafka_metadata_cache_find`; measured on Tansu: 1 of 14 local runs of
/// four swaps; 2 of the last 4 CI runs, of two swaps each). Apache Kafka answers an unknown topic id
/// with that id and no leader hint, which librdkafka handles.
#[tokio::test(flavor = "multi_thread")]
async fn fetches_in_flight_while_kafka_is_replaced_do_not_crash_the_gateway() -> Result<()> {
    if Flavor::from_env() != Flavor::Apache {
        eprintln!(
            "skipped: with Tansu, librdkafka 2.12.1 can crash on its answer to a fetch by a \
             replaced cluster's topic id; runs with ALERTMESH_TEST_KAFKA=apache"
        );
        return Ok(());
    }
    let mut site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 2)
        .ztf_alerts()
        .start()
        .await?;
    let refs: Vec<String> = site
        .produced
        .iter()
        .map(|p| alert_ref("lasair", ZTF_TOPIC, p.record.partition, p.offset))
        .collect();
    let records = ztf_records(2, now_ms(), 1)?;
    for round in 0..4 {
        let stop = Arc::new(AtomicBool::new(false));
        let loops: Vec<_> = (0..6)
            .map(|_| fetch_loop(site.gateway.grpc_url(), refs.clone(), stop.clone()))
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The new cluster has the topic again at once, with records at the same offsets.
        site.broker.replace().await?;
        site.broker.create_topic(ZTF_TOPIC, 2).await?;
        site.broker.produce_all(ZTF_TOPIC, &records).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, Ordering::Relaxed);
        for l in loops {
            l.await?;
        }
        if let Some(exit) = site.gateway.exited() {
            bail!(
                "gateway exited with {exit} in round {round}; stderr tail:\n{}",
                site.gateway.stderr_tail(60)
            );
        }
    }
    // Still serving: the records of the last cluster are fetched.
    let mut client = site.gateway.client().await?;
    let alert = client
        .fetch(FetchRequest {
            r#ref: refs[0].clone(),
        })
        .await?
        .into_inner();
    ensure!(alert.r#ref == refs[0], "fetched {:?}", alert.r#ref);
    Ok(())
}

/// Runs on Apache Kafka (`make test-apache`). With Tansu it still crashes the gateway now
/// and then: a fetching client whose topic is deleted under it is answered
/// UNKNOWN_TOPIC_OR_PARTITION with a zero topic id and a current-leader hint (Apache Kafka
/// sends no leader hint with that error), and librdkafka 2.12.1 looks that topic up by a
/// null name in `rd_kafka_metadata_update_op` (SIGSEGV in `rd_kafka_metadata_cache_find`).
/// No client setting avoids it; it needs librdkafka fixed (skip a leader hint with neither
/// a topic id nor a name).
#[tokio::test(flavor = "multi_thread")]
async fn fetches_in_flight_while_the_topic_is_deleted_do_not_crash_the_gateway() -> Result<()> {
    if Flavor::from_env() != Flavor::Apache {
        eprintln!(
            "skipped: with Tansu, librdkafka 2.12.1 can crash on its answer for a topic \
             deleted mid-fetch; runs with ALERTMESH_TEST_KAFKA=apache"
        );
        return Ok(());
    }
    let mut site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 2)
        .ztf_alerts()
        .start()
        .await?;
    let refs: Vec<String> = site
        .produced
        .iter()
        .map(|p| alert_ref("lasair", ZTF_TOPIC, p.record.partition, p.offset))
        .collect();
    let records = ztf_records(2, now_ms(), 1)?;
    for round in 0..4 {
        let stop = Arc::new(AtomicBool::new(false));
        let loops: Vec<_> = (0..6)
            .map(|_| fetch_loop(site.gateway.grpc_url(), refs.clone(), stop.clone()))
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The topic goes, and comes back with records at the same offsets.
        delete_topics(&site.broker.bootstrap(), &[ZTF_TOPIC]).await;
        site.broker.create_topic(ZTF_TOPIC, 2).await?;
        site.broker.produce_all(ZTF_TOPIC, &records).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        for l in loops {
            l.await?;
        }
        if let Some(exit) = site.gateway.exited() {
            bail!(
                "gateway exited with {exit} in round {round}; stderr tail:\n{}",
                site.gateway.stderr_tail(60)
            );
        }
    }
    let mut client = site.gateway.client().await?;
    let alert = client
        .fetch(FetchRequest {
            r#ref: refs[0].clone(),
        })
        .await?
        .into_inner();
    ensure!(alert.r#ref == refs[0], "fetched {:?}", alert.r#ref);
    Ok(())
}
