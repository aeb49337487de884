//! Fetch resolves an alert ref to the one record it names.

use alertmesh_proto::v1::FetchRequest;
use alertmesh_tests::client::{alert_ref, check_alert};
use alertmesh_tests::{Mesh, ZTF_TOPIC};
use anyhow::Result;
use tonic::Code;

#[tokio::test]
async fn fetch_returns_the_record_a_ref_names() -> Result<()> {
    let site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 3)
        .ztf_alerts()
        .start()
        .await?;
    let mut client = site.gateway.client().await?;
    // First, middle and last record of each partition, in an unordered sequence.
    for (partition, offset) in [(1, 7), (0, 0), (2, 14), (0, 14), (2, 0), (1, 0)] {
        let produced = site
            .produced
            .iter()
            .find(|p| p.record.partition == partition && p.offset == offset)
            .expect("fixture position");
        let r = alert_ref("lasair", ZTF_TOPIC, partition, offset);
        let alert = client
            .fetch(FetchRequest { r#ref: r.clone() })
            .await?
            .into_inner();
        check_alert(&alert, produced, "lasair")?;
    }
    Ok(())
}

#[tokio::test]
async fn fetch_of_a_missing_record_is_not_found_and_a_bad_ref_is_invalid() -> Result<()> {
    let site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 3)
        .ztf_alerts()
        .start()
        .await?;
    let mut client = site.gateway.client().await?;
    let cases: [(String, &[Code], &str); 6] = [
        (
            alert_ref("lasair", ZTF_TOPIC, 0, 15),
            &[Code::NotFound],
            "offset",
        ),
        (
            alert_ref("lasair", ZTF_TOPIC, 1, 999),
            &[Code::NotFound],
            "offset",
        ),
        (
            alert_ref("lasair", "not.exposed", 0, 0),
            &[Code::NotFound],
            "not.exposed",
        ),
        // A partition the topic does not have: no such record, or a bad ref.
        (
            alert_ref("lasair", ZTF_TOPIC, 9, 0),
            &[Code::NotFound, Code::InvalidArgument],
            "partition",
        ),
        (
            "lasair/ztf.alerts/0/0".to_owned(),
            &[Code::InvalidArgument],
            "am://",
        ),
        (
            "am://lasair/ztf.alerts/zero/0".to_owned(),
            &[Code::InvalidArgument],
            "am://",
        ),
    ];
    for (r, codes, says) in cases {
        let fetched = tokio::time::timeout(
            alertmesh_tests::WAIT,
            client.fetch(FetchRequest { r#ref: r.clone() }),
        )
        .await?;
        let status = fetched.expect_err(&format!("{r} should fail"));
        assert!(codes.contains(&status.code()), "{r}: {status:?}");
        assert!(
            status.message().contains(says),
            "{r}: message {:?} should mention {says:?}",
            status.message()
        );
    }
    Ok(())
}
