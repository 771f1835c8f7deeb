"""TLS on the API listeners and mTLS between sidecars, with certificates issued by the tests.

- An in-process sidecar whose grpc listener has MOSN's `tls_context` with `verify_client`: the
  Layotto and Dapr gRPC APIs (one port) and Dapr's HTTP API answer a client with a certificate
  of the CA, and refuse one without, one of another CA, one that does not trust the server's CA,
  and plaintext.
- A sidecar with `--tls-cert-file`/`--tls-key-file` and no client CA: any TLS client that trusts
  the server; a certificate rewritten on disk is served from the next handshake on.
- Sidecar processes: A invokes B's app over mTLS through B's internal listener
  (`--dapr-internal-grpc-port`), which refuses a sidecar whose certificate is of another CA and a
  client with none, serves InvokeService only, and never passes a call on to another app.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2

from layotto.cli import TlsFlags, apply_tls_flags
from layotto.config import layotto_json
from layotto.sidecar import Sidecar
from layotto_proto.dapr.proto.runtime.v1 import dapr_pb2_grpc, metadata_pb2
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.e2e.invoke_apps import grpc_app
from tests.support.certs import Authority, Issued
from tests.support.services import require_binary
from tests.support.sidecar import SidecarProcess, free_port, layotto_config

HELLO = {"hellos": {"helloworld": {"type": "helloworld"}}}


@dataclass(frozen=True)
class Pki:
    ca: Authority
    #: Another CA: its certificates must be refused wherever `ca`'s are required.
    rogue: Authority
    server: Issued
    client: Issued
    rogue_client: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, rogue = Authority(folder / "ca", "ca"), Authority(folder / "rogue", "rogue")
    return Pki(ca, rogue, ca.issue("server"), ca.issue("client"), rogue.issue("intruder"))


def _credentials(trust: Authority, client: Issued | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        trust.cert.read_bytes(),
        client.key.read_bytes() if client else None,
        client.cert.read_bytes() if client else None,
    )


async def _say_hello(address: str, credentials: grpc.ChannelCredentials | None) -> str:
    channel = grpc.aio.secure_channel(address, credentials) if credentials else grpc.aio.insecure_channel(address)
    async with channel:
        reply = await runtime_pb2_grpc.RuntimeStub(channel).SayHello(
            pb.SayHelloRequest(service_name="helloworld"), timeout=5
        )
    return str(reply.hello)


async def _refused(address: str, credentials: grpc.ChannelCredentials | None) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _say_hello(address, credentials)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
    return info.value.details() or ""


def _client_context(trust: Authority, client: Issued | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(trust.cert))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context


async def _http_get(address: str, path: str, context: ssl.SSLContext) -> tuple[int, dict[str, str], str]:
    """GET over TLS; (status, the server certificate's subject, body)."""
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port), ssl=context), 5)
    try:
        subject = {k: v for rdn in writer.get_extra_info("peercert")["subject"] for k, v in rdn}
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    if not raw:  # TLS 1.3: a refused client certificate ends the connection after the handshake
        raise ConnectionResetError("closed without an answer")
    head, _, body = raw.decode().partition("\r\n\r\n")
    return int(head.split()[1]), subject, body


@dataclass
class Listeners:
    grpc: str
    http: str


@pytest.fixture(scope="module")
async def mtls(pki: Pki) -> AsyncIterator[Listeners]:
    """A sidecar with MOSN's tls_context on its grpc listener, requiring client certificates."""
    port, http = free_port(), f"127.0.0.1:{free_port()}"
    doc = layotto_config(HELLO, grpc_port=port)
    doc["servers"][0]["listeners"][0]["filter_chains"][0]["tls_context"] = {
        "status": True,
        "cert_chain": str(pki.server.cert),
        "private_key": pki.server.key_pem,  # MOSN takes PEM text as well as a path
        "ca_cert": str(pki.ca.cert),
        "verify_client": True,
        "require_client_cert": True,
    }
    doc["dapr_http"] = {"address": http}
    cfg = layotto_json.load_document(doc, source="<mtls>")
    assert cfg.tls is not None and cfg.tls.mutual
    sidecar = Sidecar(cfg)
    await sidecar.start()
    try:
        yield Listeners(f"127.0.0.1:{port}", http)
    finally:
        await sidecar.stop()


