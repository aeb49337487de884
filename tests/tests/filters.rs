//! Filters and JSON output in the gateway, on the real ZTF alerts published without keys
//! (as ZTF does): the gateway decodes each alert, extracts its mesh key and position, and
//! the expectations come from independent sources (the fixture manifest for positions,
//! fastavro's reading in `alert/tests/fixtures/expected.json` for magnitudes).

use std::collections::BTreeSet;

use alertmesh_proto::v1::{self, Cone, Output, SubscribeRequest};
use alertmesh_tests::cli::json_lines;
use alertmesh_tests::client::{earliest, request, subscribe_all, until_now};
use alertmesh_tests::fixtures::{now_ms, ztf_alerts, ztf_dir};
use alertmesh_tests::{Broker, Gateway, GatewaySpec, Record, WAIT, ZTF_TOPIC};
use anyhow::{Context, Result};
use bytes::Bytes;
use serde_json::Value;
use tonic::Code;

struct Site {
    broker: Broker,
    gateway: Gateway,
}

/// A broker with the 45 alerts as ZTF publishes them (no key, no headers), plus one
/// record that is not an alert at all, and a gateway over it.
async fn keyless_site() -> Result<Site> {
    let broker = Broker::start("lasair").await?;
    broker.create_topic(ZTF_TOPIC, 3).await?;
    let base = now_ms() - 60_000;
    let mut records: Vec<Record> = ztf_alerts()?
        .into_iter()
        .enumerate()
        .map(|(i, a)| Record {
            partition: i as i32 % 3,
            key: None,
            payload: a.payload,
            headers: Vec::new(),
            timestamp_ms: base + i as i64,
        })
        .collect();
    records.push(Record {
        partition: 1,
        key: None,
        payload: Bytes::from_static(b"Obj\x01 this is not an avro container"),
        headers: Vec::new(),
        timestamp_ms: base + 100,
    });
    broker.produce_all(ZTF_TOPIC, &records).await?;
    let spec = GatewaySpec::new("lasair", &broker.bootstrap()).topic(ZTF_TOPIC, "ZTF", "avro-ocf");
    let gateway = Gateway::start(&spec).await?;
    Ok(Site { broker, gateway })
}

fn bounded(topic: &str) -> SubscribeRequest {
    let mut r = request(topic);
    r.start = earliest();
    r.end = until_now();
    r
}

/// Manifest rows: (mesh key, ra, dec).
fn manifest() -> Result<Vec<(String, f64, f64)>> {
    let text = std::fs::read_to_string(ztf_dir().join("manifest.tsv"))?;
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            Ok((format!("ZTF:{}", c[1]), c[3].parse()?, c[4].parse()?))
        })
        .collect()
}

/// Great-circle distance by the haversine formula, in degrees.
fn distance(ra1: f64, dec1: f64, ra2: f64, dec2: f64) -> f64 {
    let (p1, p2) = (dec1.to_radians(), dec2.to_radians());
    let (dp, dl) = ((dec2 - dec1).to_radians(), (ra2 - ra1).to_radians());
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    (2.0 * a.sqrt().asin()).to_degrees()
}

async fn keys_of(site: &Site, req: SubscribeRequest) -> Result<BTreeSet<String>> {
    let mut client = site.gateway.client().await?;
    let got = subscribe_all(&mut client, req, WAIT).await;
    match got.end {
        Some(Ok(())) => {}
        other => anyhow::bail!("stream did not end with OK: {other:?}"),
    }
    Ok(got.alerts.into_iter().map(|a| a.mesh_key).collect())
}

#[tokio::test]
async fn cone_filter_returns_exactly_the_alerts_inside_it() -> Result<()> {
    let site = keyless_site().await?;
    let (ra, dec, radius) = (197.6, 7.0, 0.35);
    let want: BTreeSet<String> = manifest()?
        .into_iter()
        .filter(|(_, r, d)| distance(ra, dec, *r, *d) <= radius)
        .map(|(k, _, _)| k)
        .collect();
    assert!(
        want.len() > 3 && want.len() < 40,
        "a cone that selects some: {}",
        want.len()
    );
    let mut req = bounded(ZTF_TOPIC);
    req.cone = Some(Cone { ra, dec, radius });
    assert_eq!(keys_of(&site, req).await?, want);
    Ok(())
}

