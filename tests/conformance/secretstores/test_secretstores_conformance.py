"""One suite for every secret store: each backend is a row of BACKENDS, not new test code.

Everything goes through the gRPC server with raw stubs (GetSecret / GetBulkSecret).
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from layotto.proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.sidecar import running_sidecar

STORE = "secrets"
_RUN = uuid.uuid4().hex[:8].upper()
_ENV_PREFIX = f"LAYOTTO_TEST_{_RUN}_"
_FILE_DOC = {"db": "pw", "nested": {"a": "x", "b": {"c": "y"}}, "port": 5432, "list": ["p", "q"]}


def _secrets_file() -> str:
    path = Path(tempfile.gettempdir()) / f"layotto-secrets-{_RUN}.json"
    if not path.exists():
        path.write_text(json.dumps(_FILE_DOC))
    return str(path)


def _env_store() -> dict[str, Any]:
    os.environ[_ENV_PREFIX + "DB"] = "pw"
    os.environ[_ENV_PREFIX + "TOKEN"] = "t0k"
    return {"type": "local.env", "metadata": {"prefix": _ENV_PREFIX}}


@dataclass(frozen=True)
class Backend:
    id: str
    entry: Callable[[], dict[str, Any]]
    #: (secret name, the data GetSecret returns for it)
    secrets: list[tuple[str, dict[str, str]]]
    #: GetSecret of an unknown name fails (local.env answers an empty value instead, as Dapr).
    missing_fails: bool = True


BACKENDS = [
    Backend(
        "local.file",
        lambda: {"type": "local.file", "metadata": {"secretsFile": _secrets_file()}},
        [
            ("db", {"db": "pw"}),
            ("nested:a", {"nested:a": "x"}),
            ("nested:b:c", {"nested:b:c": "y"}),
            ("port", {"port": "5432"}),
            ("list:1", {"list:1": "q"}),
        ],
    ),
    Backend(
        "local.file-multiValued",
        lambda: {
            "type": "local.file",
            "metadata": {"secretsFile": _secrets_file(), "multiValued": "true", "nestedSeparator": "."},
        },
        [("db", {"db": "pw"}), ("nested", {"a": "x", "b.c": "y"}), ("list", {"0": "p", "1": "q"})],
    ),
    Backend("local.env", _env_store, [("DB", {"DB": "pw"}), ("TOKEN", {"TOKEN": "t0k"})], missing_fails=False),
]


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    (Path(tempfile.gettempdir()) / f"layotto-secrets-{_RUN}.json").unlink(missing_ok=True)
    for name in ("DB", "TOKEN"):
        os.environ.pop(_ENV_PREFIX + name, None)


@pytest.fixture(params=[pytest.param(b, id=b.id) for b in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    b: Backend = request.param
    return b


@pytest.fixture
async def stub(backend: Backend) -> AsyncIterator[runtime_pb2_grpc.RuntimeStub]:
    async with running_sidecar({"secret_store": {STORE: backend.entry()}}) as (_, address):
        async with grpc.aio.insecure_channel(address) as channel:
            yield runtime_pb2_grpc.RuntimeStub(channel)


async def test_get_secret(stub: runtime_pb2_grpc.RuntimeStub, backend: Backend) -> None:
    for name, expected in backend.secrets:
        reply = await stub.GetSecret(pb.GetSecretRequest(store_name=STORE, key=name))
        assert dict(reply.data) == expected, name


async def test_missing_secret(stub: runtime_pb2_grpc.RuntimeStub, backend: Backend) -> None:
    request = pb.GetSecretRequest(store_name=STORE, key="no-such-secret")
    if not backend.missing_fails:
        assert dict((await stub.GetSecret(request)).data) == {"no-such-secret": ""}
        return
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetSecret(request)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert err.value.details() == (
        f"error when get secret : secret name => no-such-secret,store name =>{STORE},"
        "error => secret no-such-secret not found"
    )


async def test_bulk_get_secret(stub: runtime_pb2_grpc.RuntimeStub, backend: Backend) -> None:
    reply = await stub.GetBulkSecret(pb.GetBulkSecretRequest(store_name=STORE))
    got = {k: dict(v.secrets) for k, v in reply.data.items()}
    for name, expected in backend.secrets:
        assert got.get(name) == expected, name


async def test_unknown_store(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    for call in (
        stub.GetSecret(pb.GetSecretRequest(store_name="nope", key="db")),
        stub.GetBulkSecret(pb.GetBulkSecretRequest(store_name="nope")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == "error when get secret but not find : nope"


async def test_no_secret_store_configured() -> None:
    async with running_sidecar({"app": {"app_id": "x"}}) as (_, address), grpc.aio.insecure_channel(address) as ch:
        stub = runtime_pb2_grpc.RuntimeStub(ch)
        for call in (
            stub.GetSecret(pb.GetSecretRequest(store_name=STORE, key="db")),
            stub.GetBulkSecret(pb.GetBulkSecretRequest(store_name=STORE)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert err.value.details() == "error when get secret but not find configured"
