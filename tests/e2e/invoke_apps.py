"""Apps for the invocation tests: a gRPC AppCallback app and an HTTP app, both echoing."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import any_pb2

from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2_grpc
from tests.support.sidecar import free_port


@dataclass
class Seen:
    """What the app received, for assertions."""

    calls: list[Any] = field(default_factory=list)


class EchoApp(appcallback_pb2_grpc.AppCallbackServicer):
    def __init__(self, name: str) -> None:
        self.name = name
        self.seen = Seen()

    async def OnInvoke(self, request: cb.AppInvokeRequest, context: Any) -> cb.AppInvokeResponse:
        self.seen.calls.append(request)
        if request.method == "sleep":
            await asyncio.sleep(2)
        if request.method == "fail":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad input from the app")
        doc = {
            "app": self.name,
            "method": request.method,
            "data": request.data.value.decode(),
            "content_type": request.content_type,
            "verb": request.http_verb,
            "query": request.querystring,
            "metadata": dict(request.metadata),
        }
        return cb.AppInvokeResponse(
            data=any_pb2.Any(value=json.dumps(doc).encode()),
            content_type="application/x-echo",
            metadata={"x-answered-by": self.name},
        )


@contextlib.asynccontextmanager
async def grpc_app(name: str, port: int | None = None) -> AsyncIterator[tuple[EchoApp, int]]:
    servicer = EchoApp(name)
    server = grpc.aio.server()
    appcallback_pb2_grpc.add_AppCallbackServicer_to_server(servicer, server)
    port = port or free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield servicer, port
    finally:
        await server.stop(None)


@contextlib.asynccontextmanager
async def http_app(name: str) -> AsyncIterator[tuple[Seen, int]]:
    seen = Seen()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        seen.calls.append(request)
        if request.path == "/boom":
            return web.Response(status=500, text="boom")
        doc = {
            "app": name,
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "body": body.decode(),
            "headers": {k.lower(): v for k, v in request.headers.items()},
        }
        return web.Response(
            body=json.dumps(doc).encode(), content_type="application/x-echo", headers={"X-Answered-By": name}
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield seen, port
    finally:
        await runner.cleanup()