#[tokio::test]
async fn predicate_and_ids_filters_match_an_independent_reading() -> Result<()> {
    let site = keyless_site().await?;
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(
        ztf_dir().join("../../expected.json"),
    )?)?;
    let bright: BTreeSet<String> = expected
        .as_object()
        .context("expected.json is an object")?
        .iter()
        .filter(|(file, _)| file.starts_with("ztf/fink-ztf-public-2020-01-01/"))
        .map(|(_, v)| &v[0])
        .filter(|a| a["magpsf"].as_f64().is_some_and(|m| m < 16.5))
        .map(|a| format!("ZTF:{}", a["object_id"].as_str().unwrap_or_default()))
        .collect();
    assert!(!bright.is_empty() && bright.len() < 45, "{}", bright.len());

    let mut req = bounded(ZTF_TOPIC);
    req.filter = "candidate.magpsf < 16.5 && candidate.isdiffpos != \"x\"".into();
    assert_eq!(keys_of(&site, req).await?, bright);

    let picked: Vec<String> = manifest()?
        .into_iter()
        .step_by(10)
        .map(|(k, _, _)| k)
        .collect();
    let mut req = bounded(ZTF_TOPIC);
    req.ids = picked.clone();
    assert_eq!(keys_of(&site, req).await?, picked.into_iter().collect());
    Ok(())
}

#[tokio::test]
async fn json_output_decodes_alerts_and_reports_undecodable_records() -> Result<()> {
    let site = keyless_site().await?;
    let mut client = site.gateway.client().await?;
    let mut req = bounded(ZTF_TOPIC);
    req.output = Output::Json as i32;
    req.omit_cutouts = true;
    let mut stream = client.subscribe(req).await?.into_inner();
    let (mut alerts, mut skipped) = (Vec::new(), Vec::new());
    while let Some(batch) = tokio::time::timeout(WAIT, stream.message()).await?? {
        alerts.extend(batch.alerts);
        skipped.extend(batch.skipped);
    }
    assert_eq!(alerts.len(), 45);
    let by_key = ztf_alerts()?;
    for a in &alerts {
        assert!(a.payload.is_empty(), "json output carries no payload");
        let doc: Value = serde_json::from_slice(&a.json).context("alert json")?;
        let object_id = doc["objectId"].as_str().context("objectId")?;
        assert_eq!(a.mesh_key, format!("ZTF:{object_id}"));
        let fixture = by_key
            .iter()
            .find(|f| f.object_id == object_id)
            .context("a fixture")?;
        // 64-bit ids survive exactly (they exceed 2^53).
        assert_eq!(doc["candid"].as_i64(), Some(fixture.candid));
        assert!(
            doc["cutoutScience"]["stampData"].is_null(),
            "cutouts omitted"
        );
    }
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].r#ref.starts_with("am://lasair/ztf.alerts/1/"));
    assert!(
        skipped[0].reason.contains("malformed avro-ocf payload"),
        "{}",
        skipped[0].reason
    );
    let m = site.gateway.metrics().await?;
    assert_eq!(
        m.value("alertmesh_alerts_skipped_total", &[("topic", ZTF_TOPIC)]),
        1.0
    );
    Ok(())
}

/// Once a stream's filter fits the topic's alerts, a record of another writer schema that
/// lacks the filter's fields (anyone who may produce to the topic writes one) is skipped
/// and reported: it does not end the stream, nor every resumption of it.
#[tokio::test]
async fn a_record_of_another_schema_is_skipped_not_the_end_of_a_filtered_stream() -> Result<()> {
    use alertmesh_alert::apache_avro::types::Value as Avro;
    let site = keyless_site().await?;
    let other = alertmesh_tests::fixtures::ocf(
        r#"{"type":"record","name":"x","fields":[{"name":"y","type":"long"}]}"#,
        vec![("y", Avro::Long(7))],
    );
    let produced = site
        .broker
        .produce_all(
            ZTF_TOPIC,
            &[Record {
                partition: 0,
                key: None,
                payload: other.into(),
                headers: Vec::new(),
                timestamp_ms: now_ms(),
            }],
        )
        .await?;
    let mut req = bounded(ZTF_TOPIC);
    req.filter = "candidate.magpsf < 16.5".into();
    let mut client = site.gateway.client().await?;
    let mut stream = client.subscribe(req).await?.into_inner();
    let (mut kept, mut skipped) = (0, Vec::new());
    while let Some(batch) = tokio::time::timeout(WAIT, stream.message()).await?? {
        kept += batch.alerts.len();
        skipped.extend(batch.skipped);
    }
    assert!(kept > 0 && kept < 45, "{kept}");
    let other_ref = format!("am://lasair/{ZTF_TOPIC}/0/{}", produced[0].offset);
    let reason = skipped
        .iter()
        .find(|s| s.r#ref == other_ref)
        .map(|s| s.reason.clone())
        .with_context(|| format!("{other_ref} not reported: {skipped:?}"))?;
    assert!(reason.contains("does not apply"), "{reason}");
    Ok(())
}

#[tokio::test]
async fn filters_that_cannot_apply_are_invalid_arguments() -> Result<()> {
    let site = keyless_site().await?;
    let mut client = site.gateway.client().await?;
    type Edit = Box<dyn Fn(&mut v1::SubscribeRequest)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|r| r.filter = "candidate.magpsff < 18".into()),
            "candidate.magpsff",
        ),
        (
            Box::new(|r| r.filter = "candidate.magpsf <".into()),
            "at byte",
        ),
        (
            Box::new(|r| {
                r.cone = Some(Cone {
                    ra: 10.0,
                    dec: 95.0,
                    radius: 1.0,
                })
            }),
            "cone",
        ),
        (Box::new(|r| r.ids = vec!["ZTF:not-an-id".into()]), "ZTF"),
        (Box::new(|r| r.output = 7), "OUTPUT_JSON"),
    ];
    for (edit, says) in cases {
        let mut req = bounded(ZTF_TOPIC);
        edit(&mut req);
        let got = subscribe_all(&mut client, req.clone(), WAIT).await;
        let status = match got.end {
            Some(Err(s)) => s,
            other => anyhow::bail!(
                "{req:?} should fail, got {other:?} after {} alerts",
                got.alerts.len()
            ),
        };
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains(says),
            "{:?} should mention {says:?}",
            status.message()
        );
        assert!(got.alerts.is_empty(), "nothing delivered before the error");
    }
    Ok(())
}

