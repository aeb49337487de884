//! `Provenance`: the graph behind an alert ref, walked across gateways.
//!
//! The walk reads each record of this gateway with [`Fetcher`] (after the caller's Fetch
//! scope check) and turns its headers into graph nodes ([`graph`]). A ref on another
//! gateway is handed to that gateway's own `Provenance` (or, from a gateway without it,
//! `Fetch`), reached as one of this gateway's mirror sources with that mirror's
//! credentials: a token goes only to the gateway its `aud` names. Depth, entities and
//! total time are bounded; what cannot be reached is an unresolved entity with the reason.

mod graph;

pub(crate) use graph::MAX_LINKS_PER_RECORD;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alertmesh_alert::AlertRef;
use alertmesh_client::Gateway;
use alertmesh_proto::v1;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::fetch::Fetcher;
use crate::mirrors::Mirrors;
use graph::Graph;

/// Links followed when the request names no depth, and the most it may ask for.
const DEFAULT_DEPTH: u32 = 16;
const MAX_DEPTH: u32 = 64;
/// Time a walk takes when the request names none, and the most it may ask for.
const DEFAULT_BUDGET: Duration = Duration::from_secs(10);
const MAX_BUDGET: Duration = Duration::from_secs(60);
/// Most entities one graph holds.
const MAX_ENTITIES: usize = 2000;
/// Kept back from the budget handed to the next gateway, so its answer arrives in time.
const MARGIN: Duration = Duration::from_millis(300);
/// Most refs one walk queues: each record may link to a thousand others (and a peer may
/// answer with records that add no entity), so the entity bound alone would not bound the
/// queue or the calls made.
const MAX_QUEUED: usize = 4 * MAX_ENTITIES;
/// Largest answer taken from another gateway (a graph, or a record): larger ones leave
/// the ref unresolved.
const MAX_PEER_ANSWER_BYTES: usize = 32 << 20;

/// Walks provenance graphs from this gateway.
#[derive(Debug, Clone)]
pub(crate) struct Provenance {
    pub(crate) gateway: String,
    pub(crate) fetcher: Fetcher,
    pub(crate) mirrors: Arc<Mirrors>,
    /// Names of mirror sources learned by asking them (URL → name).
    pub(crate) names: Arc<Mutex<HashMap<String, String>>>,
}

/// What the walk may read of this gateway: the caller's Fetch scope per topic.
pub(crate) type Authorize<'a> = &'a (dyn Fn(&str) -> Result<()> + Sync);

/// What a walk may do for its caller.
#[derive(Clone, Copy)]
pub(crate) struct Access<'a> {
    /// Which of this gateway's records it may read.
    pub(crate) local: Authorize<'a>,
    /// Whether it may ask other gateways (with this gateway's mirror credentials). A
    /// gateway that requires tokens does not ask its peers for a caller without one: that
    /// caller would read, through this gateway, what the peers grant this gateway.
    pub(crate) peers: bool,
}

/// Why a ref of another gateway was left unresolved for a caller without a token.
fn peers_not_asked(gateway: &str) -> String {
    format!(
        "gateway {gateway} is asked only for callers with a token (this gateway requires tokens)"
    )
}

/// The bounds of one walk.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    max_depth: u32,
    deadline: Instant,
}

impl Provenance {
    /// The graph behind `root`. The root itself must be readable: a ref that does not parse,
    /// a record that does not exist or may not be read is an error, as for Fetch.
    pub(crate) async fn walk(
        &self,
        root: &str,
        max_depth: Option<u32>,
        timeout_ms: u32,
        access: Access<'_>,
    ) -> Result<v1::ProvenanceGraph> {
        let authorize = access.local;
        let r: AlertRef = root
            .parse()
            .map_err(|e: alertmesh_alert::Error| Error::InvalidArgument(e.to_string()))?;
        let budget = match timeout_ms {
            0 => DEFAULT_BUDGET,
            ms => Duration::from_millis(u64::from(ms)).min(MAX_BUDGET),
        };
        let bounds = Bounds {
            max_depth: max_depth.unwrap_or(DEFAULT_DEPTH).min(MAX_DEPTH),
            deadline: Instant::now() + budget,
        };
        let mut graph = Graph::new(root, MAX_ENTITIES);
        let mut queue = Queue::default();
        // Refs first, then the origins they did not reach (a copy's chain usually does).
        let mut origins = Vec::new();
        if r.gateway == self.gateway {
            authorize(&r.topic)?;
            let alert = self.fetcher.fetch(root).await?;
            queue.seen.insert(root.to_owned());
            let links = graph.add_record(&alert, &self.gateway);
            queue.extend(&mut graph, links.next, 1);
            origins.extend(links.origins.into_iter().map(|n| (n, 1)));
        } else if !access.peers {
            return Err(Error::Unauthenticated(format!(
                "{}: pass a token",
                peers_not_asked(&r.gateway)
            )));
        } else {
            queue.extend(&mut graph, [root.to_owned()], 0);
        }
        loop {
            while let Some((next, depth)) = queue.refs.pop_front() {
                if let Some(links) = self.visit(&mut graph, &next, depth, bounds, access).await {
                    queue.extend(&mut graph, links.next, depth + 1);
                    origins.extend(links.origins.into_iter().map(|n| (n, depth + 1)));
                }
            }
            origins.retain(|(o, _)| !graph.contains(o) && !queue.seen.contains(o));
            if origins.is_empty() {
                break;
            }
            for (o, depth) in origins.drain(..) {
                queue.extend(&mut graph, [o], depth);
            }
        }
        Ok(graph.finish())
    }

