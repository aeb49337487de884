//! The provenance graph as a walk builds it, pure and I/O-free: one record's `am-*` headers
//! become entities, an activity, agents, used things and edges; graphs from other gateways
//! merge in; cycles are found once the walk ends.

use std::collections::{HashMap, HashSet};

use alertmesh_alert::{headers, AlertRef};
use alertmesh_proto::v1;

/// Most refs one record's `am-derived-from` or `am-used` may add: a hostile header must
/// not grow the graph without bound.
pub(crate) const MAX_LINKS_PER_RECORD: usize = 1000;
/// Longest id (a ref, an activity or agent id, a used thing) or text a node keeps, in
/// bytes; longer ones are cut. Refs are at most ~540 bytes, so only a hostile peer's or
/// header's strings are cut.
const MAX_TEXT_BYTES: usize = 4096;
/// Most bytes of text one graph holds, over all its nodes and edges: the counts alone
/// would let a peer fill them with long strings.
const MAX_GRAPH_BYTES: usize = 32 << 20;

/// What a record links to, for the walk to follow.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Links {
    /// Refs it was copied or derived from.
    pub(crate) next: Vec<String>,
    /// Its `am-origin`, when that is another record.
    pub(crate) origins: Vec<String>,
}

/// A graph being built. Entities are unique by id, as are the other nodes and the edges.
#[derive(Debug)]
pub(crate) struct Graph {
    out: v1::ProvenanceGraph,
    entities: HashMap<String, usize>,
    nodes: HashSet<(u8, String)>,
    edges: HashSet<(String, String, String)>,
    max_nodes: usize,
    /// Bytes of text held so far (what is kept twice is counted twice).
    bytes: usize,
}

impl Graph {
    /// An empty graph for a walk from `root`, holding at most `max_nodes` entities.
    pub(crate) fn new(root: &str, max_nodes: usize) -> Self {
        Graph {
            out: v1::ProvenanceGraph {
                root: root.to_owned(),
                ..Default::default()
            },
            entities: HashMap::new(),
            nodes: HashSet::new(),
            edges: HashSet::new(),
            max_nodes,
            bytes: 0,
        }
    }

