//! Open subscriptions (and, counted apart, query streams) per connection and per
//! principal: one client, or one token, cannot take every slot of the gateway. Callers
//! without a token are not one principal: they are counted per connection only.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// The limits and the current counts (touched once when a subscription opens and once
/// when it ends, never per alert).
#[derive(Debug)]
pub(crate) struct Quotas {
    /// What is counted, for messages: "subscriptions", "query streams".
    what: &'static str,
    per_connection: usize,
    per_principal: usize,
    open: Arc<Mutex<Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    connections: HashMap<SocketAddr, usize>,
    principals: HashMap<String, usize>,
}

/// One open subscription, counted until dropped.
#[derive(Debug)]
pub(crate) struct Held {
    open: Arc<Mutex<Counts>>,
    connection: Option<SocketAddr>,
    principal: Option<String>,
}

impl Quotas {
    pub(crate) fn new(what: &'static str, per_connection: usize, per_principal: usize) -> Self {
        Quotas {
            what,
            per_connection,
            per_principal,
            open: Arc::default(),
        }
    }

    /// Counts a subscription of `principal` (`None`: a caller without a token) on
    /// `connection` (the peer address; `None` when the transport has none), or refuses it
    /// with the limit it would exceed.
    pub(crate) fn acquire(
        &self,
        connection: Option<SocketAddr>,
        principal: Option<&str>,
    ) -> Result<Held> {
        let mut counts = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let on_conn = connection.map_or(0, |c| counts.connections.get(&c).copied().unwrap_or(0));
        if on_conn >= self.per_connection {
            return Err(Error::ResourceExhausted(format!(
                "this connection already has {on_conn} {} open \
                 (limits.max_subscriptions_per_connection); end one before opening another",
                self.what
            )));
        }
        let of_principal = principal.map_or(0, |p| counts.principals.get(p).copied().unwrap_or(0));
        if of_principal >= self.per_principal {
            return Err(Error::ResourceExhausted(format!(
                "the caller already has {of_principal} {} open \
                 (limits.max_subscriptions_per_principal); end one before opening another",
                self.what
            )));
        }
        if let Some(c) = connection {
            *counts.connections.entry(c).or_default() += 1;
        }
        if let Some(p) = principal {
            *counts.principals.entry(p.to_owned()).or_default() += 1;
        }
        Ok(Held {
            open: Arc::clone(&self.open),
            connection,
            principal: principal.map(str::to_owned),
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut counts = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = self.connection {
            release(&mut counts.connections, &c);
        }
        if let Some(p) = &self.principal {
            release(&mut counts.principals, p);
        }
    }
}

/// One less under `key`; keys at zero are removed, so the maps hold only open ones.
fn release<K: Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    fn refused(r: Result<Held>) -> String {
        match r {
            Err(Error::ResourceExhausted(m)) => m,
            other => panic!("expected RESOURCE_EXHAUSTED, got {other:?}"),
        }
    }

    #[test]
    fn a_connection_cannot_take_more_than_its_share() {
        let q = Quotas::new("subscriptions", 2, 100);
        let a = q.acquire(addr(1), Some("alice")).unwrap();
        let _b = q.acquire(addr(1), Some("bob")).unwrap();
        let msg = refused(q.acquire(addr(1), Some("carol")));
        assert!(
            msg.contains("limits.max_subscriptions_per_connection"),
            "{msg}"
        );
        // Another connection is not affected; an ended subscription frees its place.
        let _c = q.acquire(addr(2), Some("carol")).unwrap();
        drop(a);
        let _d = q.acquire(addr(1), Some("dave")).unwrap();
    }

    #[test]
    fn a_principal_cannot_take_more_than_its_share_over_connections() {
        let q = Quotas::new("subscriptions", 100, 2);
        let a = q.acquire(addr(1), Some("alice")).unwrap();
        let _b = q.acquire(addr(2), Some("alice")).unwrap();
        let msg = refused(q.acquire(addr(3), Some("alice")));
        assert!(
            msg.contains("limits.max_subscriptions_per_principal"),
            "{msg}"
        );
        let _c = q.acquire(addr(3), Some("bob")).unwrap();
        drop(a);
        let _d = q.acquire(None, Some("alice")).unwrap();
    }

    #[test]
    fn callers_without_a_token_are_counted_per_connection_only() {
        let q = Quotas::new("subscriptions", 2, 1);
        let _held: Vec<Held> = (0..5).map(|i| q.acquire(addr(i), None).unwrap()).collect();
        let _a = q.acquire(addr(9), None).unwrap();
        let _b = q.acquire(addr(9), None).unwrap();
        refused(q.acquire(addr(9), None));
    }

    #[test]
    fn ended_subscriptions_leave_no_entries() {
        let q = Quotas::new("subscriptions", 5, 5);
        let held: Vec<Held> = (0..5)
            .map(|i| q.acquire(addr(i), Some("x")).unwrap())
            .collect();
        drop(held);
        let counts = q.open.lock().unwrap();
        assert!(counts.connections.is_empty() && counts.principals.is_empty());
    }
}
