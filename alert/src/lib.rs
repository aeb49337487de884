//! The alertmesh alert model: pure, I/O-free types shared by every part of the mesh.
//!
//! - [`naming`]: the rules for topic, gateway and mirror names, defined once.
//! - [`alert_ref`]: `am://<gateway>/<topic>/<partition>/<offset>` provenance links.
//! - [`mesh_key`](mod@mesh_key): `<namespace>:<id>` record keys.
//! - [`headers`]: the `am-*` Kafka header conventions and payload formats.
//! - [`namespace`]: the namespace registry (`namespaces.toml`): id types, patterns, and
//!   where each alert family keeps its object id and position.
//! - [`schema`]: writer schemas prepared once and cached; split schema files combined.
//! - [`codec`]: payload codecs (Avro OCF, Confluent wire, bare Avro, JSON), [`Decoder`]
//!   and [`encode`].
//! - [`json`]: alert JSON with exact int64, explicit NaN/Infinity and optional cutouts.
//! - [`json_schema`]: the basic JSON Schema keywords published JSON payloads are checked against.
//! - [`filter`]: composable filters: object ids, cones, parsed field predicates.
//! - [`translate`](mod@translate): re-keying, named schema mappings (Avro resolution), format conversion.
//! - [`path`]: dotted field paths into decoded alerts and their schemas.
//! - [`projection`]: projected decoding: only the fields a filter and re-keying need,
//!   everything else skipped on the wire.
//! - [`echo`]: untrusted text in messages, escaped and capped.

pub mod alert_ref;
pub mod codec;
pub mod echo;
pub mod filter;
pub mod headers;
pub mod json;
pub mod json_schema;
pub mod mesh_key;
pub mod namespace;
pub mod naming;
pub mod path;
pub mod projection;
pub mod schema;
pub mod translate;

pub use alert_ref::AlertRef;
/// The Avro library this crate's values and schemas come from.
pub use apache_avro;
pub use codec::{
    decode_bare, decode_bare_projected, encode, Alert, Decoder, SchemaDir, SchemaResolver, Target,
};
pub use filter::{Cone, Filter, Predicate, Subject};
pub use headers::Format;
pub use json::{BytesMode, JsonOptions, NonFinite};
pub use mesh_key::MeshKey;
pub use namespace::{Family, IdType, Namespace, Registry};
pub use path::FieldPath;
pub use projection::Projection;
pub use schema::{limit_avro_allocations, SchemaCache, WriterSchema, MAX_AVRO_ITEMS};
pub use translate::{mesh_key, translate, Mapping, Mappings, Translated};

use echo::quoted;

/// Everything that can go wrong when reading alert-model values. Parts taken from the
/// input are echoed through [`echo`]: escaped and capped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// An alert ref that does not have the shape `am://<gateway>/<topic>/<partition>/<offset>`.
    #[error(
        "invalid alert ref {}: {reason}; expected am://<gateway>/<topic>/<partition>/<offset>",
        quoted(input)
    )]
    InvalidRef { input: String, reason: &'static str },
    /// A topic, gateway or mirror name that breaks its rule in [`naming`].
    #[error("invalid {kind} {}: {reason}", quoted(input))]
    InvalidName {
        kind: &'static str,
        input: String,
        reason: String,
    },
    /// A mesh key that does not have the shape `<namespace>:<id>`.
    #[error(
        "invalid mesh key {}: {reason}; expected <namespace>:<id>, e.g. ZTF:ZTF18aabcdef",
        quoted(input)
    )]
    InvalidKey { input: String, reason: &'static str },
    /// A payload format name that is not one of the known formats.
    #[error("unknown format {}; expected one of avro-ocf, avro-confluent, json", quoted(.0))]
    UnknownFormat(String),
    /// A dotted field path that is not well formed.
    #[error(
        "invalid field path {}; expected dotted field names like candidate.magpsf",
        quoted(path)
    )]
    InvalidPath { path: String },
    /// A field path that names no field of the schema.
    #[error("unknown field {}", quoted(field))]
    UnknownField { field: String },
    /// A namespace registry file that is not valid.
    #[error("invalid namespace registry: {reason}")]
    Registry { reason: String },
    /// A mesh key whose namespace is not registered.
    #[error("unknown namespace {}; register it in the gateway's namespaces", quoted(.0))]
    UnknownNamespace(String),
    /// An id that does not fit its namespace.
    #[error(
        "invalid id {} in namespace {}; expected {expected}",
        quoted(id),
        echo::shown(namespace, echo::MAX_ECHO_CHARS)
    )]
    InvalidId {
        namespace: String,
        id: String,
        expected: String,
    },
    /// An alert in which none of the family's id paths holds an id.
    #[error("no object id in {family} alert; tried {tried}")]
    NoKey { family: String, tried: String },
    /// A payload that cannot be decoded in its format.
    #[error("malformed {format} payload: {reason}")]
    Decode {
        format: &'static str,
        reason: String,
    },
    /// A schema that cannot be parsed or prepared.
    #[error("invalid avro schema: {reason}")]
    Schema { reason: String },
    /// A Confluent schema id that the resolver does not know.
    #[error("unknown schema id {0}; LSST ids are major*100+minor, e.g. 701, 900, 1100")]
    UnknownSchemaId(u32),
    /// A value that cannot be encoded in the requested format.
    #[error("cannot encode alert: {reason}")]
    Encode { reason: String },
    /// A file the caller named could not be read.
    #[error("cannot read {path}: {reason}")]
    Io { path: String, reason: String },
    /// Filter text that does not parse.
    #[error(
        "invalid filter at byte {offset} (column {column}): expected {expected}, found {found}"
    )]
    FilterSyntax {
        offset: usize,
        column: usize,
        expected: String,
        found: String,
    },
    /// A predicate comparing a field with a literal of the wrong kind.
    #[error("invalid filter on field {}: {reason}", quoted(field))]
    FilterType { field: String, reason: String },
    /// A cone with out-of-range parameters.
    #[error("invalid cone: {reason}")]
    InvalidCone { reason: String },
    /// An alert that cannot be translated (no family, mapping mismatch).
    #[error("cannot translate alert: {reason}")]
    Translate { reason: String },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
