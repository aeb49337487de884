//! One source record → what to produce: a copy into the destination, a dead letter into
//! `<destination>.dlq`, or nothing (a cycle).
//!
//! Keys: a source key that is a valid mesh key is kept byte for byte (so is the
//! gateway-reported mesh key of a keyless gateway record); otherwise (a raw survey record,
//! keyless as ZTF publishes, or keyed with something that is not a mesh key) the payload is
//! decoded, projected to the registry's key paths only, and re-keyed with
//! [`mesh_key()`]. A payload that cannot be decoded or holds no object id is dead-lettered
//! with the reason; it never stops the mirror.

use std::sync::Arc;

use alertmesh_alert::apache_avro::Codec;
use alertmesh_alert::codec::confluent;
use alertmesh_alert::{
    mesh_key, translate, Decoder, Format, Mapping, MeshKey, Projection, Registry, Target,
    Translated,
};
use bytes::Bytes;

use crate::provenance::{self, Headers, Stamp};

/// One record read from the source, in the source's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    /// Source partition (the destination partition too).
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Kafka timestamp (ms since the epoch), reused for the copy.
    pub timestamp: Option<i64>,
    /// The Kafka key.
    pub key: Option<Vec<u8>>,
    /// The Kafka value, copied byte for byte.
    pub payload: Bytes,
    /// The Kafka headers.
    pub headers: Headers,
    /// The `am-source` of the copy (see [`crate::resume`]).
    pub source_ref: String,
    /// For a gateway source: the source gateway's name (from the ref).
    pub gateway: Option<String>,
    /// Payload format; `None` when the source named one this gateway does not know.
    pub format: Option<Format>,
    /// The source topic's namespace.
    pub namespace: String,
    /// Schema reference reported by the source (`am-schema`), if any.
    pub schema: Option<String>,
    /// For a gateway source: the mesh key the gateway reported, if any.
    pub mesh_key: Option<String>,
    /// For a query source: the `am-resume` of the copy (see [`crate::resume::QueryResume`]).
    pub resume: Option<QueryCopy>,
}

/// A record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Destination partition (= source partition).
    pub partition: i32,
    /// Kafka timestamp to produce with.
    pub timestamp: Option<i64>,
    /// Kafka key.
    pub key: Option<Vec<u8>>,
    /// Kafka value.
    pub payload: Bytes,
    /// Kafka headers.
    pub headers: Headers,
}

/// What to do with one source record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Produce to the destination.
    Copy(Outgoing),
    /// Produce to `<destination>.dlq`; the string is the `am-error` reason.
    DeadLetter(Outgoing, String),
    /// Skip: the record already passed this gateway.
    Cycle,
}

/// Converts source records for the gateway called `gateway`. Cheap to share; decoding
/// happens only for records without a usable key.
#[derive(Debug)]
pub struct Converter {
    gateway: String,
    registry: Arc<Registry>,
    decoder: Arc<Decoder>,
    keys_only: Projection,
    mapping: Option<Arc<Mapping>>,
}

impl Converter {
    /// A converter for this gateway's registry and decoder.
    pub fn new(gateway: &str, registry: Arc<Registry>, decoder: Arc<Decoder>) -> Self {
        // Every family's key paths: paths a schema lacks are simply absent in its alerts.
        let paths = registry
            .families()
            .iter()
            .flat_map(|f| f.key_rules().iter().map(|(_, p)| p.clone()))
            .collect::<Vec<_>>();
        Converter {
            gateway: gateway.to_owned(),
            registry,
            decoder,
            keys_only: Projection::new(paths),
            mapping: None,
        }
    }

    /// Translates every copied alert through `mapping` (see [`MirrorSpec::translate`]).
    ///
    /// [`MirrorSpec::translate`]: crate::MirrorSpec::translate
    pub fn with_mapping(mut self, mapping: Option<Arc<Mapping>>) -> Self {
        self.mapping = mapping;
        self
    }

    /// Whether converting `record` needs a decode (the slow path, run off the runtime).
    pub fn needs_decode(&self, record: &SourceRecord) -> bool {
        self.mapping.is_some()
            || self.usable_key(record).is_none()
            || (record.schema.is_none() && record.format == Some(Format::AvroOcf))
    }

