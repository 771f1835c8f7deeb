"""The answers files: each API's file loads, and a file with a slip in it fails the load with a
message that names the slip (never a call at run time)."""

from __future__ import annotations

import grpc
import pytest

from layotto.api.answers import BLOCK_PROBLEMS, load_answers, parse_answers
from layotto.core.problems import Problem
from layotto.core.state import StateProblem
from layotto.errors import BackendUnavailableError, ETagMismatchError

API_PACKAGES = ["layotto.api.layotto", "layotto.api.dapr"]


@pytest.mark.parametrize("package", API_PACKAGES)
def test_every_api_file_loads_and_answers_state(package: str) -> None:
    book = load_answers(package)
    table = book["state"]
    assert table[StateProblem.NO_STORES] == (grpc.StatusCode.FAILED_PRECONDITION, "state store is not configured")
    code, _ = table[StateProblem.SAVE_FAILED]
    assert callable(code)
    assert code(ETagMismatchError("x")) == grpc.StatusCode.ABORTED
    assert code(BackendUnavailableError("x")) == grpc.StatusCode.UNAVAILABLE
    assert code(RuntimeError("x")) == grpc.StatusCode.INTERNAL


def test_checks_follow_the_file_order() -> None:
    book = parse_answers("t", '[state]\nKEY_EMPTY = ["INVALID_ARGUMENT", "a"]\nNO_STORES = ["UNKNOWN", "b"]\n')
    assert list(book["state"]) == [StateProblem.KEY_EMPTY, StateProblem.NO_STORES]
    checks = book.checks("state")
    with pytest.raises(Problem) as refused:
        checks.refuse([Problem(StateProblem.NO_STORES), Problem(StateProblem.KEY_EMPTY, store="s")])
    assert refused.value.kind is StateProblem.KEY_EMPTY


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[stat]\nKEY_EMPTY = ["UNKNOWN", "a"]\n', "unknown block [stat]"),
        ('[state]\nKEY_EMPTI = ["UNKNOWN", "a"]\n', "[state] KEY_EMPTI: StateProblem has no such kind"),
        ('[state]\nKEY_EMPTY = ["NOT_A_CODE", "a"]\n', "unknown code 'NOT_A_CODE'"),
        ('[state]\nKEY_EMPTY = ["unavailable", "a"]\n', "unknown code 'unavailable'"),
        ('[state]\nKEY_EMPTY = ["UNKNOWN"]\n', "expected [code, message template]"),
    ],
)
def test_a_slip_fails_the_load_and_is_named(text: str, named: str) -> None:
    with pytest.raises(ValueError, match=named.replace("[", r"\[").replace("]", r"\]")):
        parse_answers("t.toml", text)


def test_a_block_the_api_has_no_answers_for_is_named() -> None:
    with pytest.raises(KeyError, match=r"t has no \[lock\] answers"):
        parse_answers("t", "")["lock"]


def test_every_block_section_names_a_core_problem_enum() -> None:
    for package in API_PACKAGES:
        book = load_answers(package)
        for block in BLOCK_PROBLEMS:
            try:
                table = book[block]
            except KeyError:
                continue
            assert all(isinstance(kind, BLOCK_PROBLEMS[block]) for kind in table)
