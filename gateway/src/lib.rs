//! The alertmesh gateway: serves the topics of its local Kafka cluster as gRPC streams.
//!
//! Calls run top-down: `server` → `service` → `subscription` / `fetch` / `admin` /
//! `mirrors` / `query` → `tail` / `kafka` / `record` / `cursor`; nothing imports `server`.
//!
//! - [`cli`]: the `alertmesh` command line (server and client commands).
//! - [`config`]: the typed TOML configuration and its validation.
//! - `server`: [`run`], the entry point of `alertmesh serve`: wires the parts, owns the
//!   shutdown token and the task tracker every task runs on.
//! - `service`: the `alertmesh.v1.AlertMesh` gRPC layer, one file per RPC.
//! - `subscription`: `Subscribe`, as a pure plan, its resolution and the running stream.
//! - `fetch`: resolves an alert ref to the one record it names.
//! - `publish`: writes derived records with their provenance, once per publish id.
//! - `admin`: issues, lists and revokes credentials; the advertised auth methods.
//! - `mirrors`: the `[[mirrors]]` jobs as the gateway runs and reports them.
//! - `provenance`: the graph behind an alert ref, walked across gateways.
//! - `query`: `[[queries]]`, database rows streamed as alerts (PostgreSQL).
//! - `archive`: `[[archives]]`, topics kept in PostgreSQL tables exactly once.
//! - `postgres`: connections to `[[databases]]` (password, timeouts, TLS) for both.
//! - `catalog`: the exposed topics, their descriptions and partitions.
//! - `tail`: the shared live tail per topic that caught-up subscribers read from.
//! - `kafka`: librdkafka clients; its `cluster` is the handle for look-ups and the one
//!   place readers start, its `reader` the reader threads.
//! - `cursor`: durable cursors in a compacted Kafka topic.
//! - `record`: records as read from Kafka, written into arenas as wire bytes.
//! - `auth`: token and mutual-TLS authentication, scope checks, stream revocation.
//! - `creds`: issued credentials and revocations in Kafka.
//! - `tls`: TLS on both ports.
//! - `http`: the side port: `/metrics`, `/healthz`, `/readyz`, the JWKS, the schema
//!   registry API.
//! - `registry`: Confluent schema ids: learned from registries, served to clients.
//! - `metrics`: what is counted, for Prometheus.
//! - `error`: [`Error`], and its one mapping to gRPC status codes.

pub mod cli;
pub mod config;

mod admin;
mod archive;
mod auth;
mod catalog;
mod conn_guard;
mod creds;
mod cursor;
mod error;
mod fetch;
mod http;
mod kafka;
mod listen;
mod metrics;
mod mirrors;
mod postgres;
mod provenance;
mod publish;
mod query;
mod record;
mod registry;
mod server;
mod service;
mod subscription;
mod tail;
mod tls;

pub use config::Config;
pub use error::{Error, Result};
pub use server::run;
