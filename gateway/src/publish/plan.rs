//! A `Publish` batch checked and turned into Kafka records, with no I/O: every record's
//! key, payload, provenance and size, so that a bad record refuses the whole batch before
//! anything is written.

use std::collections::HashMap;

use alertmesh_alert::headers;
use alertmesh_alert::{AlertRef, Decoder, Format, MeshKey, Registry};
use alertmesh_proto::v1;

use crate::config::{TopicConfig, TopicSchema};
use crate::error::{Error, Result};
use crate::metrics::PublishRejection;

/// Publish ids are short and printable, so they can be logged and typed back.
const MAX_PUBLISH_ID: usize = 200;
/// A `used` entry names a thing (`catalog:gaia-dr3/4295806720`), not a document.
const MAX_USED: usize = 1000;

/// What the checks need besides the records.
#[derive(Debug)]
pub(crate) struct Context<'a> {
    pub(crate) gateway: &'a str,
    pub(crate) topic: &'a TopicConfig,
    pub(crate) registry: &'a Registry,
    pub(crate) decoder: &'a Decoder,
    /// `am-agent`: JSON `{"sub": .., "iss": ..}` of the publisher.
    pub(crate) agent: &'a str,
    pub(crate) max_record_bytes: usize,
}

/// One record, ready to write.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Planned {
    pub(crate) key: String,
    pub(crate) payload: bytes::Bytes,
    pub(crate) headers: Vec<(&'static str, Vec<u8>)>,
    /// What identifies a retry: the agent and the publish id (see [`id_key`]).
    pub(crate) id_key: String,
}

/// The dedup key of a publish id: the agent's JSON (which has no raw newline) and the id.
pub(crate) fn id_key(agent: &str, publish_id: &str) -> String {
    format!("{agent}\n{publish_id}")
}

/// The `am-agent` header of a publisher.
pub(crate) fn agent(sub: &str, iss: &str) -> String {
    serde_json::json!({ "sub": sub, "iss": iss }).to_string()
}

/// Checks every record of a batch; the first problem refuses the batch, naming the record.
pub(crate) fn plan(ctx: &Context<'_>, records: &[v1::PublishRecord]) -> Result<Vec<Planned>> {
    if records.is_empty() {
        return Err(Error::InvalidArgument(
            "records: empty; a publish carries at least one record".into(),
        ));
    }
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let planned =
            record(ctx, r).map_err(|e| Error::InvalidArgument(format!("records[{i}]{e}")))?;
        if let Some(first) = ids.insert(r.publish_id.as_str(), i) {
            return Err(Error::InvalidArgument(format!(
                "records[{i}].publish_id: {:?} is also the publish id of records[{first}]; \
                 each record of a batch needs its own",
                r.publish_id
            )));
        }
        out.push(planned);
    }
    Ok(out)
}

/// The reason of a batch `plan` refused, from the field its message names
/// (`records[3].payload: ...`).
pub(crate) fn rejection(message: &str) -> PublishRejection {
    let field = message
        .strip_prefix("records[")
        .and_then(|m| m.split_once(']'))
        .map_or("", |(_, rest)| rest);
    let name = field.strip_prefix('.').map(|f| {
        f.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap_or("")
    });
    match name {
        Some("key") => PublishRejection::key,
        Some("payload") => PublishRejection::payload,
        Some("derived_from") => PublishRejection::derived_from,
        Some("activity") => PublishRejection::activity,
        Some("used") => PublishRejection::used,
        Some("publish_id") => PublishRejection::publish_id,
        _ if field.starts_with(": ") => PublishRejection::size,
        _ => PublishRejection::invalid,
    }
}

/// One record; the error starts with the field (`.payload: ...`).
fn record(ctx: &Context<'_>, r: &v1::PublishRecord) -> Result<Planned, String> {
    let id = &r.publish_id;
    if id.is_empty() || id.chars().count() > MAX_PUBLISH_ID || id.chars().any(char::is_control) {
        return Err(format!(
            ".publish_id: must be 1-{MAX_PUBLISH_ID} characters without control characters; \
             choose one per record and reuse it when retrying"
        ));
    }
    let key = mesh_key(ctx.registry, &r.key).map_err(|e| format!(".key: {e}"))?;
    let (format, schema) = payload(ctx, &r.payload).map_err(|e| format!(".payload: {e}"))?;
    if r.derived_from.is_empty() {
        return Err(".derived_from: empty; name at least one alert ref \
                    am://<gateway>/<topic>/<partition>/<offset> the record was computed from"
            .into());
    }
    // What provenance shows of one record (crate::provenance::MAX_LINKS_PER_RECORD):
    // more would be written and never shown.
    let most = crate::provenance::MAX_LINKS_PER_RECORD;
    if r.derived_from.len() > most || r.used.len() > most {
        return Err(format!(
            ".derived_from and .used: at most {most} entries each (got {} and {})",
            r.derived_from.len(),
            r.used.len()
        ));
    }
    for (j, d) in r.derived_from.iter().enumerate() {
        d.parse::<AlertRef>()
            .map_err(|e| format!(".derived_from[{j}]: {e}"))?;
    }
    let activity = activity(r.activity.as_ref()).map_err(|e| format!(".activity{e}"))?;
    for (j, u) in r.used.iter().enumerate() {
        if u.is_empty() || u.chars().count() > MAX_USED || u.chars().any(char::is_control) {
            return Err(format!(
                ".used[{j}]: must be 1-{MAX_USED} characters without control characters, \
                 e.g. catalog:gaia-dr3/4295806720"
            ));
        }
    }
    let mut hs: Vec<(&'static str, Vec<u8>)> = vec![
        (headers::NAMESPACE, key.namespace().as_bytes().to_vec()),
        (headers::FORMAT, format.as_str().as_bytes().to_vec()),
    ];
    if let Some(s) = schema {
        hs.push((headers::SCHEMA, s.into_bytes()));
    }
    // No am-origin: a published record enters the mesh here, and its own ref is known
    // only once Kafka has written it. Absent means "this record" (mirrors then set the
    // copy's am-origin to the source record's ref).
    hs.push((headers::HOPS, ctx.gateway.as_bytes().to_vec()));
    hs.push((headers::DERIVED_FROM, r.derived_from.join(",").into_bytes()));
    hs.push((headers::ACTIVITY, activity.into_bytes()));
    if !r.used.is_empty() {
        let used = serde_json::to_string(&r.used).map_err(|e| format!(".used: {e}"))?;
        hs.push((headers::USED, used.into_bytes()));
    }
    hs.push((headers::AGENT, ctx.agent.as_bytes().to_vec()));
    hs.push((headers::PUBLISH_ID, id.as_bytes().to_vec()));
    let key = key.to_string();
    let header_bytes: usize = hs.iter().map(|(k, v)| k.len() + v.len()).sum();
    let size = key.len() + r.payload.len() + header_bytes;
    if size > ctx.max_record_bytes {
        return Err(format!(
            ": {size} bytes (payload {}, headers {header_bytes}) is more than \
             limits.max_publish_record_bytes ({}); publish a smaller record",
            r.payload.len(),
            ctx.max_record_bytes
        ));
    }
    Ok(Planned {
        key,
        payload: r.payload.clone(),
        headers: hs,
        id_key: id_key(ctx.agent, id),
    })
}

