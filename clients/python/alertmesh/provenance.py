"""Provenance graphs: what an alert or derived record was copied and derived from.

:meth:`alertmesh.Gateway.provenance` returns a :class:`ProvenanceGraph`, which exports to
W3C PROV-JSON (:meth:`ProvenanceGraph.to_prov_json`, readable with the ``prov`` package)
and to networkx (:meth:`ProvenanceGraph.to_networkx`, networkx imported only then).
The mapping is the same as ``alertmesh provenance REF --format prov-json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from alertmesh.models import datetime_of

#: PROV-JSON prefixes of the ids :func:`qname` writes.
PREFIXES = {
    "alertmesh": "https://github.com/alertmesh/alertmesh/ns#",
    "am": "am://",
    "kafka": "kafka://",
    "amact": "urn:alertmesh:activity:",
    "amagent": "urn:alertmesh:agent:",
    "amgw": "urn:alertmesh:gateway:",
    "amused": "urn:alertmesh:used:",
}

#: Graph edge kind → (PROV-JSON section, source role, target role, prov:type if any).
_RELATIONS: dict[str, tuple[str, str, str, str | None]] = {
    "derived_from": ("wasDerivedFrom", "prov:generatedEntity", "prov:usedEntity", None),
    "copied_from": ("wasDerivedFrom", "prov:generatedEntity", "prov:usedEntity", "alertmesh:MirrorCopy"),
    "primary_source": ("wasDerivedFrom", "prov:generatedEntity", "prov:usedEntity", "prov:PrimarySource"),
    "generated_by": ("wasGeneratedBy", "prov:entity", "prov:activity", None),
    "used": ("used", "prov:activity", "prov:entity", None),
    "associated_with": ("wasAssociatedWith", "prov:activity", "prov:agent", None),
    "attributed_to": ("wasAttributedTo", "prov:entity", "prov:agent", None),
}


@dataclass
class Entity:
    """A record (alert, derived record, mirror copy) or a raw record outside the mesh."""

    id: str
    kind: str
    resolved: bool
    unresolved_reason: str = ""
    gateway: str = ""
    topic: str = ""
    partition: int = 0
    offset: int = 0
    key: str = ""
    #: In UTC; ``None`` when unknown or outside years 1 to 9999.
    timestamp: datetime | None = None
    origin: str = ""
    hops: str = ""
    resolved_by: str = ""


@dataclass
class Activity:
    """One run of the algorithm that produced a derived record."""

    id: str
    name: str
    version: str
    parameters: dict[str, Any] | None = None


@dataclass
class Agent:
    """A publisher (token subject and issuer) or a mirroring gateway."""

    id: str
    kind: str
    subject: str = ""
    issuer: str = ""


@dataclass
class Edge:
    kind: str
    source: str
    target: str


@dataclass
class ProvenanceGraph:
    """The graph behind ``root``; the flags say where and why the walk stopped."""

    root: str
    entities: list[Entity] = field(default_factory=list)
    activities: list[Activity] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)
    used: list[str] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    depth_limited: bool = False
    cycle: bool = False
    cycle_refs: list[str] = field(default_factory=list)
    timed_out: bool = False
    node_limited: bool = False

    @classmethod
    def from_pb(cls, g: Any) -> ProvenanceGraph:
        def when(e: Any) -> datetime | None:
            return datetime_of(e.timestamp) if e.HasField("timestamp") else None

        def params(text: str) -> dict[str, Any] | None:
            if not text:
                return None
            try:
                value = json.loads(text)
            except ValueError:
                return {"_text": text}
            return value if isinstance(value, dict) else {"_value": value}

        return cls(
            root=g.root,
            entities=[
                Entity(
                    id=e.id, kind=e.kind, resolved=e.resolved, unresolved_reason=e.unresolved_reason,
                    gateway=e.gateway, topic=e.topic, partition=e.partition, offset=e.offset, key=e.key,
                    timestamp=when(e), origin=e.origin, hops=e.hops, resolved_by=e.resolved_by,
                )
                for e in g.entities
            ],
            activities=[Activity(a.id, a.name, a.version, params(a.parameters)) for a in g.activities],
            agents=[Agent(a.id, a.kind, a.subject, a.issuer) for a in g.agents],
            used=[u.id for u in g.used],
            edges=[Edge(e.kind, getattr(e, "from"), e.to) for e in g.edges],
            depth_limited=g.depth_limited,
            cycle=g.cycle,
            cycle_refs=list(g.cycle_refs),
            timed_out=g.timed_out,
            node_limited=g.node_limited,
        )

    def entity(self, id: str) -> Entity | None:
        """The entity ``id``, if the graph holds it."""
        return next((e for e in self.entities if e.id == id), None)

    def unresolved(self) -> list[Entity]:
        """Entities the walk could not read (the reason is in ``unresolved_reason``)."""
        return [e for e in self.entities if not e.resolved]

    def qname(self, id: str) -> str:
        """The PROV qualified name of a graph id (prefixes in :data:`PREFIXES`)."""
        if id.endswith("#activity"):
            base = id[: -len("#activity")]
            return "amact:" + base.removeprefix("am://")
        if id.startswith("am://"):
            return "am:" + id[len("am://"):]
        if id.startswith("kafka://"):
            return "kafka:" + id[len("kafka://"):]
        if id.startswith("gateway:"):
            return "amgw:" + id[len("gateway:"):]
        if any(a.id == id for a in self.agents):
            return "amagent:" + id
        return "amused:" + id

    def to_prov_json(self) -> dict[str, Any]:
        """The graph as a W3C PROV-JSON document (a dict; ``json.dumps`` it to write it).

        Read it back with ``prov.read(path, format="json")`` or
        ``prov.model.ProvDocument.deserialize(content=json.dumps(doc), format="json")``.
        """
        entity: dict[str, Any] = {}
        for e in self.entities:
            attrs: dict[str, Any] = {
                "prov:label": e.id,
                "alertmesh:kind": e.kind,
                "alertmesh:resolved": e.resolved,
            }
            for name, value in (
                ("gateway", e.gateway), ("topic", e.topic), ("key", e.key), ("origin", e.origin),
                ("hops", e.hops), ("resolvedBy", e.resolved_by), ("unresolvedReason", e.unresolved_reason),
            ):
                if value:
                    attrs[f"alertmesh:{name}"] = value
            if e.topic:
                attrs["alertmesh:partition"] = e.partition
                attrs["alertmesh:offset"] = e.offset
            if e.timestamp is not None:
                text = e.timestamp.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
                attrs["alertmesh:timestamp"] = {"$": text, "type": "xsd:dateTime"}
            entity[self.qname(e.id)] = attrs
        for u in self.used:
            entity[self.qname(u)] = {"prov:label": u, "alertmesh:kind": "used"}
        activity = {
            self.qname(a.id): {
                "prov:label": a.name,
                "alertmesh:version": a.version,
                **({"alertmesh:parameters": json.dumps(a.parameters)} if a.parameters is not None else {}),
            }
            for a in self.activities
        }
        agent: dict[str, Any] = {}
        for a in self.agents:
            attrs = {"prov:label": a.id, "alertmesh:kind": a.kind}
            if a.kind == "gateway":
                attrs["prov:type"] = {"$": "prov:SoftwareAgent", "type": "prov:QUALIFIED_NAME"}
            if a.issuer:
                attrs["alertmesh:issuer"] = a.issuer
            agent[self.qname(a.id)] = attrs
        doc: dict[str, Any] = {"prefix": dict(PREFIXES)}
        for name, section in (("entity", entity), ("activity", activity), ("agent", agent)):
            if section:
                doc[name] = section
        for i, e in enumerate(self.edges):
            if e.kind not in _RELATIONS:
                continue
            section, src, dst, ptype = _RELATIONS[e.kind]
            body: dict[str, Any] = {src: self.qname(e.source), dst: self.qname(e.target)}
            if ptype:
                body["prov:type"] = {"$": ptype, "type": "prov:QUALIFIED_NAME"}
            doc.setdefault(section, {})[f"_:r{i}"] = body
        return doc

    def to_networkx(self) -> Any:
        """The graph as a ``networkx.MultiDiGraph``: nodes carry ``type`` (entity,
        activity, agent, used) and their attributes, edges carry ``kind``. Needs networkx."""
        try:
            import networkx as nx
        except ImportError as e:  # networkx is optional
            raise ImportError("to_networkx needs networkx: pip install networkx") from e
        g = nx.MultiDiGraph(root=self.root, cycle=self.cycle, depth_limited=self.depth_limited)
        for e in self.entities:
            g.add_node(e.id, type="entity", **{k: v for k, v in vars(e).items() if k != "id"})
        for a in self.activities:
            g.add_node(a.id, type="activity", name=a.name, version=a.version, parameters=a.parameters)
        for ag in self.agents:
            g.add_node(ag.id, type="agent", kind=ag.kind, subject=ag.subject, issuer=ag.issuer)
        for u in self.used:
            g.add_node(u, type="used")
        for ed in self.edges:
            g.add_edge(ed.source, ed.target, kind=ed.kind)
        return g
