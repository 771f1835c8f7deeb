"""The WasmResult a host call returns for each block core's problem, read from `answers.toml`
beside this module with `api/answers.py`'s loader, as each API reads its own file: the table
is data, and its order is this entry point's `Checks`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum

from layotto.api.answers import BLOCK_PROBLEMS, AnswerBook, load_book
from layotto.core.problems import Problem
from layotto.errors import InvalidArgumentError, NotFoundError
from layotto.wasm.abi import WasmResult

__all__ = ["BLOCKS", "Answer", "load", "result_of"]

#: A result, or a function of the component's error giving one.
Answer = WasmResult | Callable[[BaseException], WasmResult]

#: The blocks a function reaches, each a section of the file.
BLOCKS: Mapping[str, type[Enum]] = {
    block: BLOCK_PROBLEMS[block]
    for block in ("state", "pubsub", "sequencer", "lock", "configuration", "secrets", "bindings")
}


#: What a failed component call tells the guest, by its error's class.
_FAILURES = ((NotFoundError, WasmResult.NOT_FOUND), (InvalidArgumentError, WasmResult.BAD_ARGUMENT))


def _failure(exc: BaseException) -> WasmResult:
    return next((result for kind, result in _FAILURES if isinstance(exc, kind)), WasmResult.INTERNAL_FAILURE)


RULES: Mapping[str, Callable[[BaseException], WasmResult]] = {"failure": _failure}


def _row(value: object, where: str) -> Answer:
    if isinstance(value, str):
        if value in WasmResult.__members__:
            return WasmResult[value]
        if value in RULES:
            return RULES[value]
    raise ValueError(f"{where}: unknown result {value!r} (a WasmResult name or one of {sorted(RULES)})")


def load() -> AnswerBook[Answer]:
    return load_book(__package__ or "layotto.wasm", _row, BLOCKS)


def result_of(answers: Mapping[Enum, Answer], problem: Problem) -> WasmResult:
    """What the guest is told of `problem`; InternalFailure for a kind the table does not list."""
    found = answers.get(problem.kind)
    if isinstance(found, WasmResult):
        return found
    if found is None or problem.cause is None:
        return WasmResult.INTERNAL_FAILURE
    return found(problem.cause)