/// The key, split at a registered namespace.
fn mesh_key(registry: &Registry, key: &str) -> Result<MeshKey, String> {
    let names: Vec<&str> = registry.namespaces().iter().map(|n| n.name()).collect();
    match MeshKey::parse(key, names.iter().copied()) {
        Ok(k) => Ok(k),
        Err(e) => match key.split_once(':') {
            Some((ns, id)) if !ns.is_empty() && !id.is_empty() => Err(format!(
                "namespace {} is not registered on this gateway; registered: {}",
                alertmesh_alert::echo::quoted(ns),
                names.join(", ")
            )),
            _ => Err(e.to_string()),
        },
    }
}

/// Checks the payload against the topic's format and schema; answers the format and the
/// `am-schema` header.
fn payload(ctx: &Context<'_>, payload: &[u8]) -> Result<(Format, Option<String>), String> {
    let topic = ctx.topic;
    match topic.format {
        Format::Json => {
            let doc: serde_json::Value =
                serde_json::from_slice(payload).map_err(|e| format!("not a JSON document: {e}"))?;
            if !doc.is_object() {
                return Err(format!(
                    "topic {:?} holds JSON objects; the payload is not one",
                    topic.name
                ));
            }
            match &topic.schema {
                Some(TopicSchema::Json {
                    schema,
                    fingerprint,
                    ..
                }) => {
                    schema.check(&doc)?;
                    Ok((Format::Json, Some(fingerprint.clone())))
                }
                _ => Ok((Format::Json, None)),
            }
        }
        format => {
            let alert = ctx
                .decoder
                .decode(format, payload)
                .map_err(|e| format!("cannot be decoded as {format}: {e}"))?;
            let written = match format {
                Format::AvroConfluent => payload
                    .get(1..5)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(|b| u32::from_be_bytes(b).to_string()),
                _ => alert.schema().map(|s| format!("{:016x}", s.fingerprint())),
            };
            if let Some(TopicSchema::Avro(declared)) = &topic.schema {
                let same = alert
                    .schema()
                    .is_some_and(|s| s.fingerprint() == declared.fingerprint());
                if !same {
                    alert
                        .into_value()
                        .resolve(declared.schema())
                        .map_err(|e| format!("does not match the topic's schema: {e}"))?;
                }
            }
            Ok((format, written))
        }
    }
}

/// `am-activity`: compact JSON `{"name":..,"version":..,"parameters":{..}}`.
fn activity(a: Option<&v1::Activity>) -> Result<String, String> {
    let a = a.ok_or_else(|| {
        ": missing; say what produced the record (name, version, parameters)".to_owned()
    })?;
    if a.name.trim().is_empty() || a.name.chars().any(char::is_control) {
        return Err(".name: empty or has control characters; name the algorithm".into());
    }
    if a.version.chars().any(char::is_control) {
        return Err(".version: has control characters".into());
    }
    let parameters: serde_json::Value = if a.parameters_json.trim().is_empty() {
        serde_json::json!({})
    } else {
        serde_json::from_str(&a.parameters_json)
            .map_err(|e| format!(".parameters_json: not JSON: {e}"))?
    };
    if !parameters.is_object() {
        return Err(".parameters_json: must be a JSON object".into());
    }
    Ok(serde_json::json!({
        "name": a.name,
        "version": a.version,
        "parameters": parameters,
    })
    .to_string())
}

/// The partition of a key: Kafka's default partitioner (murmur2 of the key), so the
/// records of one object share a partition with those other producers write, and a retry
/// of the same record meets its first write there.
pub(crate) fn partition(key: &str, partitions: usize) -> usize {
    if partitions == 0 {
        return 0;
    }
    (murmur2(key.as_bytes()) & 0x7fff_ffff) as usize % partitions
}

fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ (data.len() as u32);
    let chunks = data.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

#[cfg(test)]
mod tests;
