//! Resume positions recovered from the last records of a destination topic.

use std::collections::BTreeMap;

use alertmesh_alert::AlertRef;

/// Per source partition, the next source offset a mirror must copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResumePositions {
    next: BTreeMap<(String, String, i32), i64>,
}

impl ResumePositions {
    /// An empty set: the mirror starts where its configuration says.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the destination holds the source record `origin`.
    ///
    /// Feed it the destination's records in any order: the highest source offset per source
    /// partition wins, since a mirror copies each source partition in offset order.
    pub fn observe(&mut self, origin: &AlertRef) {
        let key = (
            origin.gateway.clone(),
            origin.topic.clone(),
            origin.partition,
        );
        let next = origin.offset + 1;
        let slot = self.next.entry(key).or_insert(next);
        *slot = (*slot).max(next);
    }

    /// The next offset to copy from `partition` of `gateway`'s `topic`, if any was copied.
    pub fn next_offset(&self, gateway: &str, topic: &str, partition: i32) -> Option<i64> {
        self.next
            .get(&(gateway.to_owned(), topic.to_owned(), partition))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_copied_offset_per_partition_sets_the_resume_point() {
        let mut r = ResumePositions::new();
        for text in [
            "am://survey/ztf.alerts/0/7",
            "am://survey/ztf.alerts/0/9",
            "am://survey/ztf.alerts/0/8",
            "am://survey/ztf.alerts/1/3",
        ] {
            r.observe(&text.parse().unwrap());
        }
        assert_eq!(r.next_offset("survey", "ztf.alerts", 0), Some(10));
        assert_eq!(r.next_offset("survey", "ztf.alerts", 1), Some(4));
        assert_eq!(r.next_offset("survey", "ztf.alerts", 2), None);
        assert_eq!(r.next_offset("other", "ztf.alerts", 0), None);
    }
}
