"""A small HTTP server for the http binding's tests: a key-value store under /kv/ and an echo."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

from aiohttp import web

from tests.support.sidecar import free_port


def _app() -> web.Application:
    store: dict[str, bytes] = {}

    async def kv(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if request.method in ("POST", "PUT", "PATCH"):
            store[key] = await request.read()
            return web.Response(status=201 if request.method == "POST" else 200)
        if request.method == "DELETE":
            store.pop(key, None)
            return web.Response(status=204)
        # A missing key reads as empty, as the redis binding answers, so one suite fits both.
        return web.Response(body=store.get(key, b""), content_type="application/octet-stream")

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        doc = {
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "headers": dict(request.headers),
            "body": body.decode(errors="replace"),
        }
        return web.json_response(doc, headers={"X-Echo": "yes"})

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="status body")

    app = web.Application()
    app.router.add_route("*", "/kv/{key}", kv)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


@contextlib.asynccontextmanager
async def http_server() -> AsyncIterator[str]:
    """Serve on a free loopback port; yields the base URL."""
    runner = web.AppRunner(_app(), access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def parse(data: bytes) -> dict[str, object]:
    doc: dict[str, object] = json.loads(data)
    return doc