    /// Whether `id` is an entity already (resolved or not).
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.entities.contains_key(id)
    }

    /// Whether the entity bound is reached.
    pub(crate) fn is_full(&self) -> bool {
        self.entities.len() >= self.max_nodes
    }

    /// The flags of the result.
    pub(crate) fn flags(&mut self) -> &mut v1::ProvenanceGraph {
        &mut self.out
    }

    /// Takes `n` more bytes of text, or marks the graph cut short when they do not fit.
    fn take_bytes(&mut self, n: usize) -> bool {
        if self.bytes + n > MAX_GRAPH_BYTES {
            self.out.node_limited = true;
            return false;
        }
        self.bytes += n;
        true
    }

    /// Adds `entity`, or replaces an unresolved one of the same id by a resolved one.
    fn put_entity(&mut self, mut entity: v1::ProvEntity) {
        let e = &mut entity;
        for text in [
            &mut e.id,
            &mut e.gateway,
            &mut e.topic,
            &mut e.key,
            &mut e.kind,
            &mut e.unresolved_reason,
            &mut e.origin,
            &mut e.hops,
            &mut e.resolved_by,
        ] {
            cut(text);
        }
        let size = 2 * e.id.len()
            + e.gateway.len()
            + e.topic.len()
            + e.key.len()
            + e.kind.len()
            + e.unresolved_reason.len()
            + e.origin.len()
            + e.hops.len()
            + e.resolved_by.len();
        match self.entities.get(&entity.id).copied() {
            Some(i) => {
                if !self.out.entities[i].resolved && entity.resolved && self.take_bytes(size) {
                    self.out.entities[i] = entity;
                }
            }
            None if self.is_full() => self.out.node_limited = true,
            None if !self.take_bytes(size) => {}
            None => {
                self.entities
                    .insert(entity.id.clone(), self.out.entities.len());
                self.out.entities.push(entity);
            }
        }
    }

    fn edge(&mut self, kind: &str, from: &str, to: &str) {
        let key = (cut_str(kind), cut_str(from), cut_str(to));
        if self.edges.len() >= self.max_nodes * 8 || self.edges.contains(&key) {
            return;
        }
        if !self.take_bytes(2 * (key.0.len() + key.1.len() + key.2.len())) {
            return;
        }
        self.out.edges.push(v1::ProvEdge {
            kind: key.0.clone(),
            from: key.1.clone(),
            to: key.2.clone(),
        });
        self.edges.insert(key);
    }

    /// Records that `id` could not be read, and why.
    pub(crate) fn unresolved(&mut self, id: &str, reason: &str) {
        let mut e = located(id);
        e.resolved = false;
        e.unresolved_reason = reason.to_owned();
        self.put_entity(e);
    }

    /// Adds a record read by gateway `resolved_by` with what its headers say; returns the
    /// refs to follow.
    pub(crate) fn add_record(&mut self, alert: &v1::Alert, resolved_by: &str) -> Links {
        let id = alert.r#ref.as_str();
        let header = |name: &str| {
            alert
                .headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value.as_deref())
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let source = header(headers::SOURCE);
        let derived_from = header(headers::DERIVED_FROM);
        let activity = header(headers::ACTIVITY);
        let kind = if source.is_some() {
            "copy"
        } else if derived_from.is_some() || activity.is_some() {
            "derived"
        } else {
            "alert"
        };
        let origin = header(headers::ORIGIN).unwrap_or_else(|| id.to_owned());
        let mut entity = located(id);
        entity.key = if alert.mesh_key.is_empty() {
            alert
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default()
        } else {
            alert.mesh_key.clone()
        };
        entity.timestamp = alert.timestamp;
        entity.kind = kind.to_owned();
        entity.resolved = true;
        entity.origin = origin.clone();
        entity.hops = header(headers::HOPS).unwrap_or_default();
        entity.resolved_by = resolved_by.to_owned();
        self.put_entity(entity);

        let mut links = Links::default();
        if origin != id {
            links.origins.push(origin);
        }
        if let Some(source) = source {
            if source.starts_with("am://") {
                links.next.push(source.clone());
            } else {
                let mut e = located(&source);
                e.kind = "external".into();
                e.unresolved_reason =
                    "a record of a Kafka cluster outside the mesh: read it from that cluster"
                        .into();
                self.put_entity(e);
            }
            self.edge("copied_from", id, &source);
            for o in &links.origins {
                self.edge("primary_source", id, o);
            }
            // The copy was made by the gateway that holds it.
            let gateway = entity_gateway(id);
            let agent = format!("gateway:{gateway}");
            self.agent(v1::ProvAgent {
                id: agent.clone(),
                kind: "gateway".into(),
                subject: gateway,
                issuer: String::new(),
            });
            self.edge("attributed_to", id, &agent);
            // What a derived record came from is told by the original, not its copies.
            return links;
        }
        for o in &links.origins {
            self.edge("primary_source", id, o);
        }
        if kind != "derived" {
            return links;
        }
        let act = format!("{id}#activity");
        let (name, version, parameters) =
            activity.as_deref().map(parse_activity).unwrap_or_default();
        self.activity(v1::ProvActivity {
            id: act.clone(),
            name,
            version,
            parameters,
        });
        self.edge("generated_by", id, &act);
        let refs: Vec<&str> = derived_from
            .iter()
            .flat_map(|d| d.split(','))
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .take(MAX_LINKS_PER_RECORD + 1)
            .collect();
        if refs.len() > MAX_LINKS_PER_RECORD {
            // A record written elsewhere may name more than are shown: say it is cut.
            self.out.node_limited = true;
        }
        for r in refs.into_iter().take(MAX_LINKS_PER_RECORD) {
            self.edge("derived_from", id, r);
            self.edge("used", &act, r);
            links.next.push(r.to_owned());
        }
        for u in header(headers::USED)
            .as_deref()
            .map(parse_used)
            .unwrap_or_default()
        {
            self.used(&u);
            self.edge("used", &act, &u);
        }
        if let Some(agent) = header(headers::AGENT).as_deref().and_then(parse_agent) {
            let agent_id = agent.id.clone();
            self.agent(agent);
            self.edge("associated_with", &act, &agent_id);
            self.edge("attributed_to", id, &agent_id);
        }
        links
    }

    fn agent(&mut self, mut agent: v1::ProvAgent) {
        for text in [
            &mut agent.id,
            &mut agent.kind,
            &mut agent.subject,
            &mut agent.issuer,
        ] {
            cut(text);
        }
        let size = agent.kind.len() + agent.subject.len() + agent.issuer.len();
        let id = agent.id.clone();
        self.node(3, &id, size, |out| out.agents.push(agent));
    }

    fn activity(&mut self, mut activity: v1::ProvActivity) {
        for text in [
            &mut activity.id,
            &mut activity.name,
            &mut activity.version,
            &mut activity.parameters,
        ] {
            cut(text);
        }
        let size = activity.name.len() + activity.version.len() + activity.parameters.len();
        let id = activity.id.clone();
        self.node(1, &id, size, |out| out.activities.push(activity));
    }

    fn used(&mut self, id: &str) {
        let id = cut_str(id);
        self.node(2, &id, 0, |out| {
            out.used.push(v1::ProvUsed { id: id.clone() })
        });
    }

    /// Adds a node of `class` (activity, used, agent) once; `size` is what it holds besides
    /// its id (kept twice).
    fn node(
        &mut self,
        class: u8,
        id: &str,
        size: usize,
        push: impl FnOnce(&mut v1::ProvenanceGraph),
    ) {
        let id = cut_str(id);
        if self.nodes.len() >= self.max_nodes * 4 || self.nodes.contains(&(class, id.clone())) {
            return;
        }
        if self.take_bytes(2 * id.len() + size) {
            self.nodes.insert((class, id));
            push(&mut self.out);
        }
    }

    /// Merges a graph another gateway returned: its entities (a resolved entity replaces an
    /// unresolved one), nodes, edges and flags, within this graph's bounds. Records of
    /// gateway `own` (this one) are not taken from a peer, which read them with its own
    /// credentials (the caller may not hold them) or made them up: their refs not in the
    /// graph yet are returned, for this gateway to read itself.
    pub(crate) fn merge(&mut self, other: v1::ProvenanceGraph, own: &str) -> Vec<String> {
        let mut mine = Vec::new();
        for e in other.entities {
            if entity_gateway(&e.id) == own
                || crate::query::parse_ref(&e.id).is_some_and(|(g, _, _)| g == own)
            {
                if !self.contains(&e.id) && !mine.contains(&e.id) {
                    mine.push(e.id);
                }
                continue;
            }
            self.put_entity(e);
        }
        for a in other.activities {
            self.activity(a);
        }
        for u in other.used {
            self.used(&u.id);
        }
        for a in other.agents {
            self.agent(a);
        }
        for e in other.edges {
            self.edge(&e.kind, &e.from, &e.to);
        }
        let out = &mut self.out;
        out.depth_limited |= other.depth_limited;
        out.timed_out |= other.timed_out;
        out.node_limited |= other.node_limited;
        if other.cycle && !out.cycle {
            out.cycle = true;
            out.cycle_refs = other.cycle_refs;
        }
        mine
    }

    /// The result, with a cycle among derivations and copies reported when there is one.
    pub(crate) fn finish(mut self) -> v1::ProvenanceGraph {
        if !self.out.cycle {
            if let Some(cycle) = find_cycle(&self.out.edges) {
                self.out.cycle = true;
                self.out.cycle_refs = cycle;
            }
        }
        self.out
    }
}

