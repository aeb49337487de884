//! What a gateway says about itself: its topics and its description.

use alertmesh_proto::v1::{DescribeGatewayRequest, ListTopicsRequest};
use alertmesh_tests::{Mesh, ZTF_TOPIC};
use anyhow::{Context, Result};

#[tokio::test]
async fn list_topics_and_describe_show_each_exposed_topic_with_its_partitions() -> Result<()> {
    let site = Mesh::new("lasair")
        .topic(ZTF_TOPIC, 3)
        .topic("ztf.bright", 2)
        .start()
        .await?;
    let mut client = site.gateway.client().await?;
    let topics = client
        .list_topics(ListTopicsRequest {})
        .await?
        .into_inner()
        .topics;
    let mut names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
    names.sort();
    assert_eq!(names, vec![ZTF_TOPIC, "ztf.bright"]);
    for (name, partitions) in [(ZTF_TOPIC, 3), ("ztf.bright", 2)] {
        let t = topics.iter().find(|t| t.name == name).context(name)?;
        assert_eq!(
            (t.namespace.as_str(), t.format.as_str()),
            ("ZTF", "avro-ocf")
        );
        assert_eq!(t.partitions, partitions, "{name} partitions");
    }

    let described = client
        .describe_gateway(DescribeGatewayRequest {})
        .await?
        .into_inner();
    assert_eq!(described.name, "lasair");
    assert!(!described.version.is_empty(), "version");
    assert_eq!(described.topics.len(), 2);
    let grpc = described
        .endpoints
        .iter()
        .find(|e| e.kind == "grpc")
        .context("grpc endpoint")?;
    assert_eq!(grpc.url, site.gateway.grpc_url());
    Ok(())
}
