//! Durable cursors: stored in Kafka, so a client resumes exactly where it left off, even
//! after the gateway restarts.

use std::collections::{BTreeMap, HashSet};

use alertmesh_proto::v1::CommitCursorRequest;
use alertmesh_tests::client::{
    check_exactly, earliest, partition_offsets, request, subscribe_all, until_now,
};
use alertmesh_tests::{Mesh, WAIT, ZTF_TOPIC};
use anyhow::{ensure, Result};

fn sorted(offsets: &[alertmesh_proto::v1::PartitionOffset]) -> Vec<(i32, i64)> {
    let mut v: Vec<(i32, i64)> = offsets.iter().map(|o| (o.partition, o.offset)).collect();
    v.sort();
    v
}

#[tokio::test]
async fn cursor_resumes_after_gateway_restart_without_gaps_or_repeats() -> Result<()> {
    let mut site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 3)
        .ztf_alerts()
        .start()
        .await?;
    let mut client = site.gateway.client().await?;
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    req.end = until_now();
    req.limit = Some(20);
    req.cursor = "night-1".to_owned();
    let first = subscribe_all(&mut client, req, WAIT).await;
    ensure!(
        matches!(first.end, Some(Ok(()))),
        "first read end {:?}",
        first.end
    );
    assert_eq!(first.alerts.len(), 20);

    // Next offset to read, per partition.
    let mut next: BTreeMap<i32, i64> = (0..3).map(|p| (p, 0)).collect();
    for a in &first.alerts {
        next.insert(a.partition, a.offset + 1);
    }
    let committed: Vec<(i32, i64)> = next.iter().map(|(p, o)| (*p, *o)).collect();
    let response = client
        .commit_cursor(CommitCursorRequest {
            name: "night-1".to_owned(),
            topic: ZTF_TOPIC.to_owned(),
            offsets: partition_offsets(&committed),
        })
        .await?
        .into_inner();
    assert_eq!(
        sorted(&response.offsets),
        committed,
        "cursor state after commit"
    );
    drop(client);

    site.gateway.restart().await?;
    let mut client = site.gateway.client().await?;
    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    req.end = until_now();
    req.cursor = "night-1".to_owned();
    let rest = subscribe_all(&mut client, req, WAIT).await;
    ensure!(
        matches!(rest.end, Some(Ok(()))),
        "resumed read end {:?}",
        rest.end
    );

    let want = site.produced_where(|p| p.offset >= next[&p.record.partition]);
    assert_eq!(want.len(), 25);
    check_exactly(&rest.alerts, &want, "lasair")?;
    // Together: every alert exactly once.
    let mut seen = HashSet::new();
    for a in first.alerts.iter().chain(&rest.alerts) {
        ensure!(
            seen.insert((a.partition, a.offset)),
            "{} delivered twice",
            a.r#ref
        );
    }
    assert_eq!(seen.len(), 45);
    Ok(())
}

#[tokio::test]
async fn cursor_commits_merge_per_partition_and_unset_partitions_use_start() -> Result<()> {
    let site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 3)
        .ztf_alerts()
        .start()
        .await?;
    let mut client = site.gateway.client().await?;
    for (partition, offset) in [(0, 3), (1, 4)] {
        client
            .commit_cursor(CommitCursorRequest {
                name: "merge".to_owned(),
                topic: ZTF_TOPIC.to_owned(),
                offsets: partition_offsets(&[(partition, offset)]),
            })
            .await?;
    }
    let response = client
        .commit_cursor(CommitCursorRequest {
            name: "merge".to_owned(),
            topic: ZTF_TOPIC.to_owned(),
            offsets: partition_offsets(&[(0, 5)]),
        })
        .await?
        .into_inner();
    assert_eq!(sorted(&response.offsets), vec![(0, 5), (1, 4)]);

    let mut req = request(ZTF_TOPIC);
    req.start = earliest();
    req.end = until_now();
    req.cursor = "merge".to_owned();
    let got = subscribe_all(&mut client, req, WAIT).await;
    ensure!(matches!(got.end, Some(Ok(()))), "end {:?}", got.end);
    let want = site.produced_where(|p| match p.record.partition {
        0 => p.offset >= 5,
        1 => p.offset >= 4,
        _ => true,
    });
    assert_eq!(want.len(), 10 + 11 + 15);
    check_exactly(&got.alerts, &want, "lasair")
}

/// Anyone who may read a topic may commit cursors, and each one is kept by every replica
/// and in the compacted topic for good: a principal holds at most
/// `limits.max_cursors_per_principal`, also after a restart (counted again from the topic).
#[tokio::test]
async fn a_principal_holds_at_most_max_cursors_per_principal() -> Result<()> {
    let mut site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 3)
        .ztf_alerts()
        .extra("[limits]\nmax_cursors_per_principal = 3\n")
        .start()
        .await?;
    let commit = |name: &str| CommitCursorRequest {
        name: name.to_owned(),
        topic: ZTF_TOPIC.to_owned(),
        offsets: partition_offsets(&[(0, 1)]),
    };
    let mut client = site.gateway.client().await?;
    for name in ["a", "b", "c"] {
        client.commit_cursor(commit(name)).await?;
    }
    for round in ["before", "after"] {
        let refused = client.commit_cursor(commit("d")).await.unwrap_err();
        ensure!(
            refused.code() == tonic::Code::ResourceExhausted,
            "{round} the restart: {refused:?}"
        );
        ensure!(
            refused
                .message()
                .contains("limits.max_cursors_per_principal"),
            "{refused:?}"
        );
        // The cursors it holds still move.
        client.commit_cursor(commit("a")).await?;
        site.gateway.restart().await?;
        client = site.gateway.client().await?;
    }
    Ok(())
}