    /// Decides what to produce for `record`.
    pub fn convert(&self, record: SourceRecord) -> Outcome {
        let hops = provenance::source_hops(&record.headers, record.gateway.as_deref());
        if provenance::is_cycle(&hops, &self.gateway) {
            return Outcome::Cycle;
        }
        let Some(format) = record.format else {
            return dead_letter(record, "unknown payload format".into());
        };
        let mut record = record;
        let mut format = format;
        let (key, computed_schema) = match (&self.mapping, self.usable_key(&record)) {
            (Some(mapping), kept) => match self.translate(mapping, format, &record) {
                Ok(t) => {
                    record.payload = Bytes::from(t.payload);
                    // The translated payload has a new schema: the source's no longer applies.
                    record.schema = None;
                    format = t.format.unwrap_or(format);
                    (kept.unwrap_or(t.key), t.schema)
                }
                Err(reason) => return dead_letter(record, reason),
            },
            // A keyed record without `am-schema` (a survey's keyed stream, or a keyless one a
            // filtering gateway keyed for us) still gets one.
            (None, Some(key)) if record.schema.is_none() => {
                let schema = self.schema_of(format, &record);
                (key, schema)
            }
            (None, Some(key)) => (key, None),
            (None, None) => match self.extract_key(format, &record) {
                Ok(found) => found,
                Err(reason) => return dead_letter(record, reason),
            },
        };
        let gateway_ref = record.gateway.as_ref().map(|_| record.source_ref.as_str());
        let stamp = Stamp {
            namespace: key.namespace().to_owned(),
            format,
            schema: record.schema.clone().or(computed_schema),
            origin: provenance::origin(&record.headers, gateway_ref),
            hops: hops.into_iter().chain([self.gateway.clone()]).collect(),
            source: record.source_ref.clone(),
        };
        let mut headers = provenance::copy_headers(record.headers, &stamp);
        if let Some(copy) = record.resume {
            copy.stamp(&mut headers);
        }
        let key_bytes = match record.key {
            Some(k) if k == key.to_string().as_bytes() => k,
            _ => key.to_string().into_bytes(),
        };
        Outcome::Copy(Outgoing {
            partition: record.partition,
            timestamp: record.timestamp,
            key: Some(key_bytes),
            payload: record.payload,
            headers,
        })
    }

    /// The source key, or the gateway-reported mesh key, when it is a valid mesh key.
    fn usable_key(&self, record: &SourceRecord) -> Option<MeshKey> {
        let parse = |text: &str| self.registry.parse_key(text).ok();
        record
            .key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(parse)
            .or_else(|| record.mesh_key.as_deref().and_then(parse))
    }

    /// Decodes the whole alert and re-shapes it into the mapping's schema, as an Avro
    /// container with that schema embedded.
    fn translate(
        &self,
        mapping: &Mapping,
        format: Format,
        record: &SourceRecord,
    ) -> Result<Translated, String> {
        let alert = self
            .decoder
            .decode(format, &record.payload)
            .map_err(|e| format!("cannot decode the payload: {e}"))?;
        translate(
            &alert,
            &self.registry,
            Some(mapping),
            Target::Ocf(Codec::Null),
        )
        .map_err(|e| format!("cannot translate: {e}"))
    }

    /// The schema reference of a payload: the registry id of a Confluent record, the writer
    /// schema's fingerprint of an Avro container (read with the key projection, which
    /// decodes little); `None` for JSON or a payload that does not decode.
    fn schema_of(&self, format: Format, record: &SourceRecord) -> Option<String> {
        match format {
            Format::AvroConfluent => confluent::split(&record.payload)
                .ok()
                .map(|(id, _)| id.to_string()),
            Format::AvroOcf => self
                .decoder
                .decode_projected(format, &record.payload, &self.keys_only)
                .ok()?
                .schema()
                .map(|s| format!("{:016x}", s.fingerprint())),
            Format::Json => None,
        }
    }

    /// Decodes only the key paths and derives the mesh key (and, having decoded, the schema).
    fn extract_key(
        &self,
        format: Format,
        record: &SourceRecord,
    ) -> Result<(MeshKey, Option<String>), String> {
        let alert = self
            .decoder
            .decode_projected(format, &record.payload, &self.keys_only)
            .map_err(|e| format!("cannot decode the payload: {e}"))?;
        let key = mesh_key(&alert, &self.registry)
            .map_err(|e| format!("cannot extract a mesh key: {e}"))?;
        let schema = match format {
            Format::AvroConfluent => confluent::split(&record.payload)
                .ok()
                .map(|(id, _)| id.to_string()),
            _ => alert.schema().map(|s| format!("{:016x}", s.fingerprint())),
        };
        Ok((key, schema))
    }
}

/// What marks a copy of a query's row, so recovery finds it: `am-query` names the query
/// (the row's `am-source` may be an alert of another topic, for an archive's query) and
/// `am-resume` says where its stream goes on after the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryCopy {
    /// `am://<gateway>/query:<name>`.
    pub query: String,
    /// The `am-resume` value.
    pub resume: String,
}

impl QueryCopy {
    fn stamp(self, headers: &mut Headers) {
        use alertmesh_alert::headers::{QUERY, RESUME};
        headers.retain(|(k, _)| k != RESUME && k != QUERY);
        headers.push((QUERY.into(), Some(self.query.into_bytes())));
        headers.push((RESUME.into(), Some(self.resume.into_bytes())));
    }
}

fn dead_letter(record: SourceRecord, reason: String) -> Outcome {
    let mut headers = provenance::dead_letter_headers(record.headers, &record.source_ref, &reason);
    if let Some(copy) = record.resume {
        copy.stamp(&mut headers);
    }
    Outcome::DeadLetter(
        Outgoing {
            partition: record.partition,
            timestamp: record.timestamp,
            key: record.key,
            payload: record.payload,
            headers,
        },
        reason,
    )
}

#[cfg(test)]
mod tests;
