//! Which mirror writes which topic, when a name comes from a peer.
//!
//! A gateway-source mirror without `destination` writes `<peer's name>.<topic>`, and the
//! peer chooses its name: one that names itself after another mirror's destination, or
//! after a topic clients publish into, would have its records written there, mixed with
//! the other writer's (and one mirror's recovery reading the other's positions). The
//! configuration refuses such collisions among names it knows; [`Claims`] holds those, and
//! each mirror claims a name learned at run time before writing to it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Topics and who writes them, shared by a gateway's mirrors.
#[derive(Debug, Clone, Default)]
pub struct Claims(Arc<Mutex<HashMap<String, Claim>>>);

#[derive(Debug, Clone)]
struct Claim {
    /// A mirror's name, or what else writes the topic.
    owner: String,
    /// Claimed at run time (released when the mirror stops), not from the configuration.
    learned: bool,
}

/// How a mirror is named as a claimant.
pub fn mirror(name: &str) -> String {
    format!("mirror {name:?}")
}

impl Claims {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Claim>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records from the configuration that `owner` writes `topic` (a mirror's destination
    /// named there, or a publish topic).
    pub fn reserve(&self, topic: &str, owner: &str) {
        self.map().insert(
            topic.to_owned(),
            Claim {
                owner: owner.to_owned(),
                learned: false,
            },
        );
    }

    /// Claims `topic` for mirror `mirror`; the owner's description if another holds it.
    pub(crate) fn claim(&self, topic: &str, mirror: &str) -> Result<(), String> {
        let mut map = self.map();
        match map.get(topic) {
            Some(c) if c.owner != mirror => Err(c.owner.clone()),
            Some(_) => Ok(()),
            None => {
                map.insert(
                    topic.to_owned(),
                    Claim {
                        owner: mirror.to_owned(),
                        learned: true,
                    },
                );
                Ok(())
            }
        }
    }

    /// Releases the topics mirror `mirror` claimed at run time.
    pub(crate) fn release(&self, mirror: &str) {
        self.map().retain(|_, c| !(c.learned && c.owner == mirror));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_learned_name_may_not_take_a_topic_another_writes() {
        let claims = Claims::default();
        claims.reserve("ztf.alerts", "mirror \"from-survey\"");
        claims.reserve("lasair.classes", "clients publishing");
        assert_eq!(
            claims.claim("ztf.alerts", "mirror \"from-fink\""),
            Err("mirror \"from-survey\"".into())
        );
        assert!(claims.claim("lasair.classes", "from-fink").is_err());
        // Free names are claimed once; the claimant may claim again (each cycle does).
        assert!(claims.claim("fink.ztf", "from-fink").is_ok());
        assert!(claims.claim("fink.ztf", "from-fink").is_ok());
        assert_eq!(
            claims.claim("fink.ztf", "from-ampel"),
            Err("from-fink".into())
        );
        // Released when the mirror stops; reservations from the configuration stay.
        claims.release("from-fink");
        assert!(claims.claim("fink.ztf", "from-ampel").is_ok());
        claims.release("mirror \"from-survey\"");
        assert!(claims.claim("ztf.alerts", "from-ampel").is_err());
    }
}
