//! Mesh keys: `<namespace>:<id>`, the Kafka key of every alert inside the mesh.
//!
//! Namespaces may themselves contain `:` (`LSST:dia`, `LSST:ss`), and ids may too, so a
//! key is split at the longest registered namespace prefix, not at the first colon.

use std::fmt;

use crate::{Error, Result};

/// A namespaced object id, e.g. `ZTF:ZTF18aabcdef` or `LSST:dia:170587115523932323`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MeshKey {
    namespace: String,
    id: String,
}

impl MeshKey {
    /// Builds a key from a namespace and an id; neither may be empty.
    pub fn new(namespace: &str, id: &str) -> Result<Self> {
        let joined = || format!("{namespace}:{id}");
        if namespace.is_empty() || !namespace.chars().all(is_namespace_char) {
            return Err(Error::InvalidKey {
                input: joined(),
                reason: "the namespace is empty or has characters other than [A-Za-z0-9:_.-]",
            });
        }
        if id.is_empty() || id.chars().any(char::is_control) {
            return Err(Error::InvalidKey {
                input: joined(),
                reason: "the id is empty or has control characters",
            });
        }
        Ok(MeshKey {
            namespace: namespace.to_owned(),
            id: id.to_owned(),
        })
    }

    /// Parses `input` against the known namespaces, choosing the longest that matches.
    pub fn parse<'a>(input: &str, namespaces: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let best = namespaces
            .into_iter()
            .filter(|ns| {
                input.len() > ns.len() + 1
                    && input.starts_with(ns)
                    && input.as_bytes()[ns.len()] == b':'
            })
            .max_by_key(|ns| ns.len());
        match best {
            Some(ns) => MeshKey::new(ns, &input[ns.len() + 1..]),
            None => Err(Error::InvalidKey {
                input: input.chars().take(200).collect(),
                reason: "it starts with no registered namespace",
            }),
        }
    }

    /// The namespace part, e.g. `LSST:dia`.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The id part, e.g. `170587115523932323`.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for MeshKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.namespace, self.id)
    }
}

fn is_namespace_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: [&str; 4] = ["ZTF", "LSST:dia", "LSST:ss", "LS4"];

    #[test]
    fn longest_namespace_wins() {
        let k = MeshKey::parse("LSST:dia:170587115523932323", NS).unwrap();
        assert_eq!(k.namespace(), "LSST:dia");
        assert_eq!(k.id(), "170587115523932323");
        assert_eq!(k.to_string(), "LSST:dia:170587115523932323");
        let k = MeshKey::parse("ZTF:ZTF18aabcdef", NS).unwrap();
        assert_eq!((k.namespace(), k.id()), ("ZTF", "ZTF18aabcdef"));
    }

    #[test]
    fn unknown_or_empty_parts_are_rejected() {
        assert!(MeshKey::parse("LSST:170587115523932323", NS).is_err());
        assert!(MeshKey::parse("ZTF:", NS).is_err());
        assert!(MeshKey::parse("ZTF", NS).is_err());
        assert!(MeshKey::new("", "x").is_err());
        assert!(MeshKey::new("ZTF", "a\nb").is_err());
    }
}
