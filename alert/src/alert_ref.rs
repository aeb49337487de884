//! Alert refs: live provenance links of the form `am://<gateway>/<topic>/<partition>/<offset>`.

use std::fmt;
use std::str::FromStr;

use crate::naming::{check_gateway_name, check_topic};
use crate::{Error, Result};

const SCHEME: &str = "am://";

/// A link to one Kafka record behind one gateway.
///
/// Gateway names and Kafka topic names never contain `/` (see [`crate::naming`]), so the
/// four parts split unambiguously.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AlertRef {
    /// The gateway that serves the record.
    pub gateway: String,
    /// The gateway's exposed topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// Kafka offset within the partition.
    pub offset: i64,
}

impl AlertRef {
    /// Builds a ref, checking that each part can be written and read back.
    pub fn new(gateway: &str, topic: &str, partition: i32, offset: i64) -> Result<Self> {
        let text = format!("{SCHEME}{gateway}/{topic}/{partition}/{offset}");
        text.parse()
    }
}

impl fmt::Display for AlertRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/{}/{}/{}",
            self.gateway, self.topic, self.partition, self.offset
        )
    }
}

impl FromStr for AlertRef {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        let bad = |reason| Error::InvalidRef {
            // Display caps it further; this bounds what the error holds.
            input: input.chars().take(1024).collect(),
            reason,
        };
        let rest = input
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad("it does not start with am://"))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [gateway, topic, partition, offset] = parts[..] else {
            return Err(bad("it does not have exactly four parts"));
        };
        if check_gateway_name(gateway).is_err() {
            return Err(bad(
                "the gateway name is not 1-249 characters of [a-zA-Z0-9._-]",
            ));
        }
        if check_topic(topic).is_err() {
            return Err(bad("the topic is not a valid Kafka topic name"));
        }
        // Plain decimal digits without leading zeros: a record has one ref, so refs
        // compare as text (a provenance walk would otherwise read `0/7`, `0/07` and
        // `0/+7` as three records).
        let partition: i32 = canonical_number(partition)
            .ok_or_else(|| bad("the partition is not a non-negative integer"))?;
        let offset: i64 = canonical_number(offset)
            .ok_or_else(|| bad("the offset is not a non-negative integer"))?;
        Ok(AlertRef {
            gateway: gateway.to_owned(),
            topic: topic.to_owned(),
            partition,
            offset,
        })
    }
}

/// `text` as a number when it is written the one way [`AlertRef`]'s `Display` writes it:
/// decimal digits, no sign, no leading zero.
fn canonical_number<T: FromStr>(text: &str) -> Option<T> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = text.len() > 1 && text.starts_with('0');
    (digits && !leading_zero)
        .then(|| text.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_round_trips() {
        let r: AlertRef = "am://lasair/ztf.alerts/2/12345".parse().unwrap();
        assert_eq!(r.gateway, "lasair");
        assert_eq!(r.topic, "ztf.alerts");
        assert_eq!(r.partition, 2);
        assert_eq!(r.offset, 12345);
        assert_eq!(r.to_string(), "am://lasair/ztf.alerts/2/12345");
        assert_eq!(AlertRef::new("lasair", "ztf.alerts", 2, 12345).unwrap(), r);
    }

    #[test]
    fn malformed_refs_say_what_is_wrong() {
        for (input, needle) in [
            ("http://lasair/t/0/1", "am://"),
            ("am://lasair/t/0", "four parts"),
            ("am://lasair/t/0/1/2", "four parts"),
            ("am:///t/0/1", "gateway"),
            ("am://lasair/t t/0/1", "topic"),
            ("am://lasair/t/-1/1", "partition"),
            ("am://lasair/t/0/x", "offset"),
            ("am://lasair/t/0/99999999999999999999", "offset"),
            ("am://lasair/../0/1", "topic"),
            ("am://../t/0/1", "gateway"),
            // One record, one ref: no other spelling of its numbers.
            ("am://lasair/t/00/1", "partition"),
            ("am://lasair/t/+0/1", "partition"),
            ("am://lasair/t/0/07", "offset"),
            ("am://lasair/t/0/+7", "offset"),
            ("am://lasair/t/0/ 7", "offset"),
        ] {
            let err = input.parse::<AlertRef>().unwrap_err().to_string();
            assert!(err.contains(needle), "{input}: {err}");
            assert!(err.contains("expected am://"), "{input}: {err}");
        }
    }
}
