"""What every API adapter does alike: answer a core's problem from the API's table (see
`layotto.api.answers`), classify component failures, read the caller's trace; give back what a
long-lived stream holds when it ends, and end such streams at shutdown; refuse requests that
cannot be decoded and methods no part implements, without a traceback per call."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import inspect
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar, cast

import grpc

from layotto.core.problems import Checks, Problem
from layotto.errors import BackendTimeoutError, BackendUnavailableError

log = logging.getLogger("layotto.api")

if TYPE_CHECKING:  # the grpc stubs are generic; the runtime classes are not
    GenericHandler = grpc.GenericRpcHandler[Any, Any]
else:
    GenericHandler = grpc.GenericRpcHandler

S = TypeVar("S")
R = TypeVar("R")
V = TypeVar("V")
K = TypeVar("K")
T = TypeVar("T")

#: The servicer context of every unary and streaming handler.
Ctx = grpc.aio.ServicerContext[Any, Any]


async def abort(context: Ctx, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("unreachable: context.abort raises")


def failure_code(exc: BaseException, default: grpc.StatusCode = grpc.StatusCode.INTERNAL) -> grpc.StatusCode:
    """The code for a component failure: `default` (each API's own), except that an unreachable
    backend is UNAVAILABLE and a backend timeout DEADLINE_EXCEEDED, so that clients can tell
    an outage from a bug and retry."""
    if isinstance(exc, BackendUnavailableError):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, BackendTimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return default


def caller_traceparent(context: Ctx) -> str:
    """The caller's `traceparent` header ("" without one)."""
    for key, value in context.invocation_metadata() or ():
        if key == "traceparent" and isinstance(value, str):
            return value
    return ""


#: How an API answers one problem kind: a status code (or a function of the component's error
#: giving one) and a message template over the problem's facts, plus `{error}` for its cause.
Code = grpc.StatusCode | Callable[[BaseException], grpc.StatusCode]
Answers = Mapping[Enum, tuple[Code, str]]


def checks(table: Answers) -> Checks:
    """The checks of an API whose answers are `table`: its kinds, in the table's order."""
    return Checks(table)


#: An absolute path in an OS error's text: after a quote, a space or the start, so that the path
#: part of a URL ("http://host/a") is not taken for one.
_ABSOLUTE_PATH = re.compile(r"""(?<![^\s'"(=])/[^\s'"(),;]+""")


def _os_errors(exc: BaseException) -> list[OSError]:
    """The OSErrors in `exc`'s chain of causes (itself included)."""
    found: list[OSError] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            found.append(current)
        if isinstance(current, Problem) and current.cause is not None:
            current = current.cause
        else:
            current = current.__cause__ or current.__context__
    return found


def _shown_path(path: str) -> str:
    return os.path.basename(path.rstrip("/")) or "<path>"


def public_text(exc: BaseException) -> str:
    """`str(exc)` as a caller may see it: when the error comes from the operating system, the
    sidecar's absolute paths in it (a data folder, a mount, a home) become their last part; a
    caller learns which file, not where the server keeps it."""
    text = str(exc)
    os_errors = _os_errors(exc)
    if not os_errors:
        return text
    for error in os_errors:
        for path in (error.filename, error.filename2):
            if isinstance(path, bytes):
                path = os.fsdecode(path)
            if isinstance(path, str) and path.startswith("/"):
                text = text.replace(path, _shown_path(path))
    return _ABSOLUTE_PATH.sub(lambda m: _shown_path(m.group(0)), text)


def message_of(table: Answers, problem: Problem) -> tuple[grpc.StatusCode, str]:
    """The status code and message `table` gives `problem`."""
    answer = table.get(problem.kind)
    if answer is None:
        # A failure kind the table forgot: say what happened rather than hide it.
        return grpc.StatusCode.INTERNAL, public_text(problem)
    code, template = answer
    if not isinstance(code, grpc.StatusCode):
        code = code(problem.cause if problem.cause is not None else problem)
    error = public_text(problem.cause) if problem.cause is not None else None
    return code, template.format(error=error, **problem.facts)


def os_error_code(exc: OSError) -> grpc.StatusCode:
    """The code for an OS error no core turned into a problem."""
    if isinstance(exc, ConnectionError):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.INTERNAL


Handler = Callable[[S, Any, Ctx], Awaitable[R]]


class Answering(Generic[K]):
    """A servicer part over a block core `K`, whose handlers answer the core's problems from
    `answers` (see `answered`): the API's table for that block."""

    def __init__(self, core: K, answers: Answers) -> None:
        self.core = core
        self.answers = answers


A = TypeVar("A", bound=Answering[Any])


def answered(handler: Handler[A, R]) -> Handler[A, R]:
    """Decorate an RPC handler of an `Answering` servicer: a `Problem` its core raises ends the
    call with the servicer's answer to it."""

    @functools.wraps(handler)
    async def run(self: A, request: Any, context: Ctx) -> R:
        try:
            return await handler(self, request, context)
        except Problem as problem:
            await abort(context, *message_of(self.answers, problem))
        except OSError as exc:
            # An OS error no core named: grpc would answer UNKNOWN with its text, absolute
            # paths included, and log a traceback per call.
            refusals.note(handler.__qualname__, "%s failed: %s", handler.__qualname__, exc)
            await abort(context, os_error_code(exc), public_text(exc))

    return run


class RateLimitedLog:
    """One log line per key (a method) per `interval` at most: a client repeating a bad call
    must not turn the sidecar's log into a copy of its traffic. Lines not written are counted
    and the count goes with the next line written."""

    def __init__(self, logger: logging.Logger, interval: float = 1.0, level: int = logging.WARNING) -> None:
        self._log = logger
        self._interval = interval
        self._level = level
        #: key -> (when its last line was written, lines left out since)
        self._last: dict[str, tuple[float, int]] = {}

    def note(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last, left_out = self._last.get(key, (float("-inf"), 0))
        if now - last < self._interval:
            self._last[key] = (last, left_out + 1)
            return
        if len(self._last) > 4096:  # keys are method names; bound it against a flood of new ones
            self._last.clear()
        self._last[key] = (now, 0)
        if left_out:
            message += " (%d more like it not logged)"
            args = (*args, left_out)
        self._log.log(self._level, message, *args)


#: Refused and failed calls that grpc would otherwise log with a traceback each.
refusals = RateLimitedLog(log)


def _unimplemented(service: str, name: str) -> Callable[[Any, Ctx], Awaitable[NoReturn]]:
    """The handler of an RPC no part implements: grpc-go's answer, the one daprd and upstream
    Layotto give for a method their server does not implement. The generated base method
    raises NotImplementedError instead, which grpc.aio answers UNKNOWN and logs with a
    traceback."""
    method = f"/{service}/{name}" if service else name
    message = f"method {name} not implemented"

    async def refuse(_request: Any, context: Ctx) -> NoReturn:
        refusals.note(method, "%s: not implemented, answered UNIMPLEMENTED", method)
        await abort(context, grpc.StatusCode.UNIMPLEMENTED, message)

    return refuse


def _service_name(servicer_class: type[Any]) -> str:
    """The proto service a generated servicer class serves, from its `*_pb2` sibling module (the
    class name without "Servicer" when that module does not say)."""
    service = servicer_class.__name__.removesuffix("Servicer")
    try:
        pb2 = importlib.import_module(servicer_class.__module__.removesuffix("_grpc"))
        return str(pb2.DESCRIPTOR.services_by_name[service].full_name)
    except (ImportError, AttributeError, KeyError):
        return service


class Parts(Generic[V]):
    """One API's servicer parts (one per block), each with its own state, bound onto an instance
    of the API's generated servicer class; the parts that need to can act at start, when the
    sidecar begins to drain (`drain_api`: end long-lived streams) and at stop."""

    def __init__(self, servicer_class: type[V], parts: Sequence[object]) -> None:
        servicer = servicer_class()
        rpcs = [name for name in vars(servicer_class) if name[:1].isupper()]
        service = _service_name(servicer_class)
        bound: set[str] = set()
        for part in parts:
            for name in rpcs:
                handler = getattr(part, name, None)
                if handler is not None:
                    setattr(servicer, name, handler)
                    bound.add(name)
        for name in rpcs:
            if name not in bound:
                setattr(servicer, name, _unimplemented(service, name))
        self.servicer = servicer
        self.parts = parts

    async def start_api(self) -> None:
        for part in self.parts:
            start = getattr(part, "start_api", None)
            if start is not None:
                await start()

    async def drain_api(self) -> None:
        for part in self.parts:
            drain = getattr(part, "drain_api", None)
            if drain is not None:
                await drain()

    async def stop_api(self) -> None:
        for part in self.parts:
            stop = getattr(part, "stop_api", None)
            if stop is not None:
                await stop()


# ---- long-lived streams: what they hold is given back when they end, and they end at shutdown

#: The status an open stream ends with when the sidecar shuts down.
SHUTTING_DOWN = (grpc.StatusCode.UNAVAILABLE, "the sidecar is shutting down")

#: Cleanups still running after the call that started them was cancelled (see `release`).
_releasing: set[asyncio.Task[None]] = set()


def _released(task: asyncio.Task[None]) -> None:
    _releasing.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("releasing a stream's resources failed", exc_info=task.exception())


async def release(cleanup: Awaitable[None]) -> None:
    """Run `cleanup` (closing a subscription: its backend connection, tasks and registration) to
    its end, even when the call awaiting it is cancelled meanwhile.

    grpc.aio cancels a stream's handler when the client cancels or goes away, and may do so
    while the handler is already in its `finally`, unwinding: a cleanup awaited there directly
    stops at its first await and what it was to close stays open for good (a Redis connection
    and a file descriptor per abandoned subscription). The cleanup runs as a task of its own;
    a cancelled caller leaves it to finish (`settle` awaits the stragglers)."""
    task = asyncio.ensure_future(cleanup)
    _releasing.add(task)
    task.add_done_callback(_released)
    await asyncio.shield(task)


async def opened(opening: Awaitable[T], close: Callable[[T], Awaitable[None]]) -> T:
    """Await `opening` (a subscription being made); when the caller is cancelled meanwhile, the
    subscription is still made, and then closed by `close` in a task of its own (awaited by
    `settle`, as `release`'s are), rather than made and lost."""
    task = asyncio.ensure_future(opening)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:

        def made(done: asyncio.Future[T]) -> None:
            if not done.cancelled() and done.exception() is None:
                cleanup = asyncio.ensure_future(close(done.result()))
                _releasing.add(cleanup)
                cleanup.add_done_callback(_released)

        task.add_done_callback(made)
        raise


#: How long a draining sidecar waits for its streams to let go of what they hold; what is left
#: then is cancelled by the server's own grace period, or closed with its component.
DRAIN_WITHIN = 5.0


async def settle(within: float = DRAIN_WITHIN) -> None:
    """Until every cleanup `release` left running has finished, or `within` seconds passed (a
    cleanup that never ends must not hold the shutdown; it is logged)."""
    if not _releasing:
        return
    _, pending = await asyncio.wait(list(_releasing), timeout=within)
    if pending:
        names = ", ".join(sorted(str(task.get_coro()) for task in pending))
        log.warning("%d stream cleanups still running after %.1fs: %s", len(pending), within, names)


class _Stream:
    __slots__ = ("ended", "finished", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        #: Ended by `OpenStreams.end_all` (the sidecar drains), not by the client.
        self.ended = False
        self.finished = asyncio.Event()


class OpenStreams:
    """The long-lived streams (subscriptions) an API part has open, so that a draining sidecar
    ends them at once with `SHUTTING_DOWN` instead of letting each hold the shutdown for the
    whole grace period, and refuses new ones meanwhile."""

    def __init__(self) -> None:
        self._open: set[_Stream] = set()
        self.closing = False

    def __len__(self) -> int:
        return len(self._open)

    @contextlib.asynccontextmanager
    async def hold(self, context: Ctx, farewell: Any = None) -> AsyncIterator[None]:
        """Around a stream handler's body: registers the stream; when the sidecar ends it, the
        body is cancelled (its `finally` releases what it holds), `farewell` (a last message)
        is written if given, and the call ends with `SHUTTING_DOWN`."""
        if self.closing:
            await abort(context, *SHUTTING_DOWN)
        task = asyncio.current_task()
        assert task is not None, "a stream handler runs in a task"
        stream = _Stream(task)
        self._open.add(stream)
        try:
            try:
                yield
            except asyncio.CancelledError:
                if not stream.ended:
                    raise
                task.uncancel()
            if stream.ended:
                if farewell is not None:
                    with contextlib.suppress(Exception):
                        await context.write(farewell)
                await abort(context, *SHUTTING_DOWN)
        finally:
            self._open.discard(stream)
            stream.finished.set()

    async def end_all(self) -> None:
        """End every open stream and refuse new ones; returns once each has let go of what it
        held."""
        self.closing = True
        streams = list(self._open)
        for stream in streams:
            stream.ended = True
            stream.task.cancel()
        deadline = asyncio.get_running_loop().time() + DRAIN_WITHIN
        for stream in streams:
            try:
                async with asyncio.timeout_at(deadline):
                    await stream.finished.wait()
            except TimeoutError:
                left = sum(not s.finished.is_set() for s in streams)
                log.warning("%d streams did not end within %.1fs of the drain", left, DRAIN_WITHIN)
                break
        await settle(max(0.0, deadline - asyncio.get_running_loop().time()))


# ---- requests that cannot be decoded


class _Undecodable:
    """What a guarded deserializer gives for bytes that are not the method's request message."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def _lenient(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def run(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # protobuf's DecodeError, or whatever a custom one raises
            return _Undecodable(exc)

    return run


async def _refuse_undecodable(method: str, request: _Undecodable, context: Ctx) -> NoReturn:
    refusals.note(method, "%s: undecodable request (%s), answered INVALID_ARGUMENT", method, request.error)
    await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"error unmarshalling request: {request.error}")


def _checked_unary(method: str, behaviour: Callable[..., Any]) -> Callable[..., Any] | None:
    if inspect.isasyncgenfunction(behaviour):

        async def generate(request: Any, context: Ctx) -> AsyncIterator[Any]:
            if type(request) is _Undecodable:
                await _refuse_undecodable(method, request, context)
            async for item in behaviour(request, context):
                yield item

        return generate
    if inspect.iscoroutinefunction(behaviour):

        async def run(request: Any, context: Ctx) -> Any:
            if type(request) is _Undecodable:
                await _refuse_undecodable(method, request, context)
            return await behaviour(request, context)

        return run
    return None


async def _checked_requests(method: str, requests: AsyncIterator[Any], context: Ctx) -> AsyncIterator[Any]:
    async for request in requests:
        if type(request) is _Undecodable:
            await _refuse_undecodable(method, request, context)
        yield request


def _checked_streaming(method: str, behaviour: Callable[..., Any]) -> Callable[..., Any] | None:
    if inspect.isasyncgenfunction(behaviour):

        async def generate(requests: AsyncIterator[Any], context: Ctx) -> AsyncIterator[Any]:
            async for item in behaviour(_checked_requests(method, requests, context), context):
                yield item

        return generate
    if inspect.iscoroutinefunction(behaviour):

        async def run(requests: AsyncIterator[Any], context: Ctx) -> Any:
            return await behaviour(_checked_requests(method, requests, context), context)

        return run
    return None


_MAKERS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def checked_handler(method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` with a request that cannot be decoded answered INVALID_ARGUMENT, named in one
    rate-limited log line. grpc.aio would answer UNKNOWN "Unexpected <class 'DecodeError'>"
    and log a traceback for each. A handler it cannot wrap (not a coroutine or an async
    generator) is returned as it is."""
    deserialize = handler.request_deserializer
    behaviour = handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    if deserialize is None or behaviour is None:
        return handler
    wrap = _checked_streaming if handler.request_streaming else _checked_unary
    checked = wrap(method, behaviour)
    if checked is None:
        return handler
    make = _MAKERS[(handler.request_streaming, handler.response_streaming)]
    return make(checked, _lenient(deserialize), handler.response_serializer)


class _CheckedHandlers(GenericHandler):
    """A generic handler whose method handlers are `checked_handler`s (made once per method)."""

    def __init__(self, inner: GenericHandler) -> None:
        self._inner = inner
        self._checked: dict[str, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        known = self._checked.get(method)
        if known is None or known[0] is not handler:
            known = (handler, checked_handler(method, handler))
            self._checked[method] = known
        return known[1]


def check_requests(server: grpc.aio.Server) -> None:
    """Make every handler later added to `server` a `checked_handler`."""
    add = server.add_generic_rpc_handlers

    def add_checked(handlers: Iterable[GenericHandler]) -> None:
        add(tuple(_CheckedHandlers(h) for h in handlers))

    cast(Any, server).add_generic_rpc_handlers = add_checked
