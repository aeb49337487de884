"""alertmesh: a Python client for alertmesh gateways.

>>> from alertmesh import Gateway
>>> gw = Gateway("http://127.0.0.1:29053")  # `make demo`: the fink gateway
>>> # replicas of one gateway: alertmesh.connect(["https://a:50051", "https://b:50051"])
>>> for alert in gw.subscribe("ztf.alerts", start="earliest", end="now", where="candidate.magpsf < 18"):
...     print(alert.key, alert.record["candid"])
"""

from alertmesh.client import Gateway, connect
from alertmesh.errors import (
    AlertmeshError,
    DecodeError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from alertmesh.lightcurve import plot as plot_lightcurve
from alertmesh.models import (
    Alert,
    AuthMethod,
    Directory,
    Endpoint,
    GatewayInfo,
    MirrorStatus,
    Peer,
    SchemaInfo,
    Skipped,
    TopicInfo,
)
from alertmesh.provenance import ProvenanceGraph
from alertmesh.publish import Activity
from alertmesh.runner import Derived, RunStats, run_filter
from alertmesh.query import QueryStream
from alertmesh.stream import Backoff, Subscription

__version__ = "0.1.0"

__all__ = [
    "Activity",
    "Alert",
    "AlertmeshError",
    "AuthMethod",
    "Backoff",
    "connect",
    "DecodeError",
    "Derived",
    "Directory",
    "Endpoint",
    "FailedPrecondition",
    "Gateway",
    "GatewayInfo",
    "InvalidArgument",
    "MirrorStatus",
    "NotFound",
    "Peer",
    "plot_lightcurve",
    "PermissionDenied",
    "ProvenanceGraph",
    "QueryStream",
    "ResourceExhausted",
    "SchemaInfo",
    "run_filter",
    "RunStats",
    "Skipped",
    "Subscription",
    "TopicInfo",
    "Unauthenticated",
    "Unavailable",
]
