//! End-to-end harness for alertmesh: real Tansu brokers and real `alertmesh` gateway
//! processes on 127.0.0.1, each on free ports, each killed and reaped on drop.
//!
//! Parts:
//! - [`apache`]: Apache Kafka (KRaft) from its jars, selected by `ALERTMESH_TEST_KAFKA=apache`.
//! - [`auth`]: a development PKI, gateways with `[auth]` and `[tls]`, TLS clients with
//!   tokens, hand-made JWTs.
//! - [`bench`](mod@bench): measurements for the `bench_subscribe` binary.
//! - [`process`]: owned child processes (stderr to a file, kill on drop), free ports, polling,
//!   resident memory.
//! - [`h2c`]: hand-made gRPC requests over cleartext HTTP/2, for hostile clients.
//! - [`broker`]: a Tansu or Apache Kafka broker, topic creation and producing records.
//! - [`gateway`]: a gateway config, the `alertmesh serve` process, its client and metrics,
//!   restart, SIGTERM and the CLI.
//! - [`metrics`]: HTTP GET and a Prometheus text parser.
//! - [`fixtures`]: the 45 real ZTF alerts and synthetic records.
//! - [`cli`]: the `alertmesh` binary's path and one-shot CLI runs.
//! - [`client`]: Subscribe request builders, stream collection, alert checks.
//! - [`mesh`]: the `Mesh::new("lasair").topic(..).ztf_alerts().start()` builder.
//! - [`kafka`]: direct Kafka reads, the baseline for the benchmark.
//! - [`registry`]: a tiny read-only Confluent schema registry serving the LSST fixture
//!   schemas by id, that can go down and come back.
//! - [`netns`]: a network namespace and veth pair, to cut a gateway off from its peers.
//! - [`postgres`]: a fresh PostgreSQL cluster per test, and `psql` as the ground truth.

pub mod apache;
pub mod auth;
pub mod bench;
pub mod bench_mirror;
pub mod bench_mm2;
pub mod broker;
pub mod cli;
pub mod client;
pub mod fixtures;
pub mod gateway;
pub mod h2c;
pub mod kafka;
pub mod mesh;
pub mod metrics;
pub mod netns;
pub mod postgres;
pub mod process;
pub mod registry;

pub use broker::{Broker, Produced, Record};
pub use gateway::{Gateway, GatewaySpec, Ready};
pub use mesh::{Mesh, Site};
pub use metrics::Metrics;
pub use postgres::Postgres;

/// The fixture topic used by most tests.
pub const ZTF_TOPIC: &str = "ztf.alerts";

/// Generous deadline for anything a test waits on (a noisy 2-core machine).
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(20);
