//! The caller of an RPC, as established by authentication.

use crate::scope::{Action, Scope};
use crate::{Error, Result};

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

    /// Like [`Principal::may`], as an error that names what is missing.
    pub fn require(&self, action: Action, topic: &str) -> Result<()> {
        if self.may(action, topic) {
            return Ok(());
        }
        Err(Error::NotPermitted {
            principal: crate::token::shown(&self.name),
            needed: format!("{action}:{}", crate::token::shown(topic)),
        })
    }

    /// Whether the caller holds `scope` itself (for `mirror` and `admin`).
    pub fn has(&self, scope: &Scope) -> bool {
        self.scopes.contains(scope)
    }

    /// Like [`Principal::has`], as an error that names what is missing.
    pub fn require_scope(&self, scope: &Scope) -> Result<()> {
        if self.has(scope) {
            return Ok(());
        }
        Err(Error::NotPermitted {
            principal: crate::token::shown(&self.name),
            needed: scope.to_string(),
        })
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

    #[test]
    fn missing_scope_is_an_error_naming_what_to_ask_for() {
        let p = Principal::anonymous();
        assert!(p.require(Action::Subscribe, "ztf.alerts").is_ok());
        let err = p.require_scope(&Scope::Admin).unwrap_err().to_string();
        assert_eq!(
            err,
            "anonymous may not do this: it needs the scope admin; ask the gateway admin for a token with it"
        );
    }
}
