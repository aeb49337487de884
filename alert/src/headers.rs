//! Kafka record conventions inside the mesh: `am-*` header names and payload formats.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// Namespace of the record's key.
pub const NAMESPACE: &str = "am-ns";
/// Payload format, one of [`Format`].
pub const FORMAT: &str = "am-format";
/// Schema fingerprint or registry id.
pub const SCHEMA: &str = "am-schema";
/// Alert ref of the record where the alert entered the mesh.
pub const ORIGIN: &str = "am-origin";
/// Comma-separated names of the gateways the record has traversed.
pub const HOPS: &str = "am-hops";
/// Alert refs a derived record was computed from.
pub const DERIVED_FROM: &str = "am-derived-from";
/// What produced a derived record: JSON `{"name": .., "version": .., "parameters": {..}}`.
pub const ACTIVITY: &str = "am-activity";
/// Non-alert inputs of a derived record (e.g. `catalog:gaia-dr3/4295806720`): a JSON array of strings.
pub const USED: &str = "am-used";
/// Who published a derived record: JSON `{"sub": .., "iss": ..}` from the publisher's token.
pub const AGENT: &str = "am-agent";
/// The publisher's id for a derived record, which makes a retried publish a no-op.
pub const PUBLISH_ID: &str = "am-publish-id";
/// Where a mirror copied the record from: the source alert ref for a gateway source,
/// `kafka://<topic>/<partition>/<offset>` for a raw Kafka source. Mirrors resume from it.
pub const SOURCE: &str = "am-source";
/// On a record a mirror copied from a database query: where the query stream resumes
/// after it (`<seq> <skip> <token>`, see the mirror crate's `resume::QueryResume`).
pub const RESUME: &str = "am-resume";
/// On a record a mirror copied from a database query: the query, `am://<gateway>/query:<name>`
/// (its `am-source` names the row, which for an archive's query is an alert of a topic).
pub const QUERY: &str = "am-query";
/// Why a record went to a dead-letter topic.
pub const ERROR: &str = "am-error";

/// How an alert payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Avro Object Container File with the writer schema embedded (ZTF).
    AvroOcf,
    /// Confluent wire format: 0x00, 4-byte schema id, Avro binary (LSST).
    AvroConfluent,
    /// A JSON document.
    Json,
}

impl Format {
    /// Every format, in the order they are documented.
    pub const ALL: [Format; 3] = [Format::AvroOcf, Format::AvroConfluent, Format::Json];

    /// The name used in configs and in the `am-format` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::AvroOcf => "avro-ocf",
            Format::AvroConfluent => "avro-confluent",
            Format::Json => "json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| Error::UnknownFormat(s.chars().take(100).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip_and_unknown_names_list_the_choices() {
        for f in Format::ALL {
            assert_eq!(f.as_str().parse::<Format>().unwrap(), f);
        }
        let err = "avro".parse::<Format>().unwrap_err().to_string();
        assert!(err.contains("avro-ocf, avro-confluent, json"), "{err}");
    }
}
