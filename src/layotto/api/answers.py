"""Each API's answers to the block cores' problems, read from the API's `answers.toml`.

The wording is upstream's, byte for byte, and it is data: one file per API lists every status
code and message that API can answer, so it is compared with upstream in one place, and the
adapters hold handlers only. A file that names an unknown block, kind or code fails the load
(and the test that loads every API's file), never a call.

The gRPC APIs' rows are `[code, message template]` (`load_answers`); an API whose answers have
another shape (Dapr's HTTP API: status, error code, template) reads its file with `load_book`
and its own row parser, over the same sections and the same check order.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from enum import Enum
from importlib import resources
from typing import Generic, TypeVar

import grpc

from layotto.api.common import Code, failure_code
from layotto.core.bindings import BindingsProblem
from layotto.core.configuration import ConfigurationProblem
from layotto.core.cryption import CryptionProblem
from layotto.core.delay_queue import DelayQueueProblem
from layotto.core.email import EmailProblem
from layotto.core.file import FileProblem
from layotto.core.lock import LockProblem
from layotto.core.notify import NotifyProblem
from layotto.core.oss import OssProblem
from layotto.core.problems import Checks
from layotto.core.pubsub import PubSubProblem
from layotto.core.secrets import SecretsProblem
from layotto.core.sequencer import SequencerProblem
from layotto.core.state import StateProblem
from layotto.errors import (
    AlreadyExistsError,
    BackendUnavailableError,
    ETagInvalidError,
    ETagMismatchError,
    InvalidArgumentError,
    NotFoundError,
    UnsupportedError,
)

__all__ = ["AnswerBook", "RowParser", "load_answers", "load_book", "parse_answers", "parse_book"]

StatusCode = grpc.StatusCode

#: The problem kinds of each block (a section of an answers file).
BLOCK_PROBLEMS: Mapping[str, type[Enum]] = {
    "state": StateProblem,
    "lock": LockProblem,
    "sequencer": SequencerProblem,
    "pubsub": PubSubProblem,
    # Dapr's SubscribeTopicEventsAlpha1 words its checks apart from PublishEvent's.
    "pubsub-subscribe": PubSubProblem,
    "configuration": ConfigurationProblem,
    "secrets": SecretsProblem,
    "bindings": BindingsProblem,
    "file": FileProblem,
    # Upstream's GetFile words its problems apart from the other file RPCs.
    "file-get": FileProblem,
    # The extension services (spec.proto.extension.v1).
    "oss": OssProblem,
    "cryption": CryptionProblem,
    "email": EmailProblem,
    "delay_queue": DelayQueueProblem,
    "notify": NotifyProblem,
}


def _state_code(exc: BaseException) -> StatusCode:
    if isinstance(exc, ETagMismatchError):
        return StatusCode.ABORTED
    if isinstance(exc, (ETagInvalidError, InvalidArgumentError)):
        return StatusCode.INVALID_ARGUMENT
    return failure_code(exc)


def _file_code(exc: BaseException) -> StatusCode:
    for kind, code in (
        (InvalidArgumentError, StatusCode.INVALID_ARGUMENT),
        (NotFoundError, StatusCode.NOT_FOUND),
        (AlreadyExistsError, StatusCode.ALREADY_EXISTS),
        (PermissionError, StatusCode.PERMISSION_DENIED),
        (BackendUnavailableError, StatusCode.UNAVAILABLE),
    ):
        if isinstance(exc, kind):
            return code
    return StatusCode.INTERNAL


def _extension_code(exc: BaseException) -> StatusCode:
    # Upstream's extensions answer INTERNAL for every failure; an unreachable backend is
    # UNAVAILABLE here (clients may retry), an operation the backend has no meaning for
    # UNIMPLEMENTED.
    if isinstance(exc, BackendUnavailableError):
        return StatusCode.UNAVAILABLE
    if isinstance(exc, UnsupportedError):
        return StatusCode.UNIMPLEMENTED
    return StatusCode.INTERNAL


def _unknown_for_internal(rule: Callable[[BaseException], StatusCode]) -> Callable[[BaseException], StatusCode]:
    # Upstream passes these component errors through as plain Go errors: code Unknown.
    def code(exc: BaseException) -> StatusCode:
        found = rule(exc)
        return StatusCode.UNKNOWN if found == StatusCode.INTERNAL else found

    return code


#: The codes worked out from the component's error, by the name an answers file gives them.
CODE_RULES: Mapping[str, Callable[[BaseException], StatusCode]] = {
    # INTERNAL; UNAVAILABLE for an unreachable backend, DEADLINE_EXCEEDED for its timeout.
    "failure": failure_code,
    "failure-unknown": _unknown_for_internal(failure_code),
    # ABORTED for an etag mismatch, INVALID_ARGUMENT for a malformed etag or request, else "failure".
    "state": _state_code,
    "state-unknown": _unknown_for_internal(_state_code),
    "invalid-argument-or-failure": lambda exc: (
        StatusCode.INVALID_ARGUMENT if isinstance(exc, InvalidArgumentError) else failure_code(exc)
    ),
    "file": _file_code,
    "unavailable-or-internal": lambda exc: (
        StatusCode.UNAVAILABLE if isinstance(exc, BackendUnavailableError) else StatusCode.INTERNAL
    ),
    "extension-failure": _extension_code,
}


#: One row's answer, as an API's row parser builds it.
R = TypeVar("R")
#: Reads one row of an answers file (`where` names it in errors) into the API's answer.
RowParser = Callable[[object, str], R]


class AnswerBook(Generic[R]):
    """One API's answers, by block."""

    def __init__(self, source: str, tables: Mapping[str, Mapping[Enum, R]]) -> None:
        self.source = source
        self._tables = tables

    def __getitem__(self, block: str) -> Mapping[Enum, R]:
        try:
            return self._tables[block]
        except KeyError:
            raise KeyError(f"{self.source} has no [{block}] answers") from None

    def checks(self, block: str) -> Checks:
        """The checks of the block's core, in the order its answers list them."""
        return Checks(self[block])


