//! alertmesh identities and authorization: who is calling, and what they may do.
//!
//! - [`principal`]: the authenticated caller of an RPC.
//! - [`scope`]: scopes carried by tokens (`subscribe:<topic glob>`, `fetch:<topic glob>`,
//!   `mirror`, `admin`) and the topic globs they grant.

pub mod principal;
pub mod scope;

pub use principal::Principal;
pub use scope::{Action, Scope};

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A scope string that is not one of the known forms.
    #[error("invalid scope {input:?}: {reason}; expected subscribe:<topic glob>, fetch:<topic glob>, mirror or admin")]
    InvalidScope { input: String, reason: &'static str },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
