//! How Rust programs use an alertmesh mesh: the `alertmesh` command line, mirror jobs and
//! the end-to-end tests all connect to gateways through this crate.
//!
//! - [`options`]: [`Options`], the plain settings of a connection (a bearer [`Token`], a
//!   CA for `https://` gateways, a client certificate for mutual TLS, a connect timeout).
//! - [`gateway`]: [`Gateway`], one gateway URL with the options meant for it. Credentials
//!   are bound to it: a token only ever goes to the URL it was configured for, and for a
//!   token that names its gateway (the JWT `aud` claim) only to that gateway
//!   ([`Gateway::for_name`]); addresses learned from other gateways get none
//!   ([`Gateway::discovered`]).
//! - [`client`]: [`Client`], a connection: [`describe`](Client::describe),
//!   [`list_topics`](Client::list_topics), [`fetch`](Client::fetch),
//!   [`commit_cursor`](Client::commit_cursor), and the generated gRPC client for the rest.
//! - [`subscription`]: [`Subscription`], a `Subscribe` stream that reconnects after a
//!   gateway restart or a cut connection and resumes from the positions it has delivered,
//!   without gaps or repeats; [`Subscription::into_stream`] makes it a `Stream`.
//! - Replicas: several processes of one gateway (same name and config, same Kafka cluster)
//!   serve any subscription. [`connect_any`] connects to the first that answers and
//!   [`Client::subscribe_with_replicas`] moves a stream to another replica when its own
//!   dies, resuming after the last delivered alert.
//! - [`Error`]: what can go wrong; no message ever holds the token.
//!
//! # Example
//!
//! Stream a topic from the oldest record, surviving gateway restarts, and resolve the
//! first alert's ref:
//!
//! ```no_run
//! use alertmesh_client::{subscription, v1, Gateway, Options, Token};
//!
//! # async fn run() -> alertmesh_client::Result<()> {
//! let options = Options {
//!     token: Some(Token::from_file("alice.jwt")?),
//!     ca: Some("mesh-ca.pem".into()),
//!     ..Options::default()
//! };
//! let lasair = Gateway::new("https://lasair.example.org:50051", &options)?;
//! let mut client = lasair.connect().await?;
//! println!("connected to {}", client.describe().await?.name);
//!
//! let request = v1::SubscribeRequest {
//!     topic: "ztf.alerts".into(),
//!     start: Some(subscription::earliest()),
//!     ..Default::default()
//! };
//! let mut alerts = client.subscribe(request).await?;
//! while let Some(alert) = alerts.next().await? {
//!     println!("{} {}", alert.r#ref, alert.mesh_key);
//!     let again = client.fetch(&alert.r#ref).await?;
//!     assert_eq!(again.payload, alert.payload);
//!     break;
//! }
//! # Ok(())
//! # }
//! ```

pub mod client;
mod connect;
mod error;
pub mod gateway;
pub mod options;
pub mod subscription;

pub use alertmesh_proto::v1;
pub use client::{Bearer, Client, Grpc, ViewStream};
pub use error::{status_line, Error, Result};
pub use gateway::{check_replica_urls, connect_any, Gateway, MAX_REPLICA_URLS};
pub use options::{Options, Token};
pub use subscription::{AlertStream, Backoff, Batch, Subscription};
