"""The host functions a guest imports from module `env`: the proxy-wasm set (log, buffers,
header maps, properties, local replies, shared data, time), upstream Layotto's
`proxy_get_state` and `proxy_invoke_service`, and this runtime's calls for every other block.

They run on the guest's worker thread. A block call is a coroutine of `Blocks`, run on the
sidecar's event loop and waited for here, no longer than the call's deadline allows. Results
the guest reads are written into memory it allocates with its own `malloc`, their address and
size at the pointers it passed (docs/wasm.md has every signature).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import struct
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import wasmtime

from layotto.observability.tracing.span import CURRENT, Span, new_span_id
from layotto.wasm.abi import BufferType, LogLevel, MapType, WasmResult, decode_pairs, encode_pairs
from layotto.wasm.blocks import Blocks
from layotto.wasm.exchange import DeadlineExceeded, Exchange, Reply, SharedData, header_value

if TYPE_CHECKING:
    from layotto.observability.tracing.tracer import Tracer

__all__ = ["BLOCK_CALLS", "SIGNATURES", "GuestState", "HostCalls", "HostEnv"]

log = logging.getLogger("layotto.wasm")
guest_log = logging.getLogger("layotto.wasm.guest")

T = TypeVar("T")
_I32 = wasmtime.ValType.i32()
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_MASK = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class BlockCall:
    """A host call over one `Blocks` method: `args` says what each argument is (s: a UTF-8
    string, b: bytes, both as pointer and size; i: an i32), `result` what the guest gets back
    (bytes: address and size at two pointers; u32 or u64: a number at one pointer)."""

    method: str
    args: str
    result: str = ""

    @property
    def arity(self) -> int:
        results = {"": 0, "bytes": 2, "u32": 1, "u64": 1}[self.result]
        return sum(1 if kind == "i" else 2 for kind in self.args) + results


BLOCK_CALLS: dict[str, BlockCall] = {
    # Upstream Layotto's two.
    "proxy_get_state": BlockCall("get_state", "ss", "bytes"),
    "proxy_invoke_service": BlockCall("invoke_service", "ssb", "bytes"),
    # This runtime's, shaped the same way.
    "proxy_save_state": BlockCall("save_state", "ssb"),
    "proxy_delete_state": BlockCall("delete_state", "ss"),
    "proxy_publish_event": BlockCall("publish_event", "ssbs"),
    "proxy_next_id": BlockCall("next_id", "ss", "u64"),
    "proxy_try_lock": BlockCall("try_lock", "sssi", "u32"),
    "proxy_unlock": BlockCall("unlock", "sss", "u32"),
    "proxy_get_configuration": BlockCall("get_configuration", "ss", "bytes"),
    "proxy_get_secret": BlockCall("get_secret", "ss", "bytes"),
    "proxy_invoke_binding": BlockCall("invoke_binding", "ssb", "bytes"),
}

#: Every host function by the number of its i32 parameters (each returns an i32 WasmResult).
SIGNATURES: dict[str, int] = {
    "proxy_log": 3,
    "proxy_get_log_level": 1,
    "proxy_set_effective_context": 1,
    "proxy_get_property": 4,
    "proxy_set_property": 4,
    "proxy_get_buffer_bytes": 5,
    "proxy_set_buffer_bytes": 5,
    "proxy_get_header_map_pairs": 3,
    "proxy_set_header_map_pairs": 3,
    "proxy_get_header_map_value": 5,
    "proxy_replace_header_map_value": 5,
    "proxy_add_header_map_value": 5,
    "proxy_remove_header_map_value": 3,
    "proxy_get_current_time_nanoseconds": 1,
    "proxy_send_local_response": 8,
    # Upstream's Go host's name for the same call.
    "proxy_send_http_response": 8,
    "proxy_get_shared_data": 5,
    "proxy_set_shared_data": 5,
    **{name: call.arity for name, call in BLOCK_CALLS.items()},
}

_LOG_LEVELS: dict[int, int] = {
    LogLevel.TRACE: logging.DEBUG,
    LogLevel.DEBUG: logging.DEBUG,
    LogLevel.INFO: logging.INFO,
    LogLevel.WARN: logging.WARNING,
    LogLevel.ERROR: logging.ERROR,
    LogLevel.CRITICAL: logging.CRITICAL,
}


class _MemoryFault(Exception):  # noqa: N818  (the guest's mistake, answered with a result)
    """A pointer and size the guest passed that are not inside its memory."""


class _Missing(Exception):  # noqa: N818
    """A buffer or header map the call has none of."""


@dataclass
class HostEnv:
    """What host calls share across functions: the event loop their block calls run on, the
    blocks, the tracer (None with tracing off), shared data and the context id sequence."""

    loop: asyncio.AbstractEventLoop
    blocks: Blocks
    tracer: Tracer | None
    shared: SharedData
    contexts: itertools.count[int]

    def next_context(self, root: int) -> int:
        found = next(self.contexts)
        return found if found != root else next(self.contexts)

    async def traced(self, name: str, call: Coroutine[Any, Any, tuple[WasmResult, Any]]) -> tuple[WasmResult, Any]:
        """Run a host call as a child span of the function's when tracing is on, so a block
        call (and what it calls in turn, an invocation's callee) continues the trace."""
        parent = CURRENT.get() if self.tracer is not None else None
        if parent is None or self.tracer is None:
            return await call
        span = Span(
            name,
            parent.trace_id,
            new_span_id(),
            parent.span_id,
            start_ns=time.time_ns(),
            flags=parent.flags,
            tracestate=parent.tracestate,
            sofa_rpc_id=parent.next_sofa_rpc_id() if parent.sofa_rpc_id else "",
            caller_app=parent.caller_app,
            w3c_trace_id=parent.w3c_trace_id,
        )
        span.kind = "CLIENT"
        CURRENT.set(span)  # this task's own context: the caller's span is untouched
        result: tuple[WasmResult, Any] = (WasmResult.INTERNAL_FAILURE, None)
        try:
            result = await call
            return result
        finally:
            span.end_ns = time.time_ns()
            span.code = "OK" if result[0] == WasmResult.OK else result[0].name
            self.tracer.finish(span)


class GuestState:
    """One instance's side of the ABI: the exchange of the call it serves, its configuration
    buffers, the call data `proxy_get_id` fills, and its memory and allocator once it has them."""

    def __init__(self, function: str, vm_config: bytes, plugin_config: bytes, deadline: float) -> None:
        self.function = function
        self.exchange = Exchange.idle(deadline)
        self.vm_config = bytearray(vm_config)
        self.plugin_config = bytearray(plugin_config)
        self.call_data = bytearray()
        self.memory: wasmtime.Memory | None = None
        self.malloc: wasmtime.Func | None = None


class HostCalls:
    """The host functions of one instance, defined on its linker."""

    def __init__(self, guest: GuestState, env: HostEnv) -> None:
        self.guest = guest
        self.env = env

    def define(self, linker: wasmtime.Linker) -> None:
        for name, arity in SIGNATURES.items():
            call = BLOCK_CALLS.get(name)
            target = self._block_call(name, call) if call is not None else getattr(self, name)
            linker.define_func("env", name, wasmtime.FuncType([_I32] * arity, [_I32]), self._guarded(target), True)

    @staticmethod
    def _guarded(target: Callable[..., int]) -> Callable[..., int]:
        """A bad pointer or malformed input is the guest's mistake, answered with a result; a
        DeadlineExceeded (and any host bug) unwinds the guest as a trap."""

        def call(caller: wasmtime.Caller, *args: int) -> int:
            try:
                return int(target(caller, *args))
            except _MemoryFault:
                return WasmResult.INVALID_MEMORY_ACCESS
            except _Missing:
                return WasmResult.NOT_FOUND
            except (UnicodeDecodeError, ValueError):
                return WasmResult.BAD_ARGUMENT

        return call

    # ---- memory ----

    def _memory(self, caller: wasmtime.Caller) -> wasmtime.Memory:
        memory = self.guest.memory
        if memory is None:
            found = caller.get("memory")
            if not isinstance(found, wasmtime.Memory):
                raise _MemoryFault
            memory = found
        return memory

    def read(self, caller: wasmtime.Caller, ptr: int, size: int) -> bytes:
        ptr, size = ptr & _MASK, size & _MASK
        memory = self._memory(caller)
        if ptr + size > memory.data_len(caller):
            raise _MemoryFault
        return bytes(memory.read(caller, ptr, ptr + size)) if size else b""

    def write(self, caller: wasmtime.Caller, ptr: int, data: bytes) -> None:
        ptr &= _MASK
        memory = self._memory(caller)
        if ptr + len(data) > memory.data_len(caller):
            raise _MemoryFault
        memory.write(caller, data, ptr)

    def give(self, caller: wasmtime.Caller, data: bytes, ret_ptr: int, ret_size: int) -> int:
        """Copy `data` into memory the guest's allocator hands out; its address and size go to
        the two pointers (0 and 0 for no bytes)."""
        address = 0
        if data:
            malloc = self.guest.malloc
            if malloc is None:
                return WasmResult.INTERNAL_FAILURE
            address = int(malloc(caller, len(data))) & _MASK
            if address == 0:
                return WasmResult.INVALID_MEMORY_ACCESS
            self.write(caller, address, data)
        self.write(caller, ret_ptr, _U32.pack(address))
        self.write(caller, ret_size, _U32.pack(len(data)))
        return WasmResult.OK

    # ---- bridging to the event loop ----

    def _run(self, name: str, call: Coroutine[Any, Any, Any]) -> tuple[WasmResult, Any]:
        """Run a block call on the event loop and wait for it, within the call's deadline."""
        env = self.env
        remaining = self.guest.exchange.deadline - time.monotonic()
        if remaining <= 0:
            call.close()
            raise DeadlineExceeded(f"{name} was called after the deadline")
        future = asyncio.run_coroutine_threadsafe(env.traced(name, env.blocks.answered(call)), env.loop)
        try:
            return future.result(remaining)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise DeadlineExceeded(f"{name} did not finish before the deadline") from None

    def _block_call(self, name: str, spec: BlockCall) -> Callable[..., int]:
        def call(caller: wasmtime.Caller, *raw: int) -> int:
            args: list[Any] = []
            at = 0
            for kind in spec.args:
                if kind == "i":
                    args.append(raw[at])
                    at += 1
                    continue
                data = self.read(caller, raw[at], raw[at + 1])
                args.append(data.decode() if kind == "s" else data)
                at += 2
            result, value = self._run(name, getattr(self.env.blocks, spec.method)(*args))
            if result != WasmResult.OK:
                return result
            if spec.result == "bytes":
                return self.give(caller, value, raw[at], raw[at + 1])
            if spec.result:
                self.write(caller, raw[at], (_U64 if spec.result == "u64" else _U32).pack(value))
            return WasmResult.OK

        return call

    # ---- the proxy-wasm set ----

    def proxy_log(self, caller: wasmtime.Caller, level: int, ptr: int, size: int) -> int:
        text = self.read(caller, ptr, size).decode(errors="replace")
        guest_log.log(_LOG_LEVELS.get(level, logging.INFO), "[%s] %s", self.guest.function, text)
        return WasmResult.OK

    def proxy_get_log_level(self, caller: wasmtime.Caller, ret: int) -> int:
        effective = guest_log.getEffectiveLevel()
        level = next((lv for lv, py in sorted(_LOG_LEVELS.items()) if py >= effective), LogLevel.CRITICAL)
        self.write(caller, ret, _U32.pack(level))
        return WasmResult.OK

    def proxy_set_effective_context(self, caller: wasmtime.Caller, context_id: int) -> int:
        return WasmResult.OK

    def proxy_get_current_time_nanoseconds(self, caller: wasmtime.Caller, ret: int) -> int:
        self.write(caller, ret, _U64.pack(time.time_ns()))
        return WasmResult.OK

    def proxy_get_property(self, caller: wasmtime.Caller, ptr: int, size: int, ret_ptr: int, ret_size: int) -> int:
        value = self.guest.exchange.properties.get(self.read(caller, ptr, size).rstrip(b"\0"))
        if value is None:
            return WasmResult.NOT_FOUND
        return self.give(caller, value, ret_ptr, ret_size)

    def proxy_set_property(self, caller: wasmtime.Caller, ptr: int, size: int, value_ptr: int, value_size: int) -> int:
        key = self.read(caller, ptr, size).rstrip(b"\0")
        self.guest.exchange.properties[key] = self.read(caller, value_ptr, value_size)
        return WasmResult.OK

    def _buffer(self, kind: int) -> bytearray:
        guest = self.guest
        buffers: dict[int, bytearray] = {
            BufferType.HTTP_REQUEST_BODY: guest.exchange.body,
            BufferType.HTTP_RESPONSE_BODY: guest.exchange.response,
            BufferType.VM_CONFIGURATION: guest.vm_config,
            BufferType.PLUGIN_CONFIGURATION: guest.plugin_config,
            BufferType.CALL_DATA: guest.call_data,
        }
        return _found(buffers, kind)

    def proxy_get_buffer_bytes(
        self, caller: wasmtime.Caller, kind: int, start: int, length: int, ret_ptr: int, ret_size: int
    ) -> int:
        buffer = self._buffer(kind)
        if start < 0 or length < 0 or start > len(buffer):
            return WasmResult.BAD_ARGUMENT
        return self.give(caller, bytes(buffer[start : start + length]), ret_ptr, ret_size)

    def proxy_set_buffer_bytes(
        self, caller: wasmtime.Caller, kind: int, start: int, length: int, ptr: int, size: int
    ) -> int:
        """Upstream's rule: from 0 with no length (or all of it) replaces the buffer, from its
        end (or past it) appends; anything else is refused."""
        buffer = self._buffer(kind)
        content = self.read(caller, ptr, size)
        start &= _MASK
        if start == 0 and (length == 0 or length >= len(buffer)):
            buffer[:] = content
        elif start >= len(buffer):
            buffer.extend(content)
        else:
            return WasmResult.BAD_ARGUMENT
        return WasmResult.OK

    def _map(self, kind: int) -> list[tuple[str, str]]:
        exchange = self.guest.exchange
        maps: dict[int, list[tuple[str, str]]] = {
            MapType.HTTP_REQUEST_HEADERS: exchange.headers,
            MapType.HTTP_REQUEST_TRAILERS: exchange.trailers,
            MapType.HTTP_RESPONSE_HEADERS: exchange.response_headers,
            MapType.HTTP_RESPONSE_TRAILERS: exchange.response_trailers,
        }
        return _found(maps, kind)

    def proxy_get_header_map_pairs(self, caller: wasmtime.Caller, kind: int, ret_ptr: int, ret_size: int) -> int:
        pairs = self._map(kind)
        return self.give(caller, encode_pairs(pairs), ret_ptr, ret_size)

    def proxy_set_header_map_pairs(self, caller: wasmtime.Caller, kind: int, ptr: int, size: int) -> int:
        pairs = self._map(kind)
        for key, value in decode_pairs(self.read(caller, ptr, size)):
            _replace(pairs, key, value)
        return WasmResult.OK

    def _key(self, caller: wasmtime.Caller, ptr: int, size: int) -> str:
        key = self.read(caller, ptr, size).decode().lower()
        if not key:
            raise ValueError("an empty header name")
        return key

    def proxy_get_header_map_value(
        self, caller: wasmtime.Caller, kind: int, key_ptr: int, key_size: int, ret_ptr: int, ret_size: int
    ) -> int:
        pairs = self._map(kind)
        value = header_value(pairs, self._key(caller, key_ptr, key_size))
        if value is None:
            return WasmResult.NOT_FOUND
        return self.give(caller, value.encode(), ret_ptr, ret_size)

    def _edit(self, caller: wasmtime.Caller, kind: int, key: tuple[int, int], value: tuple[int, int], add: bool) -> int:
        pairs = self._map(kind)
        name = self._key(caller, *key)
        text = self.read(caller, *value).decode()
        if add:
            pairs.append((name, text))
        else:
            _replace(pairs, name, text)
        return WasmResult.OK

    def proxy_replace_header_map_value(
        self, caller: wasmtime.Caller, kind: int, key_ptr: int, key_size: int, ptr: int, size: int
    ) -> int:
        return self._edit(caller, kind, (key_ptr, key_size), (ptr, size), add=False)

    def proxy_add_header_map_value(
        self, caller: wasmtime.Caller, kind: int, key_ptr: int, key_size: int, ptr: int, size: int
    ) -> int:
        return self._edit(caller, kind, (key_ptr, key_size), (ptr, size), add=True)

    def proxy_remove_header_map_value(self, caller: wasmtime.Caller, kind: int, key_ptr: int, key_size: int) -> int:
        pairs = self._map(kind)
        name = self._key(caller, key_ptr, key_size)
        pairs[:] = [(k, v) for k, v in pairs if k != name]
        return WasmResult.OK

    def proxy_send_local_response(
        self,
        caller: wasmtime.Caller,
        status: int,
        _details_ptr: int,
        _details_size: int,
        body_ptr: int,
        body_size: int,
        headers_ptr: int,
        headers_size: int,
        _grpc_status: int,
    ) -> int:
        if not 100 <= status <= 599:
            return WasmResult.BAD_ARGUMENT
        raw = self.read(caller, headers_ptr, headers_size)
        headers = decode_pairs(raw) if raw else []
        self.guest.exchange.local_reply = Reply(status, headers, self.read(caller, body_ptr, body_size))
        return WasmResult.OK

    proxy_send_http_response = proxy_send_local_response

    def proxy_get_shared_data(
        self, caller: wasmtime.Caller, key_ptr: int, key_size: int, ret_ptr: int, ret_size: int, ret_cas: int
    ) -> int:
        found = self.env.shared.get(self.read(caller, key_ptr, key_size))
        if found is None:
            return WasmResult.NOT_FOUND
        self.write(caller, ret_cas, _U32.pack(found[1] & _MASK))
        return self.give(caller, found[0], ret_ptr, ret_size)

    def proxy_set_shared_data(
        self, caller: wasmtime.Caller, key_ptr: int, key_size: int, ptr: int, size: int, cas: int
    ) -> int:
        return self.env.shared.set(self.read(caller, key_ptr, key_size), self.read(caller, ptr, size), cas & _MASK)


def _found(items: dict[int, T], kind: int) -> T:
    found = items.get(kind)
    if found is None:
        raise _Missing
    return found


def _replace(pairs: list[tuple[str, str]], key: str, value: str) -> None:
    pairs[:] = [(k, v) for k, v in pairs if k != key]
    pairs.append((key, value))
