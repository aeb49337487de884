"""alertmesh: a Python client for alertmesh gateways.

>>> from alertmesh import Gateway
>>> gw = Gateway("http://127.0.0.1:50051")
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
from alertmesh.models import Alert, AuthMethod, Endpoint, GatewayInfo, Peer, Skipped, TopicInfo
from alertmesh.stream import Backoff, Subscription

__version__ = "0.1.0"

__all__ = [
    "Alert",
    "AlertmeshError",
    "AuthMethod",
    "Backoff",
    "DecodeError",
    "Endpoint",
    "Gateway",
    "GatewayInfo",
    "InvalidArgument",
    "NotFound",
    "Peer",
    "PermissionDenied",
    "ResourceExhausted",
    "Skipped",
    "Subscription",
    "TopicInfo",
    "Unauthenticated",
    "Unavailable",
]
