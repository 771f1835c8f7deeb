"""A function's compiled module (`Program`, checked once when it is loaded) and its instances.

An instance is one wasmtime store: its own memory (capped by the function's `limits`), its
contexts, its host functions. Its calls are made by one worker thread at a time, each under an
epoch deadline, so a guest that loops forever is interrupted (`engine.py` advances the epoch).
"""

from __future__ import annotations

import ctypes
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime import _ffi
from wasmtime._func import enter_wasm

from layotto.config.model import WasmFunctionSpec
from layotto.errors import LayottoError
from layotto.wasm.abi import ABI_VERSIONS, Action, WasmResult, encode_pairs
from layotto.wasm.exchange import DeadlineExceeded, Exchange
from layotto.wasm.host import SIGNATURES, GuestState, HostCalls, HostEnv

__all__ = ["TICK", "Instance", "LoadError", "Program", "compile_program"]

log = logging.getLogger("layotto.wasm")
guest_log = logging.getLogger("layotto.wasm.guest")

#: Seconds between epoch ticks: the resolution of a call's deadline.
TICK = 0.01
_WASI = "wasi_snapshot_preview1"
_ALLOCATORS = ("malloc", "proxy_on_memory_allocate")
#: The exports the host calls (any it lacks is skipped).
_CALLED = frozenset(
    {
        "_initialize",
        "_start",
        "proxy_get_id",
        "proxy_on_context_create",
        "proxy_on_vm_start",
        "proxy_on_configure",
        "proxy_on_request_headers",
        "proxy_on_request_body",
        "proxy_on_done",
        "proxy_on_delete",
    }
)


class LoadError(LayottoError):
    """A module that cannot serve as a function; the message says why."""


@dataclass(frozen=True)
class Program:
    """A function's module, compiled and checked: what each of its instances is made from."""

    spec: WasmFunctionSpec
    engine: wasmtime.Engine
    module: wasmtime.Module
    #: (mtime_ns, size, inode) of the file when it was read, to tell a rewrite.
    stamp: tuple[int, int, int]
    vm_config: bytes
    plugin_config: bytes
    #: Imports of `env` the host has no function for: they answer Unimplemented.
    stubs: tuple[tuple[str, wasmtime.FuncType], ...]


def file_stamp(path: str) -> tuple[int, int, int]:
    found = Path(path).stat()
    return found.st_mtime_ns, found.st_size, found.st_ino


def _signature(kind: wasmtime.FuncType) -> str:
    return f"({', '.join(map(str, kind.params))}) -> ({', '.join(map(str, kind.results))})"


def compile_program(engine: wasmtime.Engine, spec: WasmFunctionSpec) -> Program:
    """Read and compile `spec.path` and check it is a function this host can run (blocking:
    call it off the event loop)."""
    path = spec.path
    try:
        stamp = file_stamp(path)
        data = Path(path).read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not data.startswith(b"\0asm"):
        raise LoadError(f"{path} is not a WebAssembly module (it does not start with \\0asm)")
    try:
        module = wasmtime.Module(engine, data)
    except wasmtime.WasmtimeError as exc:
        raise LoadError(f"{path} is not a valid WebAssembly module: {str(exc).splitlines()[0]}") from None
    exports = {export.name: export.type for export in module.exports}
    if not isinstance(exports.get("proxy_get_id"), wasmtime.FuncType):
        raise LoadError(f"{path} does not export proxy_get_id, which tells the function's id")
    if not isinstance(exports.get("memory"), wasmtime.MemoryType):
        raise LoadError(f"{path} exports no memory")
    if not any(isinstance(exports.get(name), wasmtime.FuncType) for name in _ALLOCATORS):
        raise LoadError(f"{path} exports no malloc: the host could not hand it results")
    if not any(name in exports for name in ABI_VERSIONS):
        raise LoadError(f"{path} exports none of {', '.join(ABI_VERSIONS)}: not a proxy-wasm 0.2.0 module")
    stubs: list[tuple[str, wasmtime.FuncType]] = []
    for item in module.imports:
        kind, where = item.type, f"{item.module}.{item.name}"
        if item.module == _WASI:
            continue
        if item.module != "env" or not isinstance(kind, wasmtime.FuncType) or item.name is None:
            raise LoadError(f"{path} imports {where}, which this host does not provide")
        arity = SIGNATURES.get(item.name)
        if arity is None:
            stubs.append((item.name, kind))
            continue
        expected = f"({', '.join(['i32'] * arity)}) -> (i32)"
        if _signature(kind) != expected:
            raise LoadError(f"{path} imports {where} as {_signature(kind)}; the host's is {expected}")
    if stubs:
        names = ", ".join(name for name, _ in stubs)
        log.warning(
            "%s: %s import host functions this host lacks (they answer Unimplemented): %s", spec.source, path, names
        )
    return Program(
        spec=spec,
        engine=engine,
        module=module,
        stamp=stamp,
        vm_config=encode_pairs(sorted(spec.vm_config.items())),
        plugin_config=encode_pairs(sorted(spec.plugin_config.items())),
        stubs=tuple(stubs),
    )


def _stub(kind: wasmtime.FuncType) -> Callable[..., Any]:
    results = [WasmResult.UNIMPLEMENTED if str(t) == "i32" else 0 for t in kind.results]

    def unimplemented(*_: Any) -> Any:
        if not results:
            return None
        return results[0] if len(results) == 1 else list(results)

    return unimplemented