def _code(text: object, where: str) -> Code:
    if isinstance(text, str):
        if text.isupper() and text in StatusCode.__members__:
            return StatusCode.__members__[text]
        if text in CODE_RULES:
            return CODE_RULES[text]
    raise ValueError(f"{where}: unknown code {text!r} (a gRPC status name or one of {sorted(CODE_RULES)})")


def grpc_row(row: object, where: str) -> tuple[Code, str]:
    """A gRPC API's row: [status code or rule name, message template]."""
    if not (isinstance(row, list) and len(row) == 2 and isinstance(row[1], str)):
        raise ValueError(f"{where}: expected [code, message template], got {row!r}")
    return _code(row[0], where), row[1]


def parse_book(
    source: str, text: str, row: RowParser[R], blocks: Mapping[str, type[Enum]] = BLOCK_PROBLEMS
) -> AnswerBook[R]:
    """The answers in `text` (an answers file's contents; `source` names it in errors), each
    row read by `row`; `blocks` names the sections the file may have and their problem kinds."""
    tables: dict[str, dict[Enum, R]] = {}
    for block, rows in tomllib.loads(text).items():
        kinds = blocks.get(block)
        if kinds is None or not isinstance(rows, dict):
            raise ValueError(f"{source}: unknown block [{block}] (one of {sorted(blocks)})")
        table: dict[Enum, R] = {}
        for name, value in rows.items():
            where = f"{source} [{block}] {name}"
            if name not in kinds.__members__:
                raise ValueError(f"{where}: {kinds.__name__} has no such kind")
            table[kinds[name]] = row(value, where)
        tables[block] = table
    return AnswerBook(source, tables)


def parse_answers(source: str, text: str) -> AnswerBook[tuple[Code, str]]:
    """A gRPC API's answers in `text`."""
    return parse_book(source, text, grpc_row)


def load_book(package: str, row: RowParser[R], blocks: Mapping[str, type[Enum]] = BLOCK_PROBLEMS) -> AnswerBook[R]:
    """The answers of the API package `package` (its `answers.toml`), each row read by `row`."""
    text = resources.files(package).joinpath("answers.toml").read_text(encoding="utf-8")
    return parse_book(f"{package}/answers.toml", text, row, blocks)


def load_answers(package: str) -> AnswerBook[tuple[Code, str]]:
    """The answers of the gRPC API package `package` (its `answers.toml`)."""
    return load_book(package, grpc_row)
