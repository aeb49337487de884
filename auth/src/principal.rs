//! The caller of an RPC, as established by authentication.

use crate::scope::{Action, Scope};

/// An authenticated (or deliberately anonymous) caller and what it is granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable name: a token's `sub`, or `anonymous` on a gateway without authentication.
    pub name: String,
    /// What the caller may do.
    pub scopes: Vec<Scope>,
}

impl Principal {
    /// The caller on a gateway that requires no authentication: it may read every topic.
    pub fn anonymous() -> Self {
        Principal {
            name: "anonymous".to_owned(),
            scopes: vec![
                Scope::Topic(Action::Subscribe, "*".to_owned()),
                Scope::Topic(Action::Fetch, "*".to_owned()),
            ],
        }
    }

    /// Whether any scope allows `action` on `topic`.
    pub fn may(&self, action: Action, topic: &str) -> bool {
        self.scopes.iter().any(|s| s.allows(action, topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_reads_everything_but_administers_nothing() {
        let p = Principal::anonymous();
        assert!(p.may(Action::Subscribe, "ztf.alerts"));
        assert!(p.may(Action::Fetch, "lsst.alerts"));
        assert!(!p.scopes.contains(&Scope::Admin));
    }
}
