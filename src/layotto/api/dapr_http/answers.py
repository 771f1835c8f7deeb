"""Dapr's HTTP API's answers (`answers.toml` beside this module): rows of
[HTTP status, error code, message template], read by `api/answers.py` with this API's row
parser, over the block cores' problem kinds and the adapter's own (`RequestProblem`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from enum import Enum

import grpc

from layotto.api.answers import BLOCK_PROBLEMS, AnswerBook, load_book
from layotto.core.lock import LockProblem
from layotto.core.problems import Problem
from layotto.errors import ETagInvalidError, ETagMismatchError, InvalidArgumentError
from layotto.runtime.invoke import InvokeError

__all__ = ["HttpAnswer", "HttpAnswers", "RequestProblem", "answer", "http_row", "load"]

#: An HTTP status, or a function of the component's error giving one.
Status = int | Callable[[BaseException], int]
#: (status, daprd's errorCode, message template).
HttpAnswer = tuple[Status, str, str]
HttpAnswers = Mapping[Enum, HttpAnswer]


class RequestProblem(Enum):
    """What the adapter refuses before (or instead of) a core: requests it cannot read, health,
    invocation, the API token."""

    MALFORMED_REQUEST = "the body is not what the endpoint reads"  # cause: the decode error
    MALFORMED_STATES = "a save body is not a list of state items"  # cause: the decode error
    BULK_EVENTS_MALFORMED = "a bulk publish body is not a list of entries"  # facts: name, topic
    BULK_EVENT_MISMATCH = "a bulk entry's event does not fit its content type"  # facts: name, topic
    NOT_READY = "the sidecar is not serving"  # facts: targets
    APP_ID_MISMATCH = "the probe asked for another app id"
    OUTBOUND_NOT_READY = "the sidecar cannot make calls yet"
    NO_APP_ID = "an invocation names no app id"
    INVOKE_FAILED = "the invocation failed"  # facts: app_id; cause: the InvokeError
    NO_APP_CHANNEL = "configuration updates have no app to go to"
    UNSUBSCRIBE_FAILED = "no such configuration subscription"  # facts: id
    BAD_TOKEN = "the API token is missing or wrong"


#: The sections of this API's file.
BLOCKS: Mapping[str, type[Enum]] = {
    **{block: BLOCK_PROBLEMS[block] for block in ("state", "lock", "pubsub", "configuration", "secrets", "bindings")},
    # daprd words Unlock's problems apart from TryLock's.
    "unlock": LockProblem,
    "request": RequestProblem,
}


def _state_status(exc: BaseException) -> int:
    if isinstance(exc, ETagMismatchError):
        return 409
    if isinstance(exc, (ETagInvalidError, InvalidArgumentError)):
        return 400
    return 500


def _invoke_status(exc: BaseException) -> int:
    if isinstance(exc, InvokeError) and exc.code == grpc.StatusCode.PERMISSION_DENIED:
        return 403
    return 500


#: The statuses worked out from the component's error, by the name the file gives them.
STATUS_RULES: Mapping[str, Callable[[BaseException], int]] = {
    "state": _state_status,
    "invoke": _invoke_status,
}

_ERROR_CODE = re.compile(r"^(|[A-Z][A-Z0-9_]*)$")


def _status(value: object, where: str) -> Status:
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return value
    if isinstance(value, str) and value in STATUS_RULES:
        return STATUS_RULES[value]
    raise ValueError(f"{where}: unknown status {value!r} (an HTTP status or one of {sorted(STATUS_RULES)})")


def http_row(row: object, where: str) -> HttpAnswer:
    """A row of this API's file: [status or rule name, error code, message template]."""
    if not (isinstance(row, list) and len(row) == 3 and isinstance(row[1], str) and isinstance(row[2], str)):
        raise ValueError(f"{where}: expected [status, error code, message template], got {row!r}")
    if not _ERROR_CODE.match(row[1]):
        raise ValueError(f"{where}: error code {row[1]!r} is not an UPPER_CASE name")
    return _status(row[0], where), row[1], row[2]


def load() -> AnswerBook[HttpAnswer]:
    return load_book("layotto.api.dapr_http", http_row, BLOCKS)


def answer(table: HttpAnswers, problem: Problem) -> tuple[int, str, str]:
    """The status, error code and message `table` gives `problem`."""
    found = table.get(problem.kind)
    if found is None:
        # A failure kind the table forgot: say what happened rather than hide it.
        return 500, "ERR_INTERNAL", str(problem)
    status, code, template = found
    if not isinstance(status, int):
        status = status(problem.cause if problem.cause is not None else problem)
    return status, code, template.format(error=problem.cause, **problem.facts)
