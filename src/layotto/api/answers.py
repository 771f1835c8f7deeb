"""Each gRPC API's answers to the block cores' problems, read from the API's `answers.toml`.

The wording is upstream's, byte for byte, and it is data: one file per API lists every status
code and message that API can answer, so it is compared with upstream in one place, and the
adapters hold handlers only. A file that names an unknown block, kind or code fails the load
(and the test that loads every API's file), never a call.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from enum import Enum
from importlib import resources

import grpc

from layotto.api.common import Answers, Code, checks, failure_code
from layotto.core.bindings import BindingsProblem
from layotto.core.configuration import ConfigurationProblem
from layotto.core.file import FileProblem
from layotto.core.lock import LockProblem
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
)

__all__ = ["AnswerBook", "load_answers"]

StatusCode = grpc.StatusCode

#: The problem kinds of each block (a section of an answers file).
BLOCK_PROBLEMS: Mapping[str, type[Enum]] = {
    "state": StateProblem,
    "lock": LockProblem,
    "sequencer": SequencerProblem,
    "pubsub": PubSubProblem,
    "configuration": ConfigurationProblem,
    "secrets": SecretsProblem,
    "bindings": BindingsProblem,
    "file": FileProblem,
    # Upstream's GetFile words its problems apart from the other file RPCs.
    "file-get": FileProblem,
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
}


class AnswerBook:
    """One API's answers, by block."""

    def __init__(self, source: str, tables: Mapping[str, Answers]) -> None:
        self.source = source
        self._tables = tables

    def __getitem__(self, block: str) -> Answers:
        try:
            return self._tables[block]
        except KeyError:
            raise KeyError(f"{self.source} has no [{block}] answers") from None

    def checks(self, block: str) -> Checks:
        """The checks of the block's core, in the order its answers list them."""
        return checks(self[block])


def _code(text: object, where: str) -> Code:
    if isinstance(text, str):
        if text.isupper() and text in StatusCode.__members__:
            return StatusCode.__members__[text]
        if text in CODE_RULES:
            return CODE_RULES[text]
    raise ValueError(f"{where}: unknown code {text!r} (a gRPC status name or one of {sorted(CODE_RULES)})")


def parse_answers(source: str, text: str) -> AnswerBook:
    """The answers in `text` (an answers file's contents; `source` names it in errors)."""
    tables: dict[str, Answers] = {}
    for block, rows in tomllib.loads(text).items():
        kinds = BLOCK_PROBLEMS.get(block)
        if kinds is None or not isinstance(rows, dict):
            raise ValueError(f"{source}: unknown block [{block}] (one of {sorted(BLOCK_PROBLEMS)})")
        table: dict[Enum, tuple[Code, str]] = {}
        for name, row in rows.items():
            where = f"{source} [{block}] {name}"
            if name not in kinds.__members__:
                raise ValueError(f"{where}: {kinds.__name__} has no such kind")
            if not (isinstance(row, list) and len(row) == 2 and isinstance(row[1], str)):
                raise ValueError(f"{where}: expected [code, message template], got {row!r}")
            table[kinds[name]] = (_code(row[0], where), row[1])
        tables[block] = table
    return AnswerBook(source, tables)


def load_answers(package: str) -> AnswerBook:
    """The answers of the API package `package` (its `answers.toml`)."""
    text = resources.files(package).joinpath("answers.toml").read_text(encoding="utf-8")
    return parse_answers(f"{package}/answers.toml", text)