async def test_mtls_client_with_a_certificate_of_the_ca_reaches_both_grpc_apis(mtls: Listeners, pki: Pki) -> None:
    assert await _say_hello(mtls.grpc, _credentials(pki.ca, pki.client)) == "greeting"
    async with grpc.aio.secure_channel(mtls.grpc, _credentials(pki.ca, pki.client)) as channel:
        reply = await dapr_pb2_grpc.DaprStub(channel).GetMetadata(metadata_pb2.GetMetadataRequest(), timeout=5)
    assert "helloworld" not in reply.id  # Dapr's API answered on the same TLS port


async def test_mtls_refuses_a_client_without_a_certificate(mtls: Listeners, pki: Pki) -> None:
    await _refused(mtls.grpc, _credentials(pki.ca))


async def test_mtls_refuses_a_client_certificate_of_another_ca(mtls: Listeners, pki: Pki) -> None:
    await _refused(mtls.grpc, _credentials(pki.ca, pki.rogue_client))


async def test_a_client_that_does_not_trust_the_servers_ca_fails(mtls: Listeners, pki: Pki) -> None:
    await _refused(mtls.grpc, _credentials(pki.rogue, pki.client))


async def test_plaintext_is_refused_on_the_tls_port(mtls: Listeners) -> None:
    await _refused(mtls.grpc, None)


async def test_dapr_http_api_requires_a_client_certificate_of_the_ca(mtls: Listeners, pki: Pki) -> None:
    status, subject, body = await _http_get(mtls.http, "/v1.0/metadata", _client_context(pki.ca, pki.client))
    assert (status, subject["commonName"]) == (200, "server")
    assert "helloworld" in json.dumps(json.loads(body))
    for client in (None, pki.rogue_client):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            # TLS 1.3: the server's refusal of the certificate arrives with the first read.
            await _http_get(mtls.http, "/v1.0/healthz", _client_context(pki.ca, client))


async def test_dapr_http_client_that_does_not_trust_the_servers_ca_fails(mtls: Listeners, pki: Pki) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await _http_get(mtls.http, "/v1.0/healthz", _client_context(pki.rogue, pki.client))


# ---- server TLS from the flags, and rotation ----


@pytest.fixture
async def rotating(tmp_path: Path, pki: Pki) -> AsyncIterator[tuple[Listeners, Path, Path]]:
    """A sidecar with --tls-cert-file/--tls-key-file (copies of the server's, which the test
    rewrites) and no client CA."""
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(pki.server.cert.read_bytes())
    key.write_bytes(pki.server.key.read_bytes())
    port, http = free_port(), f"127.0.0.1:{free_port()}"
    doc = {**layotto_config(HELLO, grpc_port=port), "dapr_http": {"address": http}}
    cfg = layotto_json.load_document(doc, source="<rotating>")
    apply_tls_flags(cfg, TlsFlags(cert_file=str(cert), key_file=str(key)))
    sidecar = Sidecar(cfg)
    await sidecar.start()
    try:
        yield Listeners(f"127.0.0.1:{port}", http), cert, key
    finally:
        await sidecar.stop()


