//! Token scopes and the topic globs they grant.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// A per-topic action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Open `Subscribe` streams and commit cursors on a topic.
    Subscribe,
    /// Resolve alert refs of a topic with `Fetch`.
    Fetch,
    /// Write derived records to a publishable topic with `Publish`.
    Publish,
    /// Stream a declared database query with `Query`, and fetch its rows' refs.
    Query,
}

/// One grant carried by a token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `subscribe:<glob>`, `fetch:<glob>` or `publish:<glob>`.
    Topic(Action, String),
    /// `mirror`: a peer gateway that may mirror streams.
    Mirror,
    /// `admin`: credential and peer management.
    Admin,
}

impl Scope {
    /// Whether this scope allows `action` on `topic`.
    pub fn allows(&self, action: Action, topic: &str) -> bool {
        match self {
            Scope::Topic(a, glob) => *a == action && glob_matches(glob, topic),
            Scope::Mirror | Scope::Admin => false,
        }
    }
}

impl FromStr for Scope {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        let bad = |reason| Error::InvalidScope {
            input: input.chars().take(200).collect(),
            reason,
        };
        match input {
            "mirror" => return Ok(Scope::Mirror),
            "admin" => return Ok(Scope::Admin),
            _ => {}
        }
        let (action, glob) = input.split_once(':').ok_or_else(|| bad("unknown scope"))?;
        let action = match action {
            "subscribe" => Action::Subscribe,
            "fetch" => Action::Fetch,
            "publish" => Action::Publish,
            "query" => Action::Query,
            _ => return Err(bad("unknown action")),
        };
        let glob_ok = !glob.is_empty()
            && glob
                .chars()
                .all(|c| c == '*' || c == '?' || crate_name_char(c));
        if !glob_ok {
            return Err(bad(
                "the topic glob is empty or has characters other than [a-zA-Z0-9._-*?]",
            ));
        }
        Ok(Scope::Topic(action, glob.to_owned()))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Topic(action, g) => write!(f, "{action}:{g}"),
            Scope::Mirror => f.write_str("mirror"),
            Scope::Admin => f.write_str("admin"),
        }
    }
}

/// Scopes are stored (credential records) as their string form.
impl serde::Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Subscribe => "subscribe",
            Action::Fetch => "fetch",
            Action::Publish => "publish",
            Action::Query => "query",
        })
    }
}

fn crate_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Matches `*` (any run, including empty) and `?` (one character) against a topic name.
pub fn glob_matches(glob: &str, name: &str) -> bool {
    let (g, n): (Vec<char>, Vec<char>) = (glob.chars().collect(), name.chars().collect());
    // Iterative wildcard match with one backtrack point: linear in practice, no recursion.
    let (mut gi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if gi < g.len() && (g[gi] == '?' || g[gi] == n[ni]) {
            gi += 1;
            ni += 1;
        } else if gi < g.len() && g[gi] == '*' {
            star = Some((gi, ni));
            gi += 1;
        } else if let Some((sg, sn)) = star {
            gi = sg + 1;
            ni = sn + 1;
            star = Some((sg, sn + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_topic_names() {
        assert!(glob_matches("*", "ztf.alerts"));
        assert!(glob_matches("ztf.*", "ztf.alerts"));
        assert!(!glob_matches("ztf.*", "lsst.alerts"));
        assert!(glob_matches("*.alerts", "lsst.alerts"));
        assert!(glob_matches("ztf.?lerts", "ztf.alerts"));
        assert!(glob_matches("z*f*s", "ztf.alerts"));
        assert!(!glob_matches("ztf", "ztf.alerts"));
        assert!(glob_matches("ztf.alerts", "ztf.alerts"));
    }

    #[test]
    fn scopes_parse_and_grant_per_action() {
        let s: Scope = "subscribe:ztf.*".parse().unwrap();
        assert!(s.allows(Action::Subscribe, "ztf.alerts"));
        assert!(!s.allows(Action::Fetch, "ztf.alerts"));
        let p: Scope = "publish:fink.*".parse().unwrap();
        assert!(p.allows(Action::Publish, "fink.class"));
        assert!(!p.allows(Action::Subscribe, "fink.class"));
        assert!(!s.allows(Action::Publish, "ztf.alerts"));
        assert_eq!(p.to_string(), "publish:fink.*");
        assert_eq!(s.to_string(), "subscribe:ztf.*");
        assert_eq!("admin".parse::<Scope>().unwrap(), Scope::Admin);
        for bad in ["read:ztf", "subscribe:", "subscribe:a/b", "root"] {
            let err = bad.parse::<Scope>().unwrap_err().to_string();
            assert!(err.contains("expected subscribe:<topic glob>"), "{err}");
        }
    }
}
