"""A minimal HTTP/1.1 listener for /actuator/*. It serves a handful of tiny GETs, so it is
written on asyncio streams rather than pulling in a web framework.

It is reachable by whatever can reach the port, so nothing a client does may hold resources for
good: a connection idle for `idle_timeout` (between requests, or part way through one) is
closed, at most `max_connections` are open at once (more are answered 503 and closed), and a
request body over `max_body` is answered 413 without being read (its probes send none)."""

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
    411: "Length Required",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

#: Seconds a connection may stay silent (between requests or within one) before it is closed.
IDLE_TIMEOUT = 15.0
#: Connections open at once; one more is answered 503 and closed.
MAX_CONNECTIONS = 256
#: The largest request body read (the actuator's routes take none); a larger one is refused.
MAX_BODY = 1 << 20
#: Header lines of one request.
MAX_HEADERS = 100
#: How long a refused request's unread body is read and dropped, so that the client sees the
#: answer instead of a reset.
_LINGER = 1.0


class _Refused(Exception):  # noqa: N818  (a refusal to answer, not an error of ours)
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _response(status: int, ctype: str, body: bytes, *, close: bool = False) -> bytes:
    connection = "Connection: close\r\n" if close else ""
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\n{connection}\r\n"
    )
    return head.encode() + body


#: Extra routes other modules add (e.g. "/metrics"): path -> handler returning (status, content type, body).
Route = Callable[[], Awaitable[tuple[int, str, bytes]]]


def _combine(statuses: list[str]) -> str:
    if "DOWN" in statuses:
        return "DOWN"
    if "INIT" in statuses:
        return "INIT"
    return "UP"


async def _skip(reader: asyncio.StreamReader, length: int) -> None:
    """Read and drop a body of `length` bytes, a piece at a time: no route reads one."""
    while length > 0:
        chunk = await reader.read(min(length, 1 << 16))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", length)
        length -= len(chunk)


class Actuator:
    def __init__(
        self,
        rt: Runtime,
        address: str,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        max_body: int = MAX_BODY,
    ) -> None:
        self.rt = rt
        self.host, _, port = address.rpartition(":")
        self.host = self.host.strip("[]") or "0.0.0.0"
        self.port = int(port)
        self.routes: dict[str, Route] = {}
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_body = max_body
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        if self.port == 0:
            self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            # Open keep-alive connections would otherwise outlive the listener.
            for writer in list(self._connections):
                writer.close()
            await self._server.wait_closed()

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._connections)

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
        # load balancers and Kubernetes probes expect of a temporarily unready instance, and so
        # is a sidecar that drains on shutdown (readiness only: it is still alive).
        unready = self.rt.status == "UP" or (kind == "readiness" and self.rt.status == "DOWN")
        code = 200 if overall == "UP" else (503 if unready else 500)
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

    async def _read_head(self, reader: asyncio.StreamReader) -> tuple[list[str], int, bool] | None:
        """The request line's parts, the body's length and whether the connection stays open;
        None when the client closed it. Raises _Refused for a request not served."""
        request_line = await reader.readline()
        if not request_line:
            return None
        parts = request_line.decode("latin-1").split()
        length, keep_alive = 0, True
        for _ in range(MAX_HEADERS + 1):
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "content-length":
                length = int(value or 0)
                if length < 0:
                    raise _Refused(400)
                if length > self.max_body:
                    raise _Refused(413)
            elif name == "transfer-encoding":
                # A body of unknown length; no route takes a body, so it is not read.
                raise _Refused(411)
            elif name == "connection" and value.lower() == "close":
                keep_alive = False
        else:
            raise _Refused(431)
        return parts, length, keep_alive

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= self.max_connections:
            writer.write(_response(503, "text/plain", b"too many connections", close=True))
            writer.close()
            return
        self._connections.add(writer)
        try:
            while True:
                try:
                    async with asyncio.timeout(self.idle_timeout):
                        head = await self._read_head(reader)
                        if head is None:
                            break
                        parts, length, keep_alive = head
                        await _skip(reader, length)
                except _Refused as refused:
                    writer.write(_response(refused.status, "text/plain", b"", close=True))
                    await self._linger(reader, writer)
                    break
                if len(parts) < 2:
                    status, ctype, body = 400, "text/plain", b""
                else:
                    status, ctype, body = await self._route(parts[0], parts[1])
                writer.write(_response(status, ctype, body, close=not keep_alive))
                async with asyncio.timeout(self.idle_timeout):
                    await writer.drain()
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, TimeoutError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Send the answer, then read and drop what the client still sends for a moment: closing
        with unread data resets the connection, and the client may lose the answer with it."""
        try:
            async with asyncio.timeout(min(_LINGER, self.idle_timeout)):
                await writer.drain()
                writer.write_eof()
                while await reader.read(1 << 16):
                    pass
        except (ConnectionError, TimeoutError, OSError):
            pass
