//! The provenance rules of a copied record, pure and I/O-free.
//!
//! - `am-hops`: the source's hops plus this gateway. A record without `am-hops` that came
//!   from a gateway counts as having traversed that gateway (the name in its ref); a raw
//!   Kafka record has traversed none.
//! - Cycle safety: a record whose hops already name this gateway is never copied, so
//!   active-active pairs and rings of mirrors never loop.
//! - `am-origin`: kept across hops; a gateway record without one entered the mesh at the
//!   source ref itself. A raw Kafka record enters the mesh at its copy, whose offset Kafka
//!   assigns only once it is written, so that first copy carries none: a record without
//!   `am-origin` is its own origin, and the next mirror names it.
//! - `am-source`: the exact source record, from which a restarted mirror resumes; for a raw
//!   Kafka record it names the cluster too (`kafka://<bootstrap>/<topic>/<p>/<o>`).
//! - A derived record's provenance (`am-derived-from`, `am-activity`, `am-used`,
//!   `am-agent`, `am-publish-id`) is kept untouched, so a copy still resolves to what the
//!   record was computed from.
//! - Other `am-*` headers are rewritten; every non-`am-*` header is kept, in order.

use alertmesh_alert::{headers, Format};

/// Kafka headers in order: name and value (`None` is a null value).
pub type Headers = Vec<(String, Option<Vec<u8>>)>;

/// The first value of header `name`, as UTF-8 text.
pub fn header<'h>(headers: &'h [(String, Option<Vec<u8>>)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// The gateways a source record has traversed: its `am-hops` when present, else
/// `[source_gateway]` for a record read from a gateway, else none.
pub fn source_hops(
    headers: &[(String, Option<Vec<u8>>)],
    source_gateway: Option<&str>,
) -> Vec<String> {
    match header(headers, headers::HOPS) {
        Some(hops) => hops
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect(),
        None => source_gateway.map(str::to_owned).into_iter().collect(),
    }
}

/// Whether copying a record with these hops into `gateway` would close a cycle.
pub fn is_cycle(hops: &[String], gateway: &str) -> bool {
    hops.iter().any(|h| h == gateway)
}

/// The `am-origin` of the copy: the source's, else the source gateway ref (`None` for a
/// raw Kafka record: it enters the mesh at the copy).
pub fn origin(headers: &[(String, Option<Vec<u8>>)], gateway_ref: Option<&str>) -> Option<String> {
    header(headers, headers::ORIGIN)
        .map(str::to_owned)
        .or_else(|| gateway_ref.map(str::to_owned))
}

/// The mesh headers of one copied record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// `am-ns`.
    pub namespace: String,
    /// `am-format`.
    pub format: Format,
    /// `am-schema`, when known.
    pub schema: Option<String>,
    /// `am-origin`, when the alert entered the mesh before this copy.
    pub origin: Option<String>,
    /// `am-hops`, this gateway included.
    pub hops: Vec<String>,
    /// `am-source`.
    pub source: String,
}

/// The `am-*` headers a copy keeps as they are: a derived record's provenance.
pub const KEPT: [&str; 5] = [
    headers::DERIVED_FROM,
    headers::ACTIVITY,
    headers::USED,
    headers::AGENT,
    headers::PUBLISH_ID,
];

/// The headers of a copy: the source's non-`am-*` headers and its derived-record headers
/// ([`KEPT`]), in order, then the stamp's `am-*` ones.
pub fn copy_headers(source: Headers, stamp: &Stamp) -> Headers {
    let mut out: Headers = source
        .into_iter()
        .filter(|(k, _)| !k.starts_with("am-") || KEPT.contains(&k.as_str()))
        .collect();
    let mut put = |k: &str, v: &str| out.push((k.to_owned(), Some(v.as_bytes().to_vec())));
    put(headers::NAMESPACE, &stamp.namespace);
    put(headers::FORMAT, stamp.format.as_str());
    if let Some(schema) = &stamp.schema {
        put(headers::SCHEMA, schema);
    }
    if let Some(origin) = &stamp.origin {
        put(headers::ORIGIN, origin);
    }
    put(headers::HOPS, &stamp.hops.join(","));
    put(headers::SOURCE, &stamp.source);
    out
}

/// The headers of a dead letter: every source header unchanged (so the record can be
/// inspected and replayed as it was), plus `am-source` and `am-error`.
pub fn dead_letter_headers(source: Headers, source_ref: &str, reason: &str) -> Headers {
    let mut out = source;
    out.retain(|(k, _)| k != headers::SOURCE && k != headers::ERROR);
    out.push((headers::SOURCE.into(), Some(source_ref.as_bytes().to_vec())));
    out.push((headers::ERROR.into(), Some(reason.as_bytes().to_vec())));
    out
}

#[cfg(test)]
mod tests;
