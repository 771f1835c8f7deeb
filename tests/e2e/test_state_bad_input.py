"""Bad State API input: upstream's code and message, nothing changes, the server keeps serving."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable

import grpc
import pytest

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.sidecar import running_sidecar

STORE = "bad_input_store"
CONFIG = {"state": {STORE: {"type": "in-memory", "metadata": {}}}}


@pytest.fixture(scope="module")
async def stub() -> AsyncIterator[runtime_pb2_grpc.RuntimeStub]:
    async with running_sidecar(CONFIG) as (_, address), grpc.aio.insecure_channel(address) as channel:
        yield runtime_pb2_grpc.RuntimeStub(channel)


async def rpc_error(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError("the call was expected to fail")


def all_state_calls(stub: runtime_pb2_grpc.RuntimeStub, store: str, key: str) -> list[Awaitable[object]]:
    item = pb.StateItem(key=key, value=b"v")
    return [
        stub.GetState(pb.GetStateRequest(store_name=store, key=key)),
        stub.GetBulkState(pb.GetBulkStateRequest(store_name=store, keys=[key])),
        stub.SaveState(pb.SaveStateRequest(store_name=store, states=[item])),
        stub.DeleteState(pb.DeleteStateRequest(store_name=store, key=key)),
        stub.DeleteBulkState(pb.DeleteBulkStateRequest(store_name=store, states=[item])),
        stub.ExecuteStateTransaction(
            pb.ExecuteStateTransactionRequest(
                storeName=store, operations=[pb.TransactionalStateOperation(operationType="upsert", request=item)]
            )
        ),
    ]


async def still_serving(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    key = f"alive-{uuid.uuid4().hex}"
    await stub.SaveState(pb.SaveStateRequest(store_name=STORE, states=[pb.StateItem(key=key, value=b"ok")]))
    assert (await stub.GetState(pb.GetStateRequest(store_name=STORE, key=key))).data == b"ok"


async def stored(stub: runtime_pb2_grpc.RuntimeStub, key: str) -> pb.GetStateResponse:
    reply: pb.GetStateResponse = await stub.GetState(pb.GetStateRequest(store_name=STORE, key=key))
    return reply


async def test_unknown_store(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    for call in all_state_calls(stub, "nope", "k"):
        err = await rpc_error(call)
        assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "state store nope is not found")
    await still_serving(stub)


async def test_no_state_store_configured() -> None:
    hello_only = {"hellos": {"helloworld": {"type": "helloworld", "hello": "greeting"}}}
    async with running_sidecar(hello_only) as (_, address), grpc.aio.insecure_channel(address) as channel:
        no_state = runtime_pb2_grpc.RuntimeStub(channel)
        for call in all_state_calls(no_state, STORE, "k"):
            err = await rpc_error(call)
            assert (err.code(), err.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "state store is not configured")
        reply = await no_state.SayHello(pb.SayHelloRequest(service_name="helloworld"))
        assert reply.hello == "greeting"


async def test_empty_key_is_rejected_and_stores_nothing(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    for call in all_state_calls(stub, STORE, ""):
        err = await rpc_error(call)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details() == f"key is empty in state store {STORE}"
    await still_serving(stub)


async def test_malformed_and_stale_etags_change_nothing(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    key = f"etag-{uuid.uuid4().hex}"
    await stub.SaveState(pb.SaveStateRequest(store_name=STORE, states=[pb.StateItem(key=key, value=b"v1")]))
    for etag, code in (("garbage", grpc.StatusCode.INVALID_ARGUMENT), ("7", grpc.StatusCode.ABORTED)):
        item = pb.StateItem(key=key, value=b"changed", etag=pb.Etag(value=etag))
        err = await rpc_error(stub.SaveState(pb.SaveStateRequest(store_name=STORE, states=[item])))
        assert err.code() == code
        assert err.details().startswith(f"failed saving state in state store {STORE}: ")
        err = await rpc_error(
            stub.DeleteState(pb.DeleteStateRequest(store_name=STORE, key=key, etag=pb.Etag(value=etag)))
        )
        assert err.code() == code
    reply = await stored(stub, key)
    assert (reply.data, reply.etag) == (b"v1", "1")
    await still_serving(stub)


async def test_oversized_message_is_refused_and_the_server_stays_up(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    key = f"big-{uuid.uuid4().hex}"
    huge = pb.StateItem(key=key, value=b"x" * (4 * 1024 * 1024 + 1))
    err = await rpc_error(stub.SaveState(pb.SaveStateRequest(store_name=STORE, states=[huge])))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (await stored(stub, key)).etag == ""
    await still_serving(stub)


async def test_unknown_transaction_operation_applies_nothing(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    first, second = f"tx-{uuid.uuid4().hex}", f"tx-{uuid.uuid4().hex}"
    request = pb.ExecuteStateTransactionRequest(
        storeName=STORE,
        operations=[
            pb.TransactionalStateOperation(operationType="upsert", request=pb.StateItem(key=first, value=b"v")),
            pb.TransactionalStateOperation(operationType="merge", request=pb.StateItem(key=second, value=b"v")),
        ],
    )
    err = await rpc_error(stub.ExecuteStateTransaction(request))
    assert (err.code(), err.details()) == (grpc.StatusCode.UNIMPLEMENTED, "operation type merge not supported")
    assert (await stored(stub, first)).etag == ""
    assert (await stored(stub, second)).etag == ""
    await still_serving(stub)
