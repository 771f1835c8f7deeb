"""What one function call sees through the ABI (its buffers, header maps and properties) and
what it leaves behind; and the failures a call can end in."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field

from layotto.wasm.abi import Action, WasmResult

__all__ = ["CALL", "CallFailed", "DeadlineExceeded", "Exchange", "Reply", "SharedData"]


class CallFailed(Exception):  # noqa: N818  (an outcome told to the caller, like a Problem)
    """A call that produced no answer of the guest's: the HTTP status to answer and `reason`,
    the label the error is counted under."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


class DeadlineExceeded(Exception):  # noqa: N818
    """Raised inside a host call whose function ran out of time: it unwinds the guest as a trap."""


@dataclass(slots=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(slots=True)
class Exchange:
    """One request to a function: buffer 0 and header map 0 in, buffer 1 and map 2 out."""

    headers: list[tuple[str, str]]
    body: bytearray
    #: monotonic() by which the call must be over, host calls included.
    deadline: float
    #: How many function-to-function calls led here (the HTTP request's own is 0).
    depth: int = 0
    response: bytearray = field(default_factory=bytearray)
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    response_trailers: list[tuple[str, str]] = field(default_factory=list)
    #: proxy_get_property paths (segments joined by NUL) and what proxy_set_property put there.
    properties: dict[bytes, bytes] = field(default_factory=dict)
    #: What the guest's last request callback answered.
    action: Action = Action.CONTINUE
    #: Set by proxy_send_local_response: the guest answers with this instead.
    local_reply: Reply | None = None

    @classmethod
    def idle(cls, deadline: float) -> Exchange:
        """The exchange of the lifecycle calls (start, configure): no request."""
        return cls(headers=[], body=bytearray(), deadline=deadline)

    def reply(self) -> Reply:
        if self.local_reply is not None:
            return self.local_reply
        return Reply(200, list(self.response_headers), bytes(self.response))


@dataclass(frozen=True, slots=True)
class Call:
    """The function call in progress, for the host calls it makes (a context variable, so a
    function-to-function call inherits its caller's deadline)."""

    function: str
    deadline: float
    depth: int


CALL: ContextVar[Call | None] = ContextVar("layotto_wasm_call", default=None)


class SharedData:
    """proxy_get/set_shared_data: a key-value map shared by every function of the sidecar, with
    the ABI's compare-and-swap versions. Worker threads use it at once, hence the lock."""

    def __init__(self) -> None:
        self._items: dict[bytes, tuple[bytes, int]] = {}
        self._lock = threading.Lock()
        self._version = 0

    def get(self, key: bytes) -> tuple[bytes, int] | None:
        with self._lock:
            return self._items.get(key)

    def set(self, key: bytes, value: bytes, cas: int) -> WasmResult:
        """Store `value`; a non-zero `cas` must be the version the caller read."""
        if not key:
            return WasmResult.BAD_ARGUMENT
        with self._lock:
            found = self._items.get(key)
            if cas and found is not None and found[1] != cas:
                return WasmResult.CAS_MISMATCH
            self._version += 1
            self._items[key] = (value, self._version)
        return WasmResult.OK


def header_value(pairs: Iterable[tuple[str, str]], key: str) -> str | None:
    lowered = key.lower()
    return next((v for k, v in pairs if k == lowered), None)
