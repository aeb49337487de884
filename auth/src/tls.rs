//! Mesh TLS with rustls (aws-lc-rs provider, ALPN `h2`).
//!
//! - [`creds`]: a development mesh CA and the certificates it signs (`creds init`).
//! - [`config`]: `rustls::ServerConfig` (client certificates required when a client CA is
//!   given) and `rustls::ClientConfig` (optional client certificate).
//! - [`pem`]: loading PEM certificates and keys, for rustls or for tonic's PEM `Identity`.
//! - [`identity`]: the identity in a peer certificate (first DNS SAN, else CN), to match
//!   against a token's `sub`.

pub mod config;
pub mod creds;
pub mod identity;
pub mod pem;

pub use config::{client_config, crypto_provider, server_config, server_config_from_files};
pub use creds::{creds_init, creds_issue, CertifiedPem, CredsPaths, MeshCa};
pub use identity::{check_peer_identity, peer_identity};
pub use pem::{
    certs_from_pem, key_from_pem, load_certs, load_key, load_pem_certs, load_pem_identity,
};
pub use rustls::pki_types::{CertificateDer, PrivateKeyDer};
