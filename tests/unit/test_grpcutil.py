"""The wrappers the telemetry and filter interceptors put around handlers keep every kind of
streaming handler working: an async generator that yields, and a coroutine that writes with
context.write() (the runtime's subscription and watch streams)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from layotto.grpcutil import wrap_observed, wrap_unary
from tests.support.sidecar import free_port


async def _yields(request: bytes, context: Any) -> Any:
    for part in (b"a", b"b"):
        yield part


async def _writes(request: bytes, context: Any) -> None:
    for part in (b"a", b"b"):
        await context.write(part)


def _identity(data: bytes) -> bytes:
    return data


@pytest.mark.parametrize("behaviour", [_yields, _writes], ids=["yields", "writes"])
@pytest.mark.parametrize("wrapper", ["observed", "unary"])
async def test_a_wrapped_server_stream_sends_every_message(behaviour: Any, wrapper: str) -> None:
    finished: list[bool] = []
    handler = grpc.unary_stream_rpc_method_handler(behaviour, _identity, _identity)
    if wrapper == "observed":
        wrapped = wrap_observed(handler, lambda request, context: None, lambda _, s, ok, c: finished.append(ok))
    else:

        async def before(context: Any) -> None:
            return None

        wrapped = wrap_unary(handler, before, lambda seconds, ok: finished.append(ok))
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.S", {"M": wrapped})])
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_stream("/t.S/M", request_serializer=_identity, response_deserializer=_identity)
            assert [m async for m in call(b"")] == [b"a", b"b"]
    finally:
        await server.stop(None)
    assert finished == [True]