async def _until(check: Any, what: str, within: float = 10.0) -> Any:
    """`check()`'s result once it stops failing (the server takes a rotation within a second)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await check()
        except (grpc.aio.AioRpcError, ssl.SSLError, ConnectionError) as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: still {exc!r} after {within}s") from exc
            await asyncio.sleep(0.1)


async def test_server_tls_without_client_ca_takes_any_client_and_serves_a_rotated_certificate(
    rotating: tuple[Listeners, Path, Path], pki: Pki
) -> None:
    listeners, cert, key = rotating
    assert await _say_hello(listeners.grpc, _credentials(pki.ca)) == "greeting"
    assert (await _http_get(listeners.http, "/v1.0/healthz", _client_context(pki.ca)))[0] == 204
    await _refused(listeners.grpc, _credentials(pki.rogue))

    # The files are replaced by a certificate of the other CA (as cert-manager renews a secret).
    renewed = pki.rogue.issue("renewed")
    key.write_bytes(renewed.key.read_bytes())
    cert.write_bytes(renewed.cert.read_bytes())
    assert await _until(lambda: _say_hello(listeners.grpc, _credentials(pki.rogue)), "gRPC rotation") == "greeting"
    status, subject, _ = await _until(
        lambda: _http_get(listeners.http, "/v1.0/healthz", _client_context(pki.rogue)), "HTTP rotation"
    )
    assert (status, subject["commonName"]) == (204, "renewed")
    await _refused(listeners.grpc, _credentials(pki.ca))


# ---- sidecar to sidecar ----


class _Process(SidecarProcess):
    """A sidecar process started with extra flags."""

    def __init__(self, grpc_config: dict[str, Any], flags: list[str]) -> None:
        super().__init__(grpc_config)
        self.flags = flags

    def start(self, timeout: float = 30.0) -> _Process:
        log = self.log_path.open("ab")
        command = [sys.executable, "-m", "layotto.cli", "start", "-c", str(self.config_path), *self.flags]
        self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        self.wait_ready(timeout)
        return self


def _peer_flags(pki: Pki, me: Issued, *, internal_port: int | None = None, name: str = "") -> list[str]:
    flags = ["--peer-tls-ca-file", str(pki.ca.cert), "--peer-tls-cert-file", str(me.cert)]
    flags += ["--peer-tls-key-file", str(me.key)]
    if internal_port is not None:
        flags += ["--dapr-internal-grpc-port", str(internal_port)]
    if name:
        flags += ["--peer-tls-server-name", name]
    return flags


@dataclass
class Peers:
    a: str
    intruder: str
    b_api: str
    b_internal: str


@pytest.fixture(scope="module")
def sidecar_pki(pki: Pki) -> Iterator[tuple[Issued, Issued, Issued]]:
    # B's certificate names a host the sidecars agree on, not the address they dial.
    yield pki.ca.issue("sidecar-a"), pki.ca.issue("sidecar-b", hosts=("b.sidecars.test",)), pki.client


@pytest.fixture(scope="module")
async def peers(pki: Pki, sidecar_pki: tuple[Issued, Issued, Issued]) -> AsyncIterator[Peers]:
    cert_a, cert_b, _ = sidecar_pki
    internal = free_port()
    table = {"table": {"type": "static", "metadata": {"apps": {"app-b": f"127.0.0.1:{internal}"}}}}
    async with grpc_app("app-a") as (_, port_a), grpc_app("app-b") as (_, port_b):
        b = _Process(
            {"app": {"app_id": "app-b", "grpc_callback_port": port_b}}, _peer_flags(pki, cert_b, internal_port=internal)
        )
        a = _Process(
            {"app": {"app_id": "app-a", "grpc_callback_port": port_a}, "name_resolution": table},
            _peer_flags(pki, cert_a, name="b.sidecars.test"),
        )
        # Trusts B, but presents a certificate of another CA.
        intruder = _Process(
            {"app": {"app_id": "intruder", "grpc_callback_port": port_a}, "name_resolution": table},
            _peer_flags(pki, pki.rogue_client, name="b.sidecars.test"),
        )
        started: list[_Process] = []
        try:
            for proc in (b, a, intruder):
                started.append(await asyncio.to_thread(proc.start))
            yield Peers(a.address, intruder.address, b.address, f"127.0.0.1:{internal}")
        finally:
            for proc in started:
                await asyncio.to_thread(proc.terminate)


async def _invoke(address: str, app_id: str, credentials: grpc.ChannelCredentials | None = None, **opts: Any) -> Any:
    channel = (
        grpc.aio.secure_channel(address, credentials, options=list(opts.items()))
        if credentials
        else grpc.aio.insecure_channel(address)
    )
    async with channel:
        reply = await runtime_pb2_grpc.RuntimeStub(channel).InvokeService(
            pb.InvokeServiceRequest(
                id=app_id, message=pb.CommonInvokeRequest(method="hello", data=any_pb2.Any(value=b"ping"))
            ),
            timeout=10,
        )
    return json.loads(reply.data.value)


async def test_a_invokes_b_over_mtls_through_bs_internal_listener(peers: Peers) -> None:
    answer = await _invoke(peers.a, "app-b")
    assert (answer["app"], answer["method"], answer["data"]) == ("app-b", "hello", "ping")
    # B's own API port stays as it was for B's app: plaintext, no client certificate.
    assert (await _invoke(peers.b_api, "app-b"))["app"] == "app-b"


async def test_a_sidecar_whose_certificate_is_of_another_ca_is_refused(peers: Peers) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _invoke(peers.intruder, "app-b")
    details = info.value.details() or ""
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "unreachable" in details
    # The intruder trusts B: the refusal is B's, of the intruder's certificate.
    assert "CERTIFICATE_VERIFY_FAILED" not in details


async def test_the_internal_listener_requires_a_client_certificate(
    peers: Peers, pki: Pki, sidecar_pki: tuple[Issued, Issued, Issued]
) -> None:
    named = {"grpc.ssl_target_name_override": "b.sidecars.test"}
    for credentials in (_credentials(pki.ca), _credentials(pki.ca, pki.rogue_client), None):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _invoke(peers.b_internal, "app-b", credentials, **named)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    # With one of the CA, only this app is reached: no relay, no other method.
    client = _credentials(pki.ca, sidecar_pki[2])
    assert (await _invoke(peers.b_internal, "app-b", client, **named))["app"] == "app-b"
    with pytest.raises(grpc.aio.AioRpcError) as relay:
        await _invoke(peers.b_internal, "app-a", client, **named)
    assert relay.value.code() == grpc.StatusCode.NOT_FOUND
    async with grpc.aio.secure_channel(peers.b_internal, client, options=list(named.items())) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as other:
            await runtime_pb2_grpc.RuntimeStub(channel).GetNextId(pb.GetNextIdRequest(store_name="s", key="k"))
    assert other.value.code() == grpc.StatusCode.UNIMPLEMENTED


# ---- the openssl commands of docs/operations.md ----


def _documented_commands() -> str:
    text = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    section = text.split("### Issuing the certificates", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


async def test_the_documented_openssl_commands_make_certificates_that_serve_and_dial_mtls(tmp_path: Path) -> None:
    openssl = require_binary("openssl")
    done = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-euo", "pipefail", "-c", _documented_commands()],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": str(Path(openssl).parent)},
    )
    assert done.returncode == 0, done.stderr
    assert "sidecar.crt: OK" in done.stdout
    tls = tmp_path / "tls"
    port = free_port()
    cfg = layotto_json.load_document(layotto_config(HELLO, grpc_port=port), source="<openssl>")
    apply_tls_flags(
        cfg,
        TlsFlags(
            cert_file=str(tls / "sidecar.crt"),
            key_file=str(tls / "sidecar.key"),
            client_ca_file=str(tls / "ca.crt"),
        ),
    )
    sidecar = Sidecar(cfg)
    await sidecar.start()
    try:
        # The sidecar's certificate is a client's too (clientAuth), as for invocation.
        credentials = grpc.ssl_channel_credentials(
            (tls / "ca.crt").read_bytes(), (tls / "sidecar.key").read_bytes(), (tls / "sidecar.crt").read_bytes()
        )
        assert await _say_hello(f"127.0.0.1:{port}", credentials) == "greeting"
        await _refused(f"127.0.0.1:{port}", grpc.ssl_channel_credentials((tls / "ca.crt").read_bytes()))
    finally:
        await sidecar.stop()