/// Cuts `text` to [`MAX_TEXT_BYTES`] (at a character boundary).
fn cut(text: &mut String) {
    if text.len() > MAX_TEXT_BYTES {
        let mut end = MAX_TEXT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

fn cut_str(text: &str) -> String {
    let mut text = text.to_owned();
    cut(&mut text);
    text
}

/// An entity with the parts its id names: an alert ref, or `kafka://<bootstrap>/<topic>/<p>/<o>`.
fn located(id: &str) -> v1::ProvEntity {
    let mut e = v1::ProvEntity {
        id: id.to_owned(),
        ..Default::default()
    };
    if let Ok(r) = id.parse::<AlertRef>() {
        (e.gateway, e.topic, e.partition, e.offset) = (r.gateway, r.topic, r.partition, r.offset);
    } else if let Some(rest) = id.strip_prefix("kafka://") {
        let parts: Vec<&str> = rest.rsplitn(4, '/').collect();
        if let [o, p, topic, _] = parts[..] {
            if let (Ok(p), Ok(o)) = (p.parse(), o.parse()) {
                (e.topic, e.partition, e.offset) = (topic.to_owned(), p, o);
            }
        }
    }
    e
}

fn entity_gateway(id: &str) -> String {
    id.parse::<AlertRef>()
        .map(|r| r.gateway)
        .unwrap_or_default()
}

/// `am-activity`: `{"name": .., "version": .., "parameters": {..}}`; what cannot be read is
/// kept as the name, so the graph still shows it.
fn parse_activity(text: &str) -> (String, String, String) {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) if v.is_object() => {
            let s = |k: &str| match &v[k] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            let parameters = match &v["parameters"] {
                serde_json::Value::Null => String::new(),
                p => p.to_string(),
            };
            (s("name"), s("version"), parameters)
        }
        _ => (
            text.chars().take(200).collect(),
            String::new(),
            String::new(),
        ),
    }
}

