"""An OS error's text reaches a caller without the sidecar's absolute paths: in a problem's
answer (`message_of`, through `{error}`) and when one escapes a handler (`answered`)."""

from __future__ import annotations

import enum
from typing import Any

import grpc
import pytest

from layotto.api.common import Answering, answered, message_of, public_text
from layotto.core.problems import Problem
from layotto.errors import ComponentError

C = grpc.StatusCode
DATA = "/var/lib/layotto/files/bucket/report.txt"


class _Kind(enum.Enum):
    READ_FAILED = "read failed"


ANSWERS = {_Kind.READ_FAILED: (C.INTERNAL, "read {name} failed: {error}")}


def _os_error() -> OSError:
    return FileNotFoundError(2, "No such file or directory", DATA)


def test_an_os_errors_paths_become_their_last_part() -> None:
    assert public_text(_os_error()) == "[Errno 2] No such file or directory: 'report.txt'"
    renamed = OSError(18, "Invalid cross-device link", "/srv/a/from.bin", None, "/mnt/b/to.bin")
    assert public_text(renamed) == "[Errno 18] Invalid cross-device link: 'from.bin' -> 'to.bin'"


def test_a_wrapped_os_error_is_shown_without_its_paths() -> None:
    # A component that words the OS error into its own, keeping it as the cause.
    try:
        try:
            raise _os_error()
        except OSError as exc:
            raise ComponentError(f"cannot open {DATA}: {exc.strerror} (under /var/lib/layotto/files)") from exc
    except ComponentError as wrapped:
        problem = Problem(_Kind.READ_FAILED, wrapped, name="report")
    code, message = message_of(ANSWERS, problem)
    assert code == C.INTERNAL
    assert message == "read report failed: cannot open report.txt: No such file or directory (under files)"
    assert "/var" not in message


def test_text_not_from_the_os_is_left_alone() -> None:
    # A key or a URL that looks like a path is the caller's own text, not the server's.
    error = ComponentError("key /orders/1 not found at http://store/v1/orders")
    assert public_text(error) == str(error)
    problem = Problem(_Kind.READ_FAILED, error, name="/orders/1")
    assert message_of(ANSWERS, problem)[1] == f"read /orders/1 failed: {error}"


class _AbortedError(Exception):
    pass


class _Context:
    def __init__(self) -> None:
        self.status: tuple[grpc.StatusCode, str] | None = None

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.status = (code, details)
        raise _AbortedError


class _Part(Answering[Any]):
    def __init__(self, error: BaseException) -> None:
        super().__init__(None, ANSWERS)
        self.error = error

    @answered
    async def Read(self, request: Any, context: Any) -> None:
        raise self.error


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (_os_error(), C.INTERNAL),
        (PermissionError(13, "Permission denied", "/etc/layotto/secret.json"), C.INTERNAL),
        (ConnectionRefusedError(111, "Connection refused"), C.UNAVAILABLE),
        (TimeoutError("timed out reading /run/layotto/sock"), C.DEADLINE_EXCEEDED),
    ],
)
async def test_an_os_error_escaping_a_handler_is_answered_without_its_paths(error: OSError, code: C) -> None:
    context = _Context()
    with pytest.raises(_AbortedError):
        await _Part(error).Read(None, context)
    assert context.status is not None
    assert context.status[0] == code
    assert "/etc" not in context.status[1] and "/var" not in context.status[1] and "/run" not in context.status[1]
