"""alertmesh: a Python client for alertmesh gateways.

>>> from alertmesh import Gateway
>>> gw = Gateway("http://127.0.0.1:29053")  # `make demo`: the fink gateway
>>> for alert in gw.subscribe("ztf.alerts", start="earliest", end="now", where="candidate.magpsf < 18"):
...     print(alert.key, alert.record["candid"])
"""

from alertmesh.client import Gateway
from alertmesh.errors import (
    AlertmeshError,
    DecodeError,
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
    Skipped,
    TopicInfo,
)
from alertmesh.query import QueryStream
from alertmesh.stream import Backoff, Subscription

__version__ = "0.1.0"

__all__ = [
    "Alert",
    "AlertmeshError",
    "AuthMethod",
    "Backoff",
    "DecodeError",
    "Directory",
    "Endpoint",
    "Gateway",
    "GatewayInfo",
    "InvalidArgument",
    "MirrorStatus",
    "NotFound",
    "Peer",
    "plot_lightcurve",
    "PermissionDenied",
    "QueryStream",
    "ResourceExhausted",
    "Skipped",
    "Subscription",
    "TopicInfo",
    "Unauthenticated",
    "Unavailable",
]
