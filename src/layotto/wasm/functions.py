"""The loaded functions by id, and what changes them: load at start, install, uninstall,
instance count updates, reloads of a rewritten file.

A change builds the new pool beside the old one and swaps it in only once it has started: new
calls go to it at once, calls in flight finish on the old one, which is retired when they are
over. A new build that fails to load leaves the old one serving.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from layotto.config.model import WasmFunctionSpec
from layotto.errors import ConfigError, LayottoError
from layotto.observability import tracing
from layotto.observability.tracing.span import CURRENT, start_span
from layotto.runtime.invoke import Invoker, InvokeRequest
from layotto.wasm import metrics
from layotto.wasm.abi import Action
from layotto.wasm.blocks import InvokeService
from layotto.wasm.engine import WasmEngine
from layotto.wasm.exchange import CALL, Call, CallFailed, Exchange, Reply
from layotto.wasm.host import HostEnv
from layotto.wasm.instance import LoadError, Program
from layotto.wasm.pool import Pool

if TYPE_CHECKING:
    from layotto.observability.tracing.tracer import Tracer

__all__ = ["ID_HEADER", "MAX_DEPTH", "Function", "Functions"]

log = logging.getLogger("layotto.wasm")

#: The request header naming the function to call (upstream's).
ID_HEADER = "id"
#: Function-to-function calls deeper than this are refused: a loop of calls would otherwise
#: hold an instance per level until every deadline ran out.
MAX_DEPTH = 8


@dataclass
class Function:
    id: str
    spec: WasmFunctionSpec
    pool: Pool
    #: Builds swapped in so far (1 after the first load).
    generation: int = 1
    #: Why the latest reload or update was refused ("" when none was).
    refused: str = ""


class Functions:
    """Routes calls by function id. `host` builds the host calls' environment around this
    object's `invoke`, so a function's invocation of another comes back here."""

    def __init__(
        self,
        engine: WasmEngine,
        invoker: Invoker,
        host: Callable[[InvokeService], HostEnv],
        tracer: Tracer | None = None,
    ) -> None:
        self._engine = engine
        self._invoker = invoker
        self._by_id: dict[str, Function] = {}
        self._lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._retiring: set[asyncio.Task[None]] = set()
        self._tracer = tracer
        self.env = host(self.invoke)

    def __iter__(self) -> Iterator[Function]:
        return iter(list(self._by_id.values()))

    def get(self, function_id: str) -> Function | None:
        return self._by_id.get(function_id)

    # ---- loading ----

    async def _pool(self, spec: WasmFunctionSpec, program: Program | None = None) -> Pool:
        if program is None:
            program = await asyncio.to_thread(self._engine.compile, spec)
        return await Pool.start(program, self.env, spec.instance_num)

    async def load(self, specs: list[WasmFunctionSpec]) -> None:
        """The configured functions, at start: a problem is a ConfigError naming the entry."""
        pools = await asyncio.gather(*(self._pool(spec) for spec in specs), return_exceptions=True)
        try:
            for spec, pool in zip(specs, pools, strict=True):
                if isinstance(pool, LoadError):
                    raise ConfigError(str(pool), spec.source)
                if isinstance(pool, BaseException):
                    raise pool
                other = self._by_id.get(pool.function_id)
                if other is not None:
                    raise ConfigError(
                        f"{spec.path} is function {pool.function_id!r}, as {other.spec.path} ({other.spec.source}) is",
                        spec.source,
                    )
                self._by_id[pool.function_id] = Function(pool.function_id, spec, pool)
                log.info("WASM function %r loaded from %s", pool.function_id, spec.path)
        except BaseException:
            for pool in pools:
                if isinstance(pool, Pool):
                    await pool.retire()
            self._by_id.clear()
            raise

    async def install(self, spec: WasmFunctionSpec, name: str) -> None:
        """Upstream's /wasm/install: `name` must not be a loaded id, nor may the module's."""
        async with self._lock:
            if name in self._by_id:
                raise LayottoError(f"{name} is already registered")
            pool = await self._pool(spec)
            if pool.function_id in self._by_id:
                await pool.retire()
                raise LayottoError(f"{pool.function_id} is already registered")
            self._by_id[pool.function_id] = Function(pool.function_id, spec, pool)
        await self._notify()
        log.info("WASM function %r installed from %s", pool.function_id, spec.path)

    async def uninstall(self, function_id: str) -> None:
        async with self._lock:
            found = self._by_id.pop(function_id, None)
            if found is None:
                raise LayottoError(f"{function_id} is not registered")
        self._retire(found.pool)
        await self._notify()
        log.info("WASM function %r uninstalled", function_id)

    async def update(self, function_id: str, instance_num: int) -> None:
        """Upstream's /wasm/update: the same module with another number of instances."""
        async with self._lock:
            found = self._by_id.get(function_id)
            if found is None:
                raise LayottoError(f"{function_id} is not registered")
            if found.spec.instance_num == instance_num:
                return
            spec = dataclasses.replace(found.spec, instance_num=instance_num)
            await self._swap(found, spec, found.pool.program)
        log.info("WASM function %r now has %d instances", function_id, instance_num)

    async def reload(self, function_id: str) -> bool:
        """Load the function's file again (it was rewritten); False, with the reason logged,
        when the new file cannot serve, and the old build keeps serving."""
        async with self._lock:
            found = self._by_id.get(function_id)
            if found is None:
                return False
            try:
                await self._swap(found, found.spec, None)
            except LayottoError as exc:
                found.refused = str(exc)
                log.error("WASM function %r keeps its running build: %s", function_id, exc)
                await self._notify()
                return False
        log.info("WASM function %r reloaded from %s", function_id, found.spec.path)
        return True

    async def _swap(self, found: Function, spec: WasmFunctionSpec, program: Program | None) -> None:
        pool = await self._pool(spec, program)
        if pool.function_id != found.id:
            await pool.retire()
            raise LayottoError(f"{spec.path} is now function {pool.function_id!r}, not {found.id!r}")
        old, found.pool, found.spec = found.pool, pool, spec
        found.generation += 1
        found.refused = ""
        self._retire(old)
        await self._notify()

    def _retire(self, pool: Pool) -> None:
        task = asyncio.ensure_future(pool.retire())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Until `predicate` holds after some change (a load, swap or refused reload)."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def close(self) -> None:
        """Retire every function once its calls in flight are over."""
        functions, self._by_id = list(self._by_id.values()), {}
        for found in functions:
            self._retire(found.pool)
        if self._retiring:
            await asyncio.gather(*self._retiring)

    # ---- calls ----

    async def serve(self, function_id: str, exchange: Exchange) -> Reply:
        """Call function `function_id`; CallFailed when it gives no answer of its own."""
        found = self._by_id.get(function_id)
        if found is None:
            raise CallFailed(404, "", f"no function with id {function_id!r} is loaded")
        started = time.monotonic()
        exchange.deadline = min(exchange.deadline, started + found.spec.timeout)
        exchange.properties[b"plugin_name"] = found.spec.name.encode()
        exchange.properties[b"plugin_root_id"] = str(found.spec.root_context_id).encode()
        calls, errors, duration = metrics.series()
        calls.labels(function_id).inc()
        tracer = self._tracer
        span = start_span(f"wasm/{function_id}", exchange.headers, time.time_ns()) if tracer is not None else None
        token = CURRENT.set(span) if span is not None else None
        call_token = CALL.set(Call(function_id, exchange.deadline, exchange.depth))
        code = "OK"
        try:
            await found.pool.call(exchange)
            reply = exchange.reply()
            if exchange.local_reply is None and exchange.action != Action.CONTINUE:
                raise CallFailed(500, "paused", f"function {function_id} paused the request")
            return reply
        except CallFailed as failed:
            errors.labels(function_id, failed.reason).inc()
            code = failed.reason.upper()
            raise
        finally:
            CALL.reset(call_token)
            duration.labels(function_id).observe(time.monotonic() - started)
            if tracer is not None and span is not None and token is not None:
                CURRENT.reset(token)
                span.end_ns = time.time_ns()
                span.code = code
                tracer.finish(span)

    async def invoke(self, app_id: str, method: str, param: bytes) -> bytes:
        """A function's proxy_invoke_service: an id that names a loaded function is that
        function's (upstream routes it over MOSN to its own listener); any other is an app's,
        through the sidecar's invocation engine. Either way within the caller's deadline."""
        call = CALL.get()
        deadline = call.deadline if call is not None else time.monotonic() + self._invoker.settings.timeout
        depth = call.depth + 1 if call is not None else 0
        if app_id in self._by_id:
            if depth > MAX_DEPTH:
                raise LayottoError(f"function-to-function calls are nested deeper than {MAX_DEPTH}")
            headers = tracing.inject([(ID_HEADER, app_id)])
            exchange = Exchange(headers=headers, body=bytearray(param), deadline=deadline, depth=depth)
            try:
                reply = await self.serve(app_id, exchange)
            except CallFailed as failed:
                raise LayottoError(failed.message) from None
            if reply.status >= 400:
                raise LayottoError(f"function {app_id} answered {reply.status}")
            return reply.body
        request = InvokeRequest(app_id=app_id, method=method, data=param)
        response = await self._invoker.invoke(request, time_remaining=deadline - time.monotonic())
        return response.data
