"""The HTTP/1 listeners: the functions' (a request names its function in the `id` header; its
body, or its raw query string when it has none, is the guest's buffer 0) and upstream's
management endpoints (`wasm_filter`: POST /wasm/install, /wasm/uninstall, /wasm/update)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from layotto.config.layotto_json import wasm_function
from layotto.errors import LayottoError
from layotto.wasm.exchange import CallFailed, Exchange
from layotto.wasm.functions import ID_HEADER, Functions

__all__ = ["Listener", "admin_handler", "function_handler"]

log = logging.getLogger("layotto.wasm")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Headers aiohttp writes itself.
_OWN_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


class Listener:
    """One aiohttp listener on `address`, every path and method to `handler`."""

    def __init__(self, address: str, handler: Handler, *, max_body: int, grace: float) -> None:
        host, _, port = address.rpartition(":")
        self.address = address
        self.host = host.strip("[]") or "0.0.0.0"
        self.port = int(port)
        self._handler = handler
        self._max_body = max_body
        self._grace = grace
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen; OSError when the address cannot be had, with nothing left to undo."""
        app = web.Application(client_max_size=self._max_body)
        app.router.add_route("*", "/{tail:.*}", self._handler)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=self._grace)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.host, self.port).start()
        except BaseException:
            await self.stop()
            raise
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """No new requests; those in flight finish (up to the grace period)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


def function_handler(functions: Functions) -> Handler:
    async def call(request: web.Request) -> web.StreamResponse:
        function_id = request.headers.get(ID_HEADER, "")
        if not function_id:
            return web.Response(
                status=400, text=f"the request names no function (its id goes in the `{ID_HEADER}` header)"
            )
        body = await request.read()
        exchange = Exchange(
            headers=[(k.lower(), v) for k, v in request.headers.items()],
            body=bytearray(body or request.query_string.encode()),
            deadline=math.inf,
            properties={
                b"request\0path": request.path.encode(),
                b"request\0method": request.method.encode(),
                b"request\0query": request.query_string.encode(),
            },
        )
        try:
            reply = await functions.serve(function_id, exchange)
        except CallFailed as failed:
            return web.Response(status=failed.status, text=failed.message)
        headers = [(k, v) for k, v in reply.headers if k.lower() not in _OWN_HEADERS]
        response = web.Response(status=reply.status, body=reply.body)
        for key, value in headers:
            response.headers.add(key, value)
        if "content-type" not in {k.lower() for k, _ in headers}:
            response.content_type = "text/plain"
            response.charset = "utf-8"
        return response

    return call


def _name(conf: Mapping[str, Any]) -> str:
    name = conf.get("name")
    if not isinstance(name, str) or not name:
        raise LayottoError("can't get name property")
    return name


def admin_handler(functions: Functions) -> Handler:
    """Upstream's answers: 200 with no body when done, 500 with {"error": ...} when not, 404
    (no body) for a path that is not /wasm/<endpoint>."""

    async def install(conf: dict[str, Any]) -> None:
        name = _name(conf)
        await functions.install(wasm_function(conf, name, "/wasm/install"), name)

    async def uninstall(conf: dict[str, Any]) -> None:
        await functions.uninstall(_name(conf))

    async def update(conf: dict[str, Any]) -> None:
        name = _name(conf)
        count = conf.get("instance_num")
        if isinstance(count, bool) or not isinstance(count, int | float):
            raise LayottoError("can't get instance_num property")
        if int(count) <= 0:
            raise LayottoError("instance_num should be greater than 0")
        await functions.update(name, int(count))

    endpoints: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
        "install": install,
        "uninstall": uninstall,
        "update": update,
    }

    async def manage(request: web.Request) -> web.StreamResponse:
        segments = request.path.split("/")
        endpoint = endpoints.get(segments[2]) if len(segments) > 2 and segments[1] == "wasm" else None
        if endpoint is None:
            return web.Response(status=404, content_type="application/json")
        raw = await request.read()
        try:
            conf = json.loads(raw) if raw else None
            if not isinstance(conf, dict):
                raise LayottoError("invalid request body")
            await endpoint(conf)
        except (LayottoError, ValueError) as exc:
            log.error("[wasm][%s] %s", segments[2], exc)
            return web.json_response({"error": str(exc)}, status=500)
        return web.Response(status=200, content_type="application/json")

    return manage
