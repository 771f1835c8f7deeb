"""One suite for every secret store: each backend is a row of backends.ROWS, not new test code.

Everything goes through the gRPC server with raw stubs (GetSecret / GetBulkSecret); the rows
are in backends.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.contract.secretstores.backends import ROWS, Row, remove_data
from tests.support.rows import params
from tests.support.sidecar import running_sidecar

STORE = "secrets"


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    remove_data()


@pytest.fixture(params=params(ROWS))
def backend(request: pytest.FixtureRequest) -> Row:
    b: Row = request.param
    return b


@pytest.fixture
async def stub(backend: Row) -> AsyncIterator[runtime_pb2_grpc.RuntimeStub]:
    async with running_sidecar({"secret_store": {STORE: backend.entry()}}) as (_, address):
        async with grpc.aio.insecure_channel(address) as channel:
            yield runtime_pb2_grpc.RuntimeStub(channel)


async def test_get_secret(stub: runtime_pb2_grpc.RuntimeStub, backend: Row) -> None:
    for name, expected in backend.traits.secrets:
        reply = await stub.GetSecret(pb.GetSecretRequest(store_name=STORE, key=name))
        assert dict(reply.data) == expected, name


async def test_missing_secret(stub: runtime_pb2_grpc.RuntimeStub, backend: Row) -> None:
    request = pb.GetSecretRequest(store_name=STORE, key="no-such-secret")
    if not backend.traits.missing_fails:
        assert dict((await stub.GetSecret(request)).data) == {"no-such-secret": ""}
        return
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetSecret(request)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert err.value.details() == (
        f"error when get secret : secret name => no-such-secret,store name =>{STORE},"
        "error => secret no-such-secret not found"
    )


async def test_bulk_get_secret(stub: runtime_pb2_grpc.RuntimeStub, backend: Row) -> None:
    reply = await stub.GetBulkSecret(pb.GetBulkSecretRequest(store_name=STORE))
    got = {k: dict(v.secrets) for k, v in reply.data.items()}
    for name, expected in backend.traits.secrets:
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
