//! The exposed-topic catalog: which local topics this gateway serves, how they are
//! described, and their partitions in Kafka.

use alertmesh_proto::v1;

use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::kafka::cluster::Cluster;

/// Response metadata of `ListTopics` and `DescribeGateway`: how many exposed topics the
/// caller does not see because they need a token, so that a client can say so.
pub(crate) const TOPICS_NEED_TOKEN: &str = "am-topics-need-token";

/// The topics of `[[topics]]`, looked up by name.
#[derive(Debug)]
pub(crate) struct Catalog {
    gateway: String,
    topics: Vec<TopicConfig>,
    cluster: Cluster,
}

impl Catalog {
    pub(crate) fn new(gateway: &str, topics: Vec<TopicConfig>, cluster: Cluster) -> Self {
        Catalog {
            gateway: gateway.to_owned(),
            topics,
            cluster,
        }
    }

    /// Every exposed topic, in configuration order.
    pub(crate) fn topics(&self) -> &[TopicConfig] {
        &self.topics
    }

    /// The exposed topic `name`, or NotFound listing what is exposed.
    pub(crate) fn exposed(&self, name: &str) -> Result<&TopicConfig> {
        self.topics.iter().find(|t| t.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.topics.iter().map(|t| t.name.as_str()).collect();
            Error::NotFound(format!(
                "topic {name:?} is not exposed by gateway {}; exposed topics: {}",
                self.gateway,
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ))
        })
    }

    /// Partition ids of the Kafka topic `topic`.
    pub(crate) async fn partitions(&self, topic: &str) -> Result<Vec<i32>> {
        self.cluster.partitions(topic).await
    }

    /// `topics` on the wire, with their partition counts.
    pub(crate) async fn describe(&self, topics: &[&TopicConfig]) -> Vec<v1::TopicInfo> {
        // Look the partition counts up concurrently: with Kafka down each look-up waits for
        // kafka.timeout_ms, and the answer should not take that once per topic.
        let mut lookups = tokio::task::JoinSet::new();
        for (i, t) in topics.iter().enumerate() {
            let (cluster, name) = (self.cluster.clone(), t.name.clone());
            lookups.spawn(async move {
                let n = cluster
                    .partitions(&name)
                    .await
                    .map_or(0, |p| p.len() as i32);
                (i, n)
            });
        }
        let mut counts = vec![0; topics.len()];
        while let Some(done) = lookups.join_next().await {
            // A topic Kafka cannot describe right now is still listed, with 0 partitions.
            if let Ok((i, n)) = done {
                counts[i] = n;
            }
        }
        topics
            .iter()
            .zip(counts)
            .map(|(t, partitions)| v1::TopicInfo {
                name: t.name.clone(),
                namespace: t.namespace.clone(),
                format: t.format.to_string(),
                description: t.description.clone(),
                partitions,
                // Filled in by the service, which knows the schemas.
                ..Default::default()
            })
            .collect()
    }
}

/// Partition ids as a range (`0-3`) when contiguous, else a list (`0,2,5`).
pub(crate) fn describe_partitions(partitions: &[i32]) -> String {
    match (partitions.first(), partitions.last()) {
        (Some(a), Some(b)) if partitions.len() as i64 == i64::from(*b) - i64::from(*a) + 1 => {
            format!("{a}-{b}")
        }
        _ => partitions
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(","),
    }
}
