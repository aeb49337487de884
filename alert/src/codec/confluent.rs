//! The Confluent wire format (LSST): byte 0 = 0, a 4-byte big-endian schema id, then one
//! bare Avro datum. Schemas come from a [`SchemaResolver`].

use std::fmt;
use std::sync::Arc;

use apache_avro::schema::Schema;

use crate::{Error, Result};

/// Finds the writer schema registered under a Confluent schema id.
///
/// Synchronous on purpose: the gateway's HTTP schema-registry client pre-fetches (or
/// fetches on a blocking thread) and answers from memory. LSST ids are `major*100+minor`:
/// 701 for 7.1, 900 for 9.0, 1100 for 11.0. The [`crate::Decoder`] caches the prepared
/// schema per id, so a resolver is asked once per id.
pub trait SchemaResolver: Send + Sync + fmt::Debug {
    /// The schema registered under `id`, or [`Error::UnknownSchemaId`].
    fn resolve(&self, id: u32) -> Result<Arc<Schema>>;
}

/// Splits a Confluent payload into its schema id and Avro body.
pub fn split(payload: &[u8]) -> Result<(u32, &[u8])> {
    let malformed = |reason: &str| Error::Decode {
        format: "avro-confluent",
        reason: reason.to_owned(),
    };
    match payload {
        [0, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [0, ..] => Err(malformed("truncated: needs 5 header bytes")),
        [m, ..] => Err(malformed(&format!("bad magic byte {m}; expected 0"))),
        [] => Err(malformed("empty payload")),
    }
}

/// Prefixes an Avro body with the Confluent header for `schema_id`.
pub fn frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The LSST schema id for version `major.minor` (`major*100 + minor`).
pub fn lsst_schema_id(major: u32, minor: u32) -> u32 {
    major * 100 + minor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_bad_headers_are_errors() {
        let framed = frame(1100, b"xyz");
        assert_eq!(split(&framed).unwrap(), (1100, &b"xyz"[..]));
        assert_eq!(lsst_schema_id(7, 1), 701);
        for bad in [&b""[..], b"\x00\x00\x00", b"\x01\x00\x00\x04\x4c"] {
            assert!(split(bad).is_err());
        }
    }
}
