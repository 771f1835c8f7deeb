"""A state backend that goes away: calls fail with UNAVAILABLE and a clear message, nothing hangs,
and the store reconnects by itself once the backend is back.

The outage is a TCP proxy between the sidecar and the shared server, cut and restored here,
so no shared service is ever stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.services import require
from tests.support.sidecar import free_port, running_sidecar

from ..contract.state.backends import TABLE, _drop_mysql_table, _drop_pg_table


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; `cut()` drops the listener and every connection."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.close()

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()


BACKENDS = {
    "redis": (6379, lambda port: {"type": "redis", "metadata": {"redisHost": f"127.0.0.1:{port}"}}),
    "postgresql": (
        5432,
        lambda port: {
            "type": "postgresql",
            "metadata": {
                "connectionString": f"host=127.0.0.1 port={port} user=postgres dbname=test",
                "tableName": TABLE,
            },
        },
    ),
    "mysql": (
        3306,
        lambda port: {
            "type": "mysql",
            "metadata": {"connectionString": f"root:@tcp(127.0.0.1:{port})/", "schemaName": "test", "tableName": TABLE},
        },
    ),
}


@pytest.fixture(params=sorted(BACKENDS))
async def outage(request: pytest.FixtureRequest) -> AsyncIterator[tuple[TcpProxy, runtime_pb2_grpc.RuntimeStub]]:
    name: str = request.param
    require(name)
    target, component = BACKENDS[name]
    proxy = TcpProxy(target)
    await proxy.start()
    try:
        async with running_sidecar({"state": {"store": component(proxy.port)}}) as (_, address):
            async with grpc.aio.insecure_channel(address) as channel:
                yield proxy, runtime_pb2_grpc.RuntimeStub(channel)
    finally:
        await proxy.cut()
        if name == "postgresql":
            await _drop_pg_table()
        elif name == "mysql":
            await _drop_mysql_table()


async def test_backend_outage_is_unavailable_then_recovers(
    outage: tuple[TcpProxy, runtime_pb2_grpc.RuntimeStub],
) -> None:
    proxy, stub = outage
    key = f"outage-{uuid.uuid4().hex}"
    await stub.SaveState(pb.SaveStateRequest(store_name="store", states=[pb.StateItem(key=key, value=b"before")]))

    await proxy.cut()
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetState(pb.GetStateRequest(store_name="store", key=key), timeout=15)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()
    assert caught.value.details().startswith(f"fail to get {key} from state store store: ")
    assert "unavailable" in caught.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SaveState(
            pb.SaveStateRequest(store_name="store", states=[pb.StateItem(key=key, value=b"x")]), timeout=15
        )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()
    assert time.monotonic() - started < 12, "an unreachable backend must fail fast, not hang"

    await proxy.start()
    deadline = time.monotonic() + 10
    while True:
        try:
            reply = await stub.GetState(pb.GetStateRequest(store_name="store", key=key), timeout=5)
            break
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc.details()
            assert time.monotonic() < deadline, "the store did not reconnect within 10 s"
            await asyncio.sleep(0.1)
    assert reply.data == b"before"
    await stub.SaveState(pb.SaveStateRequest(store_name="store", states=[pb.StateItem(key=key, value=b"after")]))
    assert (await stub.GetState(pb.GetStateRequest(store_name="store", key=key))).data == b"after"
