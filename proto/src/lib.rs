//! The `alertmesh.v1` gRPC contract: messages, the `AlertMesh` server trait and client.
//!
//! The source of truth is `proto/alertmesh/v1/alertmesh.proto`; this crate only compiles
//! it. [`FILE_DESCRIPTOR_PROTO`] carries the raw `.proto` text for tools that want it.

/// Generated code for package `alertmesh.v1`.
#[allow(unreachable_pub, missing_debug_implementations, clippy::all)]
pub mod v1 {
    tonic::include_proto!("alertmesh.v1");

    pub use crate::batch::{AlertBatch, Framed, QueryBatch};
}

mod batch;
pub mod bound;
pub mod codec;
pub mod tags;
pub mod view;

/// The `.proto` source this crate was built from.
pub const FILE_DESCRIPTOR_PROTO: &str = include_str!("../proto/alertmesh/v1/alertmesh.proto");

pub use prost_types::Timestamp;
