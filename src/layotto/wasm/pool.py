"""A loaded build of a function: `instance_num` started instances, each run by a worker thread
of the pool's own, so guests never run on the event loop and calls on one instance are one
at a time.

A call takes a free instance (waiting no longer than its deadline), runs on a worker, and gives
the instance back when the worker is done, not when its caller stops waiting: a caller that
gives up never frees an instance a thread still uses. A call that traps or runs out of time
leaves its instance in an unknown state, so the instance is replaced before it serves again.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import wasmtime

from layotto.wasm.exchange import CallFailed, DeadlineExceeded, Exchange
from layotto.wasm.host import HostEnv
from layotto.wasm.instance import Instance, LoadError, Program

__all__ = ["Pool"]

log = logging.getLogger("layotto.wasm")


class _Slot:
    __slots__ = ("broken", "instance")

    def __init__(self, instance: Instance | None) -> None:
        self.instance = instance
        self.broken = False


def _trap_text(trap: BaseException) -> str:
    lines = [line.strip() for line in str(trap).splitlines() if line.strip()]
    return lines[-1] if lines else type(trap).__name__


def _timed_out(exc: BaseException) -> bool:
    interrupted = isinstance(exc, wasmtime.Trap) and exc.trap_code == wasmtime.TrapCode.INTERRUPT
    return interrupted or isinstance(exc, DeadlineExceeded)


def _load_error(exc: BaseException, program: Program) -> LoadError:
    path = program.spec.path
    if isinstance(exc, LoadError):
        return exc
    if _timed_out(exc):
        return LoadError(f"{path} did not finish loading within {program.spec.timeout:g}s")
    if isinstance(exc, wasmtime.Trap | wasmtime.WasmtimeError):
        return LoadError(f"{path} trapped while loading: {_trap_text(exc)}")
    return LoadError(f"{path} failed to load: {exc}")


def _started(program: Program, env: HostEnv) -> tuple[Instance, str]:
    instance = Instance(program, env, time.monotonic() + program.spec.timeout)
    return instance, instance.start()


class Pool:
    def __init__(
        self, program: Program, env: HostEnv, function_id: str, instances: list[Instance], executor: ThreadPoolExecutor
    ) -> None:
        self.program = program
        self.function_id = function_id
        self.size = len(instances)
        self._env = env
        self._executor = executor
        self._loop = asyncio.get_running_loop()
        self._free: asyncio.Queue[_Slot] = asyncio.Queue()
        for instance in instances:
            self._free.put_nowait(_Slot(instance))
        #: Calls waiting for or holding an instance, and replacements under way.
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @classmethod
    async def start(cls, program: Program, env: HostEnv, count: int) -> Pool:
        """`count` instances of `program`, each through its load sequence; LoadError when any
        fails or they disagree on the function's id."""
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(count, thread_name_prefix=f"wasm-{program.spec.name}")
        jobs = [loop.run_in_executor(executor, _started, program, env) for _ in range(count)]
        results: list[Any] = await asyncio.gather(*jobs, return_exceptions=True)
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        ids = {r[1] for r in results if not isinstance(r, BaseException)}
        if failed is None and len(ids) > 1:
            failed = LoadError(f"instances of {program.spec.path} tell different ids: {sorted(ids)}")
        if failed is not None:
            executor.shutdown(wait=False)
            raise _load_error(failed, program)
        return cls(program, env, ids.pop(), [r[0] for r in results], executor)

    def _taken(self) -> None:
        self._pending += 1
        self._idle.clear()

    def _done(self) -> None:
        self._pending -= 1
        if self._pending == 0:
            self._idle.set()

    async def call(self, exchange: Exchange) -> None:
        """Serve `exchange` on a free instance; CallFailed when there is no answer of the guest's."""
        self._taken()
        try:
            async with asyncio.timeout(max(exchange.deadline - time.monotonic(), 0)):
                slot = await self._free.get()
        except TimeoutError:
            self._done()
            raise CallFailed(
                504, "deadline", f"no instance of function {self.function_id} was free within its deadline"
            ) from None
        except BaseException:
            self._done()
            raise
        context = contextvars.copy_context()
        job = self._loop.run_in_executor(self._executor, context.run, self._serve, slot, exchange)
        job.add_done_callback(lambda _: self._release(slot))
        # Shielded: a caller that stops waiting must not mark the job done while it runs.
        await asyncio.shield(job)

    def _serve(self, slot: _Slot, exchange: Exchange) -> None:
        fid = self.function_id
        if slot.instance is None:
            try:
                slot.instance = self._replacement()
            except Exception as exc:
                raise CallFailed(503, "unavailable", f"function {fid} has no instance: {exc}") from None
        try:
            slot.instance.serve(exchange, self._env.next_context(self.program.spec.root_context_id))
        except BaseException as exc:
            slot.broken = True
            if _timed_out(exc):
                timeout_ms = round(self.program.spec.timeout * 1000)
                raise CallFailed(504, "deadline", f"function {fid} did not answer within {timeout_ms} ms") from None
            if isinstance(exc, wasmtime.Trap | wasmtime.WasmtimeError):
                raise CallFailed(500, "trap", f"function {fid} trapped: {_trap_text(exc)}") from None
            log.exception("function %s failed in the host", fid)
            raise CallFailed(500, "host", f"function {fid} failed: {exc}") from None

    def _replacement(self) -> Instance:
        return _started(self.program, self._env)[0]

    def _release(self, slot: _Slot) -> None:
        if not slot.broken:
            self._free.put_nowait(slot)
            self._done()
            return
        slot.broken, slot.instance = False, None
        try:
            rebuild = self._loop.run_in_executor(self._executor, self._rebuild, slot)
        except RuntimeError:  # retired meanwhile: nothing will use the slot again
            self._done()
            return

        def back(_: object) -> None:
            self._free.put_nowait(slot)
            self._done()

        rebuild.add_done_callback(back)

    def _rebuild(self, slot: _Slot) -> None:
        try:
            slot.instance = self._replacement()
        except Exception as exc:  # the next call on the slot tries again, and answers 503 if it fails
            reason = _load_error(exc, self.program)
            log.warning("replacing an instance of function %s failed: %s", self.function_id, reason)

    async def retire(self) -> None:
        """Once calls in flight (and replacements) are over, let the workers go."""
        await self._idle.wait()
        self._executor.shutdown(wait=False)
        while not self._free.empty():
            self._free.get_nowait().instance = None
