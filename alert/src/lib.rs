//! The alertmesh alert model: pure, I/O-free types shared by every part of the mesh.
//!
//! - [`alert_ref`]: `am://<gateway>/<topic>/<partition>/<offset>` provenance links.
//! - [`mesh_key`]: `<namespace>:<id>` record keys.
//! - [`headers`]: the `am-*` Kafka header conventions and payload formats.

pub mod alert_ref;
pub mod headers;
pub mod mesh_key;

pub use alert_ref::AlertRef;
pub use headers::Format;
pub use mesh_key::MeshKey;

/// Everything that can go wrong when reading alert-model values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// An alert ref that does not have the shape `am://<gateway>/<topic>/<partition>/<offset>`.
    #[error("invalid alert ref {input:?}: {reason}; expected am://<gateway>/<topic>/<partition>/<offset>")]
    InvalidRef { input: String, reason: &'static str },
    /// A mesh key that does not have the shape `<namespace>:<id>`.
    #[error(
        "invalid mesh key {input:?}: {reason}; expected <namespace>:<id>, e.g. ZTF:ZTF18aabcdef"
    )]
    InvalidKey { input: String, reason: &'static str },
    /// A payload format name that is not one of the known formats.
    #[error("unknown format {0:?}; expected one of avro-ocf, avro-confluent, json")]
    UnknownFormat(String),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