class _Export:
    """Calls an exported function of i32 parameters and at most one i32 result.

    wasmtime-py's `Func.__call__` looks the function's type up and converts every value on
    each call (~80 us); a request makes five such calls, so this one keeps its parameter and
    result arrays and fills them in (~9 us). It uses wasmtime-py's own call path
    (`_ffi.wasmtime_func_call` inside `enter_wasm`, which turns traps and host exceptions into
    exceptions), pinned by the dependency's major version."""

    __slots__ = ("_arity", "_context", "_func", "_params", "_results", "_store")

    def __init__(self, store: wasmtime.Store, func: wasmtime.Func) -> None:
        kind = func.type(store)
        if any(str(t) != "i32" for t in (*kind.params, *kind.results)) or len(kind.results) > 1:
            raise LoadError(f"an export of type {_signature(kind)} is not one of the ABI's")
        self._store = store
        self._func = ctypes.byref(func._func)
        self._context = store._context()
        self._arity = len(kind.params)
        self._params = (_ffi.wasmtime_val_t * self._arity)()
        for param in self._params:
            param.kind = _ffi.WASMTIME_I32
        self._results = (_ffi.wasmtime_val_t * len(kind.results))()

    def __call__(self, *args: int) -> int | None:
        if len(args) != self._arity:
            raise LoadError(f"an export takes {self._arity} arguments, not {len(args)}")
        params = self._params
        for i, value in enumerate(args):
            params[i].of.i32 = value
        with enter_wasm(self._store) as trap:
            error = _ffi.wasmtime_func_call(
                self._context, self._func, params, self._arity, self._results, len(self._results), trap
            )
            if error:
                raise wasmtime.WasmtimeError._from_ptr(error)
        return int(self._results[0].of.i32) if len(self._results) else None


class Instance:
    """One instantiation of a program (blocking calls: its pool's worker thread makes them)."""

    def __init__(self, program: Program, env: HostEnv, deadline: float) -> None:
        self.program = program
        self.env = env
        spec = program.spec
        self.guest = GuestState(spec.name, program.vm_config, program.plugin_config, deadline)
        self._idle = self.guest.exchange
        store = wasmtime.Store(program.engine)
        store.set_limits(memory_size=spec.memory_limit)
        wasi = wasmtime.WasiConfig()
        wasi.stdout_custom = self._output
        wasi.stderr_custom = self._output
        store.set_wasi(wasi)
        linker = wasmtime.Linker(program.engine)
        linker.define_wasi()
        HostCalls(self.guest, env).define(linker)
        for name, kind in program.stubs:
            linker.define_func("env", name, kind, _stub(kind))
        self.store = store
        self._arm(deadline)
        try:
            instance = linker.instantiate(store, program.module)
        except wasmtime.Trap:
            raise
        except wasmtime.WasmtimeError as exc:
            raise LoadError(f"{spec.path} cannot be instantiated: {str(exc).splitlines()[0]}") from None
        exports = instance.exports(store)
        found = {name: exports[name] for name in exports}
        memory = found.get("memory")
        self.guest.memory = memory if isinstance(memory, wasmtime.Memory) else None
        allocator = next((found[n] for n in _ALLOCATORS if isinstance(found.get(n), wasmtime.Func)), None)
        self.guest.malloc = allocator if isinstance(allocator, wasmtime.Func) else None
        self._exports = {
            name: _Export(store, func)
            for name, func in found.items()
            if name in _CALLED and isinstance(func, wasmtime.Func)
        }

    def _output(self, data: bytes) -> None:
        for line in data.decode(errors="replace").splitlines():
            guest_log.info("[%s] %s", self.guest.function, line)

    def _arm(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded("the deadline passed before the call began")
        self.store.set_epoch_deadline(max(1, math.ceil(remaining / TICK)))

    def _call(self, name: str, *args: int) -> int | None:
        found = self._exports.get(name)
        return found(*args) if found is not None else None

    def start(self) -> str:
        """Run the module's start, then upstream's load sequence; the function's id."""
        spec = self.program.spec
        for name in ("_initialize", "_start"):
            try:
                self._call(name)
            except wasmtime.ExitTrap as exc:
                # A command module's main returning through proc_exit(0) has simply finished.
                if exc.code != 0:
                    raise LoadError(f"{spec.path}: {name} exited with status {exc.code}") from None
        self._call("proxy_get_id")
        try:
            function_id = self.guest.call_data.decode()
        except UnicodeDecodeError:
            raise LoadError(f"{spec.path}: proxy_get_id set an id that is not UTF-8") from None
        if not function_id:
            raise LoadError(f"{spec.path}: proxy_get_id set no id (the guest writes it to buffer 8)")
        root = spec.root_context_id
        self._call("proxy_on_context_create", root, 0)
        for name, size in (
            ("proxy_on_vm_start", len(self.program.vm_config)),
            ("proxy_on_configure", len(self.program.plugin_config)),
        ):
            if self._call(name, root, size) == 0:
                log.warning("%s: %s answered false for function %r", spec.source, name, function_id)
        return function_id

    def serve(self, exchange: Exchange, context_id: int) -> None:
        """One request, in a new context: headers, then the body (if any), then done/delete."""
        guest = self.guest
        guest.exchange = exchange
        root = self.program.spec.root_context_id
        try:
            self._arm(exchange.deadline)
            self._call("proxy_on_context_create", context_id, root)
            has_body = 1 if exchange.body else 0
            action = self._call("proxy_on_request_headers", context_id, len(exchange.headers), 1 - has_body)
            if action in (None, Action.CONTINUE) and has_body:
                action = self._call("proxy_on_request_body", context_id, len(exchange.body), 1)
            exchange.action = Action.CONTINUE if action in (None, Action.CONTINUE) else Action.PAUSE
            self._call("proxy_on_done", context_id)
            self._call("proxy_on_delete", context_id)
        finally:
            guest.exchange = self._idle
