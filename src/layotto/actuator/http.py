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
from layotto.config.model import ComponentSpec, RuntimeConfig
from layotto.errors import ConfigError
from layotto.observability.logging import configured_levels, set_level
from layotto.runtime.delivery import DeliveryService
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
#: The one route that reads a body (`{"component", "level"}`), and the most of it it reads.
LOGGER_PATH = "/actuator/logger"
MAX_LOGGER_BODY = 4096

#: The component metadata key that says whether readiness depends on the component.
CRITICAL_KEY = "critical"
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
#: The readiness part that waits for the app's subscriptions.
SUBSCRIPTIONS = "app_subscriptions"


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
#: Routes for a path and everything under it (e.g. "/dashboard"): prefix -> handler of (method, path).
PrefixRoute = Callable[[str, str], Awaitable[tuple[int, str, bytes]]]


def _combine(statuses: list[str]) -> str:
    if "DOWN" in statuses:
        return "DOWN"
    if "INIT" in statuses:
        return "INIT"
    return "UP"


def critical_flag(spec: ComponentSpec) -> bool | None:
    """The component's `critical` metadata (true/false, in any case; a JSON boolean too), None
    when it has none; a ConfigError for any other value."""
    for key, value in spec.metadata.items() if isinstance(spec.metadata, dict) else ():
        if key.lower() != CRITICAL_KEY:
            continue
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"metadata {key} must be true or false, got {value!r}", spec.source)
    return None


def critical_flags(config: RuntimeConfig) -> dict[tuple[str, str], bool]:
    """(block, name) -> the `critical` flag of every component that sets one (checked)."""
    found: dict[tuple[str, str], bool] = {}
    for spec in config.components:
        flag = critical_flag(spec)
        if flag is not None:
            found[(spec.block, spec.name)] = flag
    return found


def _is_critical(block: str, name: str, flags: dict[tuple[str, str], bool], subscribed: set[str]) -> bool:
    """Whether readiness fails with the component: its `critical` flag, else state stores and
    the pub/subs the app subscribes to."""
    flag = flags.get((block, name))
    if flag is not None:
        return flag
    return block == "state" or (block == "pubsub" and name in subscribed)


def _delivery(rt: Runtime) -> DeliveryService | None:
    return next((s for s in rt.services if isinstance(s, DeliveryService)), None)


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
        self.prefixes: dict[str, PrefixRoute] = {}
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_body = max_body
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        #: (block, name) -> the `critical` flag of the components that set one.
        self.critical = critical_flags(rt.config)

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
        """Liveness: the runtime's state. Readiness, once started: also every component's ping
        and, with an app channel, whether the app's subscriptions are loaded. A failing
        component fails readiness only when it is critical (`_is_critical`); one that is not
        is DOWN in the details, with the overall status DEGRADED and the answer 200."""
        reason = {"INIT": "starting", "DOWN": "shutdown"}.get(self.rt.status, "")
        components: dict[str, object] = {"runtime_startup": {"status": self.rt.status, "details": {"reason": reason}}}
        statuses = [self.rt.status]
        degraded = False
        if kind == "readiness" and self.rt.status == "UP":
            delivery = _delivery(self.rt)
            if delivery is not None and not delivery.ready.is_set():
                waiting = {"reason": "waiting for the app's subscriptions"}
                components[SUBSCRIPTIONS] = {"status": "INIT", "details": waiting}
                statuses.append("INIT")
            subscribed = {s.pubsub_name for s in delivery.wanted} if delivery is not None else set()
            health = await self.rt.health()
            names = [name for _, name in health]
            for (block, name), status in health.items():
                entry: dict[str, object] = {"status": status}
                if status != "UP":
                    critical = _is_critical(block, name, self.critical, subscribed)
                    details: dict[str, object] = {"critical": critical}
                    error = self.rt.component_errors.get((block, name))
                    if error:
                        details["error"] = error
                    entry["details"] = details
                    if critical:
                        statuses.append(status)
                    else:
                        degraded = True
                # Upstream keys components by name; a name two blocks share is told apart by block.
                components[name if names.count(name) == 1 else f"{block}.{name}"] = entry
        overall = _combine(statuses)
        if overall == "UP" and degraded:
            overall = "DEGRADED"
        # Upstream answers 500 for INIT/DOWN; a component that is down is 503, which is what
        # load balancers and Kubernetes probes expect of a temporarily unready instance, and so
        # is a sidecar that drains on shutdown (readiness only: it is still alive).
        unready = self.rt.status == "UP" or (kind == "readiness" and self.rt.status == "DOWN")
        code = 200 if overall in ("UP", "DEGRADED") else (503 if unready else 500)
        return code, {"status": overall, "components": components}

    def logger(self, method: str, body: bytes) -> tuple[int, str, bytes]:
        """Upstream's endpoint: POST `{"component": "<logger>", "level": "<level>"}` sets the
        level (200 `{}`); an error is 500 (upstream's code) with `{"error": "..."}` here. GET
        (ours) lists the loggers that have a level of their own."""
        if method == "GET":
            return 200, "application/json", json.dumps({"loggers": configured_levels()}).encode()
        try:
            request = json.loads(body) if body else None
            if not isinstance(request, dict):
                raise ValueError('give {"component": "<logger>", "level": "<level>"}')
            component, level = request.get("component", ""), request.get("level")
            if not isinstance(component, str) or not isinstance(level, str):
                raise ValueError('"component" and "level" must be strings')
            name, number = set_level(component, level)
        except ValueError as exc:  # json's errors too
            return 500, "application/json", json.dumps({"error": str(exc)}).encode()
        log.info("log level of %s set to %s", name, number)
        return 200, "application/json", b"{}"

    async def _route(self, method: str, path: str, body: bytes = b"") -> tuple[int, str, bytes]:
        path = path.split("?", 1)[0]
        if path == LOGGER_PATH:
            return self.logger(method, body)
        if path.startswith("/actuator/health/"):
            kind = path.removeprefix("/actuator/health/")
            if kind not in ("liveness", "readiness"):
                return 500, "application/json", b"{}"
            code, health = await self.health(kind)
            return code, "application/json", json.dumps(health).encode()
        if path == "/actuator/info" and method == "GET":
            info = {"app": {"name": "Layotto", "version": __version__, "compiled": _STARTED}}
            return 200, "application/json", json.dumps(info).encode()
        route = self.routes.get(path)
        if route is not None:
            return await route()
        for prefix, handler in self.prefixes.items():
            if path == prefix or path.startswith(prefix + "/"):
                return await handler(method, path)
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
                        body = b""
                        if len(parts) >= 2 and parts[1].split("?", 1)[0] == LOGGER_PATH:
                            if length > MAX_LOGGER_BODY:
                                raise _Refused(413)
                            body = await reader.readexactly(length)
                        else:
                            await _skip(reader, length)
                except _Refused as refused:
                    writer.write(_response(refused.status, "text/plain", b"", close=True))
                    await self._linger(reader, writer)
                    break
                if len(parts) < 2:
                    status, ctype, answer = 400, "text/plain", b""
                else:
                    status, ctype, answer = await self._route(parts[0], parts[1], body)
                    log.debug("%s %s %d", parts[0], parts[1], status)
                writer.write(_response(status, ctype, answer, close=not keep_alive))
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