#[tokio::test]
async fn cli_json_lines_carry_the_decoded_alert_and_its_mesh_key() -> Result<()> {
    let site = keyless_site().await?;
    let args = [
        "subscribe",
        "--topic",
        ZTF_TOPIC,
        "--from",
        "earliest",
        "--until",
        "now",
        "--format",
        "json",
        "--omit-cutouts",
        "--cone",
        "197.6,7.0,0.35",
        "--filter",
        "candidate.magpsf > 0",
    ];
    let out = site.gateway.cli(&args).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("skipped am://lasair/ztf.alerts/1/"),
        "the bad record is reported: {stderr}"
    );
    let lines = json_lines(&out)?;
    let inside = manifest()?
        .into_iter()
        .filter(|(_, r, d)| distance(197.6, 7.0, *r, *d) <= 0.35)
        .count();
    assert_eq!(lines.len(), inside);
    for v in &lines {
        let object_id = v["alert"]["objectId"].as_str().context("alert.objectId")?;
        assert_eq!(v["key"], format!("ZTF:{object_id}"));
        assert!(v["ref"]
            .as_str()
            .is_some_and(|r| r.starts_with("am://lasair/ztf.alerts/")));
        assert!(v.get("payload").is_none());
        assert!(
            v["alert"]["candid"].as_i64().is_some_and(|c| c > 1 << 53),
            "exact int64"
        );
    }
    let bad = site
        .gateway
        .cli(&["subscribe", "--topic", ZTF_TOPIC, "--cone", "1,2"])
        .await?;
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.trim().lines().count() == 1 && err.contains("expected RA,DEC,RADIUS"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn inspect_prints_key_namespace_schema_and_position_of_each_alert() -> Result<()> {
    let dir = ztf_dir().join("../..");
    let files = [
        dir.join("ztf/fink-ztf-public-2020-01-01/1095578115815010001.avro"),
        dir.join("lsst/ampel_usdf_dev_v7_1/schema_701.avro"),
    ];
    let mut args = vec!["inspect".to_owned(), "--omit-cutouts".to_owned()];
    args.extend(files.iter().map(|f| f.to_string_lossy().into_owned()));
    let out = std::process::Command::new(alertmesh_tests::cli::alertmesh_bin())
        .args(&args)
        .output()?;
    let lines = json_lines(&out)?;
    assert_eq!(
        lines.len(),
        11,
        "one ZTF alert and the ten LSST alerts of the OCF file"
    );
    assert_eq!(lines[0]["key"], "ZTF:ZTF20aabaesm");
    assert_eq!(lines[0]["namespace"], "ZTF");
    assert_eq!(lines[0]["schema"], "ztf.alert");
    assert_eq!(lines[0]["ra"].as_f64(), Some(197.590032));
    assert!(lines[1]["key"]
        .as_str()
        .is_some_and(|k| k.starts_with("LSST:dia:")));
    assert_eq!(lines[1]["schema"], "lsst.v7_1.alert");

    let garbage = std::env::temp_dir().join(format!("not-an-alert-{}.bin", std::process::id()));
    std::fs::write(&garbage, b"PK\x03\x04")?;
    let out = std::process::Command::new(alertmesh_tests::cli::alertmesh_bin())
        .args(["inspect".as_ref(), garbage.as_os_str()])
        .output()?;
    std::fs::remove_file(&garbage)?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an alert file"));
    Ok(())
}

#[tokio::test]
async fn fetch_of_a_keyless_record_carries_the_mesh_key_from_its_payload() -> Result<()> {
    let site = keyless_site().await?;
    let mut client = site.gateway.client().await?;
    let alert = client
        .fetch(v1::FetchRequest {
            r#ref: "am://lasair/ztf.alerts/0/0".into(),
        })
        .await?
        .into_inner();
    assert!(alert.key.is_none(), "published without a key");
    // Alert 0 of the manifest went to partition 0 at offset 0.
    let first = &ztf_alerts()?[0];
    assert_eq!(alert.mesh_key, first.mesh_key());
    assert_eq!(alert.payload, first.payload);
    Ok(())
}
