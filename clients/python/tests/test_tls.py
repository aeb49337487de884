"""The client against a gateway that requires a token and mutual TLS (JWT + mTLS), with
credentials made by the gateway's own `alertmesh creds` commands."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from alertmesh import Gateway, PermissionDenied, Unauthenticated
from harness import SECURE, TOPIC, Proc, Stack, alertmesh_bin, free_port, http_ok, wait_for


@pytest.fixture(scope="module")
def secure(stack: Stack, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A second gateway over the same Kafka, named `lasair`, with [auth] and [tls]."""
    work = tmp_path_factory.mktemp("secure")
    grpc, http = free_port(), free_port()
    config = work / "lasair.toml"
    config.write_text(
        f"""[gateway]
name = "lasair"
listen = "127.0.0.1:{grpc}"
http_listen = "127.0.0.1:{http}"
shutdown_grace_ms = 1000
[kafka]
bootstrap = "{stack.bootstrap}"
{SECURE}[[topics]]
name = "{TOPIC}"
namespace = "ZTF"
format = "avro-ocf"
"""
    )

    def creds(*args: str) -> str:
        out = subprocess.run(
            [alertmesh_bin(), "creds", args[0], "--config", str(config), *args[1:]],
            check=True, capture_output=True, text=True, timeout=60,
        )
        return out.stdout.strip()

    creds("init", "--dev-tls")
    token = work / "alice.jwt"
    token.write_text(creds("issue", "--sub", "alice", "--scope", "subscribe:ztf.*", "--scope", "fetch:ztf.*", "--ttl", "1h"))
    weak = work / "bob.jwt"
    weak.write_text(creds("issue", "--sub", "bob", "--scope", "subscribe:lsst.*", "--ttl", "1h"))
    creds("cert", "--name", "alice")
    proc = Proc([alertmesh_bin(), "serve", "--config", str(config)], work / "gateway.log")
    ca = work / "keys" / "mesh-ca.crt"
    try:
        # The side port speaks HTTPS with [tls]: readiness is the gRPC port accepting TLS.
        wait_for(lambda: _grpc_ready(f"https://127.0.0.1:{grpc}", ca, work), "the TLS gateway")
        yield {
            "url": f"https://127.0.0.1:{grpc}",
            "ca": ca,
            "cert": work / "keys" / "mesh-ca" / "alice.pem",
            "key": work / "keys" / "mesh-ca" / "alice.key",
            "token": token,
            "weak": weak,
        }
    finally:
        proc.kill()


def _grpc_ready(url: str, ca: Path, work: Path) -> bool:
    try:
        Gateway(url, ca=str(ca), cert=str(work / "keys" / "mesh-ca" / "alice.pem"),
                key=str(work / "keys" / "mesh-ca" / "alice.key")).describe()
        return True
    except Exception:  # noqa: BLE001 - not up yet
        return False


def test_token_and_client_certificate_subscribe(secure: dict) -> None:  # type: ignore[type-arg]
    gw = Gateway(secure["url"], token=str(secure["token"]), ca=str(secure["ca"]),
                 cert=str(secure["cert"]), key=str(secure["key"]))
    alerts = list(gw.subscribe(TOPIC, start="earliest", end="now", omit_cutouts=True))
    assert len(alerts) == 45
    assert all(a.key.startswith("ZTF:ZTF") for a in alerts)
    assert gw.fetch(alerts[0].ref).ref == alerts[0].ref


def test_missing_or_insufficient_credentials_raise_typed_errors(secure: dict) -> None:  # type: ignore[type-arg]
    no_token = Gateway(secure["url"], ca=str(secure["ca"]), cert=str(secure["cert"]), key=str(secure["key"]))
    with pytest.raises(Unauthenticated) as e:
        next(iter(no_token.subscribe(TOPIC, start="earliest", end="now")))
    assert "token" in e.value.message
    weak = Gateway(secure["url"], token=str(secure["weak"]), ca=str(secure["ca"]),
                   cert=str(secure["cert"]), key=str(secure["key"]))
    with pytest.raises(PermissionDenied) as e2:
        next(iter(weak.subscribe(TOPIC, start="earliest", end="now")))
    assert TOPIC in e2.value.message
    assert secure["weak"].read_text() not in e2.value.message


def test_missing_client_certificate_names_the_python_arguments(secure: dict) -> None:  # type: ignore[type-arg]
    no_cert = Gateway(secure["url"], token=str(secure["token"]), ca=str(secure["ca"]))
    with pytest.raises(Unauthenticated) as e:
        next(iter(no_cert.subscribe(TOPIC, start="earliest", end="now")))
    assert "client certificate" in e.value.message
    assert "cert=" in e.value.message and "key=" in e.value.message
    assert "--cert" not in e.value.message and "--key" not in e.value.message