/// `am-used`: a JSON array of strings; a bare string counts as one.
fn parse_used(text: &str) -> Vec<String> {
    let items = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Array(a)) => a
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => vec![text.to_owned()],
    };
    items
        .into_iter()
        .filter(|u| !u.is_empty())
        .take(MAX_LINKS_PER_RECORD)
        .collect()
}

/// `am-agent`: `{"sub": .., "iss": ..}`.
fn parse_agent(text: &str) -> Option<v1::ProvAgent> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let subject = v["sub"].as_str()?.to_owned();
    let issuer = v["iss"].as_str().unwrap_or_default().to_owned();
    let id = if issuer.is_empty() {
        subject.clone()
    } else {
        format!("{subject}@{issuer}")
    };
    Some(v1::ProvAgent {
        id,
        kind: "publisher".into(),
        subject,
        issuer,
    })
}

/// One cycle among `derived_from` and `copied_from` edges, as the refs along it.
fn find_cycle(edges: &[v1::ProvEdge]) -> Option<Vec<String>> {
    let mut next: HashMap<&str, Vec<&str>> = HashMap::new();
    for e in edges
        .iter()
        .filter(|e| e.kind == "derived_from" || e.kind == "copied_from")
    {
        next.entry(e.from.as_str()).or_default().push(e.to.as_str());
    }
    // 1: on the current path, 2: done.
    let mut state: HashMap<&str, u8> = HashMap::new();
    let mut starts: Vec<&str> = next.keys().copied().collect();
    starts.sort_unstable();
    for start in starts {
        if state.contains_key(start) {
            continue;
        }
        let mut path: Vec<(&str, usize)> = vec![(start, 0)];
        state.insert(start, 1);
        while let Some(&(node, i)) = path.last() {
            let children = next.get(node).map_or(&[][..], Vec::as_slice);
            let Some(&child) = children.get(i) else {
                state.insert(node, 2);
                path.pop();
                continue;
            };
            if let Some(last) = path.last_mut() {
                last.1 += 1;
            }
            match state.get(child).copied() {
                Some(1) => {
                    let at = path.iter().position(|(n, _)| *n == child).unwrap_or(0);
                    return Some(path[at..].iter().map(|(n, _)| (*n).to_owned()).collect());
                }
                Some(_) => {}
                None => {
                    state.insert(child, 1);
                    path.push((child, 0));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;
