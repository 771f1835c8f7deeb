"""The sidecar's logs: text or JSON lines, a level per logger, quiet third-party loggers, the
access log of API calls, the start banner, and levels changed while it runs.

- `parse_levels("info,layotto.pubsub=debug")`: the default level, then `logger=level` pairs.
- `configure(levels, "json")`: one handler on the root logger writing to stderr, as text
  (`time LEVEL logger: message`) or one JSON object per line: `time` (RFC 3339, UTC), `level`,
  `logger`, `message`, and `component` and `trace_id`/`span_id` when known, `exc_info` as text,
  with whatever a record carries in `extra=`.
- `COMPONENT`: the component the current call is for. The API's telemetry interceptor and the
  Dapr HTTP middleware set it; a record logged while the call runs carries it, as it carries
  the trace id of the call's span (`tracing.CURRENT`), so a backend's warning names both
  (`ContextFilter` stamps them on the record, on the handler `configure` installs).
- `AccessLogInterceptor` and `http_middleware`: one `layotto.access` record per gRPC call
  and per Dapr HTTP request (`--access-log`).
- `set_level(name, level)`: upstream's `POST /actuator/logger {"component", "level"}`.

Python's logging keeps the loggers; nothing here keeps state of its own beyond the handler it
installs (which remembers the levels it set, to undo them when configured again).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from layotto.grpcutil import Handler, WrappingInterceptor, status_name, wrap_observed
from layotto.observability.tracing.span import CURRENT

if TYPE_CHECKING:
    import grpc
    from aiohttp import web
    from aiohttp.typedefs import Middleware

#: The configured component the current API call (or delivery) is for; "" when none is known.
COMPONENT: ContextVar[str] = ContextVar("layotto_log_component", default="")

#: The logger of the access log.
ACCESS = "layotto.access"

#: Loggers of the libraries the sidecar runs on, at WARNING unless `--log-level` names them:
#: at DEBUG they log every SQL statement, frame or poll (aiosqlite alone, a line per query).
QUIET = (
    "aetcd",
    "aio_pika",
    "aiohttp",
    "aiokafka",
    "aiomcache",
    "aiomqtt",
    "aiomysql",
    "aiormq",
    "aiosmtplib",
    "aiosqlite",
    "aiozk",
    "asyncio",
    "asyncpg",
    "botocore",
    "boto3",
    "grpc",
    "h2",
    "hpack",
    "httpcore",
    "httpx",
    "kazoo",
    "nats",
    "paho",
    "pamqp",
    "redis",
    "s3transfer",
    "urllib3",
    "wasmtime",
    "websockets",
)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")

#: Level names taken in any case: Python's (Dapr's "warn" and "fatal" among them) and
#: upstream's "trace", which Python has not (it is DEBUG).
_LEVELS: dict[str, int] = {
    **{name.lower(): number for name, number in logging.getLevelNamesMapping().items()},
    "trace": logging.DEBUG,
}
LEVEL_NAMES = tuple(_LEVELS)

_LOGGER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
#: Where the handler `configure` installs is found again.
_HANDLER_NAME = "layotto"


def level_number(text: str) -> int:
    """The number of a level name, in any case; ValueError naming the choices."""
    number = _LEVELS.get(text.strip().lower())
    if number is None:
        raise ValueError(f"invalid choice: {text.strip()!r} (choose from {', '.join(LEVEL_NAMES)})")
    return number


@dataclass(frozen=True)
class Levels:
    """`--log-level`: the root logger's level and the levels of named loggers."""

    root: int = logging.INFO
    loggers: Mapping[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        parts = [logging.getLevelName(self.root).lower()]
        parts += [f"{name}={logging.getLevelName(level).lower()}" for name, level in self.loggers.items()]
        return ",".join(parts)


def parse_levels(text: str) -> Levels:
    """`info`, or `info,layotto.pubsub=debug,grpc=info`: at most one bare level (the default,
    INFO when absent; also `root=LEVEL`), then `logger=level` pairs. A ValueError names the
    part that is wrong."""
    root: int | None = None
    loggers: dict[str, int] = {}
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        name, equals, level = part.rpartition("=")
        name = name.strip()
        if not equals:
            if root is not None:
                raise ValueError(f"{part!r}: give one default level; name the logger of the others (logger=level)")
            root = level_number(part)
            continue
        try:
            number = level_number(level)
        except ValueError as exc:
            raise ValueError(f"{part!r}: {exc}") from None
        if name.lower() == "root":
            root = number
        elif not _LOGGER_NAME.match(name):
            raise ValueError(f"{part!r}: {name!r} is not a logger name (as in layotto.pubsub=debug)")
        elif name in loggers:
            raise ValueError(f"{part!r}: the level of {name} is given twice")
        else:
            loggers[name] = number
    if root is None and not loggers:
        raise ValueError(f"invalid choice: {text.strip()!r} (choose from {', '.join(LEVEL_NAMES)})")
    return Levels(logging.INFO if root is None else root, loggers)


# ---- formatting ----

#: A LogRecord's own attributes: whatever else it has came with `extra=`.
_RECORD_KEYS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _time(created: float) -> str:
    moment = _dt.datetime.fromtimestamp(created, _dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ContextFilter(logging.Filter):
    """Stamps a record with the component and the trace of the call it is logged in
    (`component`, `trace_id`, `span_id`), where it has none from `extra=`: a handler's filter
    runs in the logging call's context, a formatter may not (a queued handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = record.__dict__
        if "component" not in fields:
            component = COMPONENT.get()
            if component:
                fields["component"] = component
        if "trace_id" not in fields:
            span = CURRENT.get()
            if span is not None:
                fields["trace_id"] = span.w3c_trace_id
                fields["span_id"] = span.span_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line; a record's `extra=` fields are fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_KEYS:
                out[key] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc_info"] = record.exc_text
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever `sys.stderr` is when a record comes (as logging's last resort does),
    so that a replaced stderr (a test's capture, a daemon's redirection) is followed."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # StreamHandler.__init__ sets it; the property is the stream


def configure(
    levels: Levels, fmt: str = "text", *, access_log: bool = False, stream: TextIO | None = None
) -> logging.Handler:
    """Log to `stream` (stderr by default) in `fmt` ("text" or "json"), at `levels`; the
    third-party loggers (`QUIET`) at WARNING or the default level, whichever is higher, unless
    named; `layotto.access` at INFO with `access_log` unless named. Configuring again replaces
    the handler and undoes the levels set before. Returns the handler."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        for name in getattr(old, "levels_set", ()):
            logging.getLogger(name).setLevel(logging.NOTSET)
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    wanted: dict[str, int] = dict.fromkeys(QUIET, max(logging.WARNING, levels.root))
    if access_log:
        wanted[ACCESS] = logging.INFO
    wanted.update(levels.loggers)
    for name, level in wanted.items():
        logging.getLogger(name).setLevel(level)
    handler.levels_set = tuple(wanted)  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(levels.root)
    return handler


# ---- run-time levels (upstream's /actuator/logger) ----


def logger_name(component: str) -> str:
    """The Python logger `POST /actuator/logger` means by `component`: "" or "root" is the
    root logger; a Layotto logger (`layotto.pubsub`), a third-party one (`grpc`) or one that
    exists is itself; any other name is under `layotto.` (upstream's "wasm" is layotto.wasm)."""
    name = component.strip()
    if name.lower() in ("", "root"):
        return ""
    if name == "layotto" or name.startswith("layotto.") or name.split(".")[0] in QUIET:
        return name
    if name in logging.root.manager.loggerDict:
        return name
    return f"layotto.{name}"


def set_level(component: str, level: str) -> tuple[str, str]:
    """Set a logger's level now; returns (logger name, level name). ValueError for a level or
    name that is not one."""
    number = level_number(level)
    name = logger_name(component)
    if name and not _LOGGER_NAME.match(name):
        raise ValueError(f"{component!r} is not a logger name")
    logging.getLogger(name or None).setLevel(number)
    return name or "root", logging.getLevelName(number)


def configured_levels() -> dict[str, str]:
    """Every logger with a level of its own, root first: name -> level name."""
    found = {"root": logging.getLevelName(logging.getLogger().level)}
    for name, logger in sorted(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            found[name] = logging.getLevelName(logger.level)
    return found


# ---- the start banner ----


def start_banner(
    version: str,
    app_id: str,
    config_source: str,
    listeners: Iterable[tuple[str, Sequence[str]]],
    components: Iterable[tuple[str, str, str]],
) -> tuple[str, dict[str, Any]]:
    """The start record's message and its `extra=`: the version, where the config came from,
    every listener (what, its addresses) and every component (block, name, type)."""
    listed = [(what, list(addresses)) for what, addresses in listeners]
    loaded = list(components)
    lines = [f"layotto {version} started (app id {app_id!r}); config: {config_source or '-'}"]
    lines += [f"  {what}: {', '.join(addresses)}" for what, addresses in listed]
    names = ", ".join(f"{block}/{name} ({kind})" for block, name, kind in loaded)
    lines.append(f"  components: {names or 'none'}")
    extra = {
        "version": version,
        "app_id": app_id,
        "config": config_source,
        "listeners": [{"name": what, "addresses": addresses} for what, addresses in listed],
        "components": [{"block": block, "name": name, "type": kind} for block, name, kind in loaded],
    }
    return "\n".join(lines), extra


# ---- the access log ----


class AccessLogInterceptor(WrappingInterceptor):
    """One `layotto.access` INFO record per gRPC call, once it ends: method, status code,
    duration and peer (`grpc <method> <code> <ms>ms peer=<peer>`)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        super().__init__()
        self.log = logger or logging.getLogger(ACCESS)

    def _wrap(self, method: str, handler: Handler) -> Handler:
        log = self.log

        def before(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            return None

        def after(state: None, seconds: float, ok: bool, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            if not log.isEnabledFor(logging.INFO):
                return
            code, ms, peer = status_name(context, ok), round(seconds * 1000, 3), context.peer()
            extra = {"protocol": "grpc", "method": method, "code": code, "duration_ms": ms, "peer": peer}
            log.info("grpc %s %s %.1fms peer=%s", method, code, ms, peer, extra=extra)

        return wrap_observed(handler, before, after)


#: The route parameters of Dapr's HTTP API that name a component (`/v1.0/state/{store}/...`).
_HTTP_COMPONENT_KEYS = ("store", "pubsub", "name", "storeName", "storename")

HttpHandler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]


def http_middleware(
    components: Collection[str], *, access_log: bool, logger: logging.Logger | None = None
) -> Middleware:
    """An aiohttp middleware for Dapr's HTTP API: `COMPONENT` is the configured component the
    route names while the request runs, and with `access_log` one `layotto.access` record per
    request (`http <verb> <path> <status> <ms>ms peer=<ip:port>`)."""
    from aiohttp import web

    log = logger or logging.getLogger(ACCESS)
    known = frozenset(components)

    @web.middleware
    async def observed(request: web.Request, handler: HttpHandler) -> web.StreamResponse:
        match = request.match_info
        name = next((match[key] for key in _HTTP_COMPONENT_KEYS if key in match), "")
        token = COMPONENT.set(name) if name in known else None
        started, status = time.perf_counter(), 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = 499  # the client went away first (nginx's code for it)
            raise
        finally:
            if access_log and log.isEnabledFor(logging.INFO):
                ms = round((time.perf_counter() - started) * 1000, 3)
                peername = request.transport.get_extra_info("peername") if request.transport else None
                peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else str(request.remote or "")
                extra = {
                    "protocol": "http",
                    "method": request.method,
                    "path": request.path,
                    "status": status,
                    "duration_ms": ms,
                    "peer": peer,
                }
                log.info("http %s %s %d %.1fms peer=%s", request.method, request.path, status, ms, peer, extra=extra)
            if token is not None:
                COMPONENT.reset(token)

    return observed
