"""Gateway.provenance and the graph's exports: PROV-JSON read back by the W3C ``prov``
package, and networkx. The graph comes from an in-process gRPC server shaped like a
three-gateway walk (the real walk is tested end to end in tests/tests/provenance.rs)."""

from __future__ import annotations

import json
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from alertmesh import Gateway, PermissionDenied
from alertmesh._proto import alertmesh_pb2 as pb
from alertmesh._proto import alertmesh_pb2_grpc as pb_grpc

ROOT = "am://ampel/ampel.class/0/0"
COPY = "am://ampel/fink.lasair.ztf.alerts/0/1"
AT_FINK = "am://fink/lasair.ztf.alerts/0/1"
ORIGIN = "am://lasair/ztf.alerts/0/1"
RAW = "kafka://127.0.0.1:9092/ztf.raw/0/1"
GHOST = "am://ghost/ztf.alerts/0/0"
ACT = ROOT + "#activity"
ROW = "catalog:gaia-dr3/4295806720"


def graph() -> pb.ProvenanceGraph:
    def entity(id: str, kind: str, resolved: bool = True, reason: str = "") -> pb.ProvEntity:
        e = pb.ProvEntity(id=id, kind=kind, resolved=resolved, unresolved_reason=reason, origin=id)
        if resolved:
            e.timestamp.seconds = 1_577_836_800
        return e

    edges = [
        ("generated_by", ROOT, ACT), ("derived_from", ROOT, COPY), ("derived_from", ROOT, GHOST),
        ("used", ACT, COPY), ("used", ACT, ROW), ("associated_with", ACT, "ampel-bot@ampel"),
        ("attributed_to", ROOT, "ampel-bot@ampel"), ("copied_from", COPY, AT_FINK),
        ("primary_source", COPY, ORIGIN), ("copied_from", AT_FINK, ORIGIN), ("copied_from", ORIGIN, RAW),
        ("attributed_to", COPY, "gateway:ampel"),
    ]
    g = pb.ProvenanceGraph(
        root=ROOT,
        entities=[
            entity(ROOT, "derived"), entity(COPY, "copy"), entity(AT_FINK, "copy"), entity(ORIGIN, "copy"),
            entity(RAW, "external", False, "a record of a Kafka cluster outside the mesh"),
            entity(GHOST, "alert", False, 'gateway "ghost" is not a peer of ampel'),
        ],
        activities=[pb.ProvActivity(id=ACT, name="classify", version="2.1.0", parameters='{"threshold": 0.9}')],
        agents=[
            pb.ProvAgent(id="ampel-bot@ampel", kind="publisher", subject="ampel-bot", issuer="ampel"),
            pb.ProvAgent(id="gateway:ampel", kind="gateway", subject="ampel"),
        ],
        used=[pb.ProvUsed(id=ROW)],
        depth_limited=True,
    )
    for kind, src, dst in edges:
        e = g.edges.add()
        e.kind, e.to = kind, dst
        setattr(e, "from", src)
    return g


class _Prov(pb_grpc.AlertMeshServicer):
    def __init__(self) -> None:
        self.requests: list[Any] = []

    def Provenance(self, request: Any, context: grpc.ServicerContext) -> pb.ProvenanceGraph:
        self.requests.append(request)
        if request.ref == "am://ampel/secret/0/0":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "missing scope fetch:secret")
        return graph()


@pytest.fixture()
def gateway() -> Any:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = _Prov()
    pb_grpc.add_AlertMeshServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with Gateway(f"http://127.0.0.1:{port}") as gw:
            yield gw, servicer
    finally:
        server.stop(None)


def test_provenance_returns_the_graph_with_reasons_and_flags(gateway: Any) -> None:
    gw, servicer = gateway
    g = gw.provenance(ROOT, depth=3, timeout=5)
    req = servicer.requests[0]
    assert (req.ref, req.max_depth, req.timeout_ms) == (ROOT, 3, 5000)
    assert g.root == ROOT and g.depth_limited and not g.cycle
    assert g.entity(ORIGIN).kind == "copy"
    assert g.entity(ROOT).timestamp.year == 2020
    assert {e.id for e in g.unresolved()} == {RAW, GHOST}
    assert "not a peer" in g.entity(GHOST).unresolved_reason
    assert g.activities[0].parameters == {"threshold": 0.9}
    assert g.used == [ROW]
    with pytest.raises(PermissionDenied, match="fetch:secret"):
        gw.provenance("am://ampel/secret/0/0")


def test_prov_json_is_read_back_by_the_prov_package(gateway: Any, tmp_path: Path) -> None:
    prov = pytest.importorskip("prov")
    from prov.model import ProvActivity, ProvAgent, ProvDerivation, ProvEntity, ProvUsage

    gw, _ = gateway
    doc = gw.provenance(ROOT).to_prov_json()
    path = tmp_path / "prov.json"
    path.write_text(json.dumps(doc))
    read = prov.read(str(path), format="json")
    entities = {e.identifier.uri for e in read.get_records(ProvEntity)}
    assert "am://ampel/ampel.class/0/0" in entities
    assert "urn:alertmesh:used:catalog:gaia-dr3/4295806720" in entities
    assert len(entities) == 7, entities
    assert len(list(read.get_records(ProvActivity))) == 1
    assert len(list(read.get_records(ProvAgent))) == 2
    assert len(list(read.get_records(ProvDerivation))) == 6  # 2 derived, 3 copies, 1 primary source
    assert len(list(read.get_records(ProvUsage))) == 2
    # Round trip: what prov writes back is the same document.
    again = prov.model.ProvDocument.deserialize(content=read.serialize(format="json"), format="json")
    assert again == read


def test_to_networkx_has_typed_nodes_and_edge_kinds(gateway: Any) -> None:
    nx = pytest.importorskip("networkx")
    gw, _ = gateway
    g = gw.provenance(ROOT).to_networkx()
    assert g.nodes[ROOT]["type"] == "entity" and g.nodes[ACT]["type"] == "activity"
    assert g.nodes[ROW]["type"] == "used" and g.nodes["gateway:ampel"]["type"] == "agent"
    assert g.number_of_edges() == 12
    # Every record leads back to the raw survey record through copies.
    assert nx.has_path(g, ROOT, RAW)