    /// Resolves one ref into the graph; returns its links when this gateway read it.
    async fn visit(
        &self,
        graph: &mut Graph,
        next: &str,
        depth: u32,
        bounds: Bounds,
        access: Access<'_>,
    ) -> Option<graph::Links> {
        let authorize = access.local;
        if graph.contains(next) {
            return None;
        }
        if depth > bounds.max_depth {
            graph.flags().depth_limited = true;
            graph.unresolved(next, &format!("depth limit {} reached", bounds.max_depth));
            return None;
        }
        let left = bounds.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            graph.flags().timed_out = true;
            graph.unresolved(next, "the walk's time budget ran out first");
            return None;
        }
        if graph.is_full() {
            graph.flags().node_limited = true;
            return None;
        }
        // A row of a peer's database query (what a query-sourced mirror copied): a leaf,
        // read with Fetch from that peer.
        if let Some((gateway, _, _)) = crate::query::parse_ref(next) {
            let read = match gateway == self.gateway {
                true => Err("a row of this gateway's query: read it with fetch".to_owned()),
                false if !access.peers => Err(peers_not_asked(gateway)),
                false => match tokio::time::timeout(left, self.remote_row(gateway, next)).await {
                    Ok(read) => read,
                    Err(_) => {
                        graph.flags().timed_out = true;
                        Err(format!(
                            "gateway {gateway} did not answer within the time budget"
                        ))
                    }
                },
            };
            return match read {
                Ok(alert) if alert.r#ref == next => Some(graph.add_record(&alert, gateway)),
                Ok(_) => {
                    graph.unresolved(
                        next,
                        &format!("gateway {gateway} answered with another row"),
                    );
                    None
                }
                Err(reason) => {
                    graph.unresolved(next, &reason);
                    None
                }
            };
        }
        let r: AlertRef = match next.parse() {
            Ok(r) => r,
            Err(e) => {
                graph.unresolved(next, &format!("not an alert ref: {e}"));
                return None;
            }
        };
        if r.gateway == self.gateway {
            let read = match authorize(&r.topic) {
                Ok(()) => tokio::time::timeout(left, self.fetcher.fetch(next))
                    .await
                    .unwrap_or_else(|_| Err(Error::Unavailable("no answer in time".into()))),
                Err(e) => Err(e),
            };
            return match read {
                Ok(alert) => Some(graph.add_record(&alert, &self.gateway)),
                Err(e) => {
                    graph.unresolved(next, tonic::Status::from(e).message());
                    None
                }
            };
        }
        if !access.peers {
            graph.unresolved(next, &peers_not_asked(&r.gateway));
            return None;
        }
        let remaining_depth = bounds.max_depth - depth;
        match tokio::time::timeout(left, self.remote(&r, next, remaining_depth, left)).await {
            Ok(Ok(Remote::Graph(g))) => {
                let mine = graph.merge(g, &self.gateway);
                if !graph.contains(next) {
                    graph.unresolved(next, &format!("gateway {} did not return it", r.gateway));
                }
                // Read here, with the caller's own access.
                (!mine.is_empty()).then_some(graph::Links {
                    next: mine,
                    origins: Vec::new(),
                })
            }
            Ok(Ok(Remote::Record(alert))) if alert.r#ref == next => {
                Some(graph.add_record(&alert, &r.gateway))
            }
            Ok(Ok(Remote::Record(_))) => {
                graph.unresolved(
                    next,
                    &format!("gateway {} answered with another record", r.gateway),
                );
                None
            }
            Ok(Err(reason)) => {
                graph.unresolved(next, &reason);
                None
            }
            Err(_) => {
                graph.flags().timed_out = true;
                graph.unresolved(
                    next,
                    &format!(
                        "gateway {} did not answer within the time budget",
                        r.gateway
                    ),
                );
                None
            }
        }
    }

    /// Asks the gateway `r` names for the graph behind it (or the record alone, from a
    /// gateway without `Provenance`).
    async fn remote(
        &self,
        r: &AlertRef,
        text: &str,
        max_depth: u32,
        left: Duration,
    ) -> std::result::Result<Remote, String> {
        let peer = self.peer(&r.gateway).await?;
        let mut client = peer
            .connect()
            .await
            .map_err(|e| format!("gateway {}: {e}", r.gateway))?
            .with_max_message_bytes(MAX_PEER_ANSWER_BYTES);
        let request = v1::ProvenanceRequest {
            r#ref: text.to_owned(),
            max_depth: Some(max_depth),
            timeout_ms: u32::try_from(left.saturating_sub(MARGIN).as_millis())
                .unwrap_or(u32::MAX)
                .max(1),
        };
        match client.grpc().provenance(request).await {
            Ok(g) => Ok(Remote::Graph(g.into_inner())),
            Err(s) if s.code() == tonic::Code::Unimplemented => client
                .fetch(text)
                .await
                .map(Remote::Record)
                .map_err(|e| e.to_string()),
            Err(s) => Err(format!(
                "gateway {}: {}",
                r.gateway,
                alertmesh_client::status_line(&s)
            )),
        }
    }

    /// A query row of the gateway `name`, fetched with the credentials of the mirror that
    /// copies from it.
    async fn remote_row(&self, name: &str, text: &str) -> std::result::Result<v1::Alert, String> {
        let peer = self.peer(name).await?;
        let mut client = peer
            .connect()
            .await
            .map_err(|e| e.to_string())?
            .with_max_message_bytes(MAX_PEER_ANSWER_BYTES);
        client.fetch(text).await.map_err(|e| e.to_string())
    }

    /// The mirror source that is the gateway `name`, reached with that mirror's
    /// credentials (its token only when the token is for `name`).
    async fn peer(&self, name: &str) -> std::result::Result<Gateway, String> {
        let sources = self.mirrors.source_gateways();
        if let Some((_, g)) = sources.iter().find(|(n, _)| n == name) {
            return Ok(g.for_name(name));
        }
        // Sources whose mirror has not connected yet: ask them their name (an open call).
        for (_, g) in sources.iter().filter(|(n, _)| n.is_empty()) {
            let known = self.names().get(g.url()).cloned();
            let learned = match known {
                Some(n) => Some(n),
                None => match g.without_token().connect().await {
                    Ok(c) => {
                        let mut c = c.with_max_message_bytes(MAX_PEER_ANSWER_BYTES);
                        c.describe()
                            .await
                            .ok()
                            .map(|d| d.name)
                            .filter(|n| alertmesh_alert::naming::check_gateway_name(n).is_ok())
                    }
                    Err(_) => None,
                },
            };
            if let Some(n) = learned {
                self.names().insert(g.url().to_owned(), n.clone());
                if n == name {
                    return Ok(g.for_name(name));
                }
            }
        }
        Err(format!(
            "gateway {name:?} is not a peer of {}: none of its mirrors copies from it",
            self.gateway
        ))
    }

    fn names(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Refs waiting to be visited, each queued once in a walk.
#[derive(Debug, Default)]
struct Queue {
    refs: VecDeque<(String, u32)>,
    /// Every ref queued so far (visited or not), at most [`MAX_QUEUED`].
    seen: HashSet<String>,
}

impl Queue {
    /// Queues the refs not queued before; once [`MAX_QUEUED`] were, the graph is marked
    /// cut short instead.
    fn extend(&mut self, graph: &mut Graph, refs: impl IntoIterator<Item = String>, depth: u32) {
        for r in refs {
            if self.seen.contains(&r) {
                continue;
            }
            if self.seen.len() >= MAX_QUEUED {
                graph.flags().node_limited = true;
                return;
            }
            self.seen.insert(r.clone());
            self.refs.push_back((r, depth));
        }
    }
}

/// What another gateway answered.
#[derive(Debug)]
enum Remote {
    Graph(v1::ProvenanceGraph),
    Record(v1::Alert),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_queues_each_ref_once_and_at_most_max_queued() {
        let mut graph = Graph::new("am://a/t/0/0", MAX_ENTITIES);
        let mut queue = Queue::default();
        let same = || (0..1000).map(|_| "am://b/t/0/1".to_owned());
        queue.extend(&mut graph, same(), 1);
        queue.extend(&mut graph, same(), 2);
        assert_eq!(
            queue.refs.len(),
            1,
            "a record linking to one ref a thousand times"
        );
        // Refs beyond the bound are not queued, and the graph says it was cut short.
        let many = |from: usize| (from..from + 1000).map(|i| format!("am://b/t/0/{i}"));
        for round in 0..(MAX_QUEUED / 1000 + 2) {
            queue.extend(&mut graph, many(2 + round * 1000), 1);
        }
        assert_eq!(queue.refs.len(), MAX_QUEUED);
        assert_eq!(queue.seen.len(), MAX_QUEUED);
        let out = graph.finish();
        assert!(out.node_limited);
    }
}
