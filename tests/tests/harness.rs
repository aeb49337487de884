//! The harness itself, without a gateway: Tansu keeps what we produce, byte for byte, so a
//! failure elsewhere is the gateway's.

use std::time::Duration;

use alertmesh_tests::fixtures::{now_ms, ztf_records};
use alertmesh_tests::kafka::{assigned_consumer, read_to_eof_with};
use alertmesh_tests::metrics::Metrics;
use alertmesh_tests::{Broker, ZTF_TOPIC};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset};

#[tokio::test]
async fn tansu_keeps_keys_headers_timestamps_and_payloads() -> anyhow::Result<()> {
    let broker = Broker::start("harness").await?;
    broker.create_topic(ZTF_TOPIC, 3).await?;
    let records = ztf_records(3, now_ms() - 60_000, 1000)?;
    let produced = broker.produce_all(ZTF_TOPIC, &records).await?;
    assert_eq!(produced.len(), 45);
    for p in 0..3 {
        let offsets: Vec<i64> = produced
            .iter()
            .filter(|r| r.record.partition == p)
            .map(|r| r.offset)
            .collect();
        assert_eq!(offsets, (0..15).collect::<Vec<i64>>(), "partition {p}");
    }

    let bootstrap = broker.bootstrap();
    let seen = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<_>> {
        let consumer = assigned_consumer(&bootstrap, ZTF_TOPIC, 3, Offset::Beginning)?;
        let mut seen = Vec::new();
        read_to_eof_with(&consumer, 3, 45, Duration::from_secs(20), |m| {
            let headers: Vec<(String, Option<Vec<u8>>)> = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default();
            seen.push((
                m.partition(),
                m.offset(),
                m.timestamp().to_millis(),
                m.key().map(<[u8]>::to_vec),
                headers,
                m.payload().map(<[u8]>::to_vec),
            ));
        })?;
        Ok(seen)
    })
    .await??;
    assert_eq!(seen.len(), 45);
    for (partition, offset, ts, key, headers, payload) in seen {
        let p = produced
            .iter()
            .find(|p| p.record.partition == partition && p.offset == offset)
            .expect("a produced position");
        assert_eq!(ts, Some(p.record.timestamp_ms));
        assert_eq!(key.as_deref(), p.record.key.as_deref());
        let want: Vec<(String, Option<Vec<u8>>)> = p
            .record
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.as_ref().map(|v| v.to_vec())))
            .collect();
        assert_eq!(headers, want);
        assert_eq!(payload.as_deref(), Some(p.record.payload.as_ref()));
    }
    Ok(())
}

#[test]
fn prometheus_text_is_parsed_with_labels() {
    let text = "# HELP x\n# TYPE alertmesh_open_subscriptions gauge\n\
                alertmesh_open_subscriptions 3\n\
                alertmesh_kafka_readers_started_total{kind=\"tail\"} 1\n\
                alertmesh_kafka_readers_started_total{kind=\"own\"} 4\n\
                alertmesh_alerts_served_total{topic=\"ztf.alerts\",x=\"y\"} 45\n";
    let m = Metrics::parse(text);
    assert_eq!(m.get("alertmesh_open_subscriptions", &[]), Some(3.0));
    assert_eq!(
        m.get("alertmesh_kafka_readers_started_total", &[("kind", "tail")]),
        Some(1.0)
    );
    assert_eq!(
        m.get("alertmesh_kafka_readers_started_total", &[]),
        Some(5.0)
    );
    assert_eq!(
        m.get("alertmesh_alerts_served_total", &[("topic", "ztf.alerts")]),
        Some(45.0)
    );
    assert_eq!(
        m.get("alertmesh_alerts_served_total", &[("topic", "other")]),
        None
    );
}
