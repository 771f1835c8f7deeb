"""A minimal HTTP/1.1 listener for /actuator/*. It serves a handful of tiny GETs, so it is
written on asyncio streams rather than pulling in a web framework."""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging
from collections.abc import Awaitable, Callable

from layotto import __version__
from layotto.runtime.runtime import Runtime

log = logging.getLogger("layotto.actuator")

_STARTED = _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()
_REASONS = {
    200: "OK",
    404: "Not Found",
    405: "Method Not Allowed",
    400: "Bad Request",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

#: Extra routes other modules add (e.g. "/metrics"): path -> handler returning (status, content type, body).
Route = Callable[[], Awaitable[tuple[int, str, bytes]]]


def _combine(statuses: list[str]) -> str:
    if "DOWN" in statuses:
        return "DOWN"
    if "INIT" in statuses:
        return "INIT"
    return "UP"


class Actuator:
    def __init__(self, rt: Runtime, address: str) -> None:
        self.rt = rt
        self.host, _, port = address.rpartition(":")
        self.host = self.host.strip("[]") or "0.0.0.0"
        self.port = int(port)
        self.routes: dict[str, Route] = {}
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def health(self, kind: str) -> tuple[int, dict[str, object]]:
        reason = {"INIT": "starting", "DOWN": "shutdown"}.get(self.rt.status, "")
        components: dict[str, object] = {"runtime_startup": {"status": self.rt.status, "details": {"reason": reason}}}
        if kind == "readiness" and self.rt.status == "UP":
            health = await self.rt.health()
            names = [name for _, name in health]
            for (block, name), status in health.items():
                # Upstream keys components by name; a name two blocks share is told apart by block.
                components[name if names.count(name) == 1 else f"{block}.{name}"] = {"status": status}
        statuses = [str(c["status"]) for c in components.values() if isinstance(c, dict)]
        overall = _combine(statuses)
        # Upstream answers 500 for INIT/DOWN; a component that is down is 503, which is what
        # load balancers and Kubernetes probes expect of a temporarily unready instance.
        code = 200 if overall == "UP" else (503 if self.rt.status == "UP" else 500)
        return code, {"status": overall, "components": components}

    async def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        path = path.split("?", 1)[0]
        if path.startswith("/actuator/health/"):
            kind = path.removeprefix("/actuator/health/")
            if kind not in ("liveness", "readiness"):
                return 500, "application/json", b"{}"
            code, body = await self.health(kind)
            return code, "application/json", json.dumps(body).encode()
        if path == "/actuator/info" and method == "GET":
            info = {"app": {"name": "Layotto", "version": __version__, "compiled": _STARTED}}
            return 200, "application/json", json.dumps(info).encode()
        route = self.routes.get(path)
        if route is not None:
            return await route()
        return 404, "text/plain", b""

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    break
                parts = request_line.decode("latin-1").split()
                length, keep_alive = 0, True
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip() or 0)
                    elif name.strip().lower() == "connection" and value.strip().lower() == "close":
                        keep_alive = False
                if length:
                    await reader.readexactly(length)
                if len(parts) < 2:
                    status, ctype, body = 400, "text/plain", b""
                else:
                    status, ctype, body = await self._route(parts[0], parts[1])
                head = (
                    f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                )
                writer.write(head.encode() + body)
                await writer.drain()
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()
