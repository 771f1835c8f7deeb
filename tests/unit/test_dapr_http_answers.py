"""Dapr's HTTP API's answers file: its row shape ([status, error code, template]) loads through
`api/answers.py`, the status rules read the component's error, and a slip fails the load with
a message that names it."""

from __future__ import annotations

import grpc
import pytest

from layotto.api.answers import parse_book
from layotto.api.dapr_http.answers import BLOCKS, RequestProblem, answer, http_row, load
from layotto.core.problems import Problem
from layotto.core.state import StateProblem
from layotto.errors import BackendUnavailableError, ETagInvalidError, ETagMismatchError
from layotto.runtime.invoke import InvokeError


def test_the_file_loads_with_every_section() -> None:
    book = load()
    for block, kinds in BLOCKS.items():
        assert all(isinstance(kind, kinds) for kind in book[block]), block
    assert book["state"][StateProblem.STORE_NOT_FOUND] == (
        400,
        "ERR_STATE_STORE_NOT_FOUND",
        "state store {store} is not found",
    )
    assert book["request"][RequestProblem.BAD_TOKEN] == (401, "", "invalid api token")


def test_status_rules_read_the_components_error() -> None:
    table = load()["state"]
    save = Problem(StateProblem.SAVE_FAILED, ETagMismatchError("stale"), store="s")
    assert answer(table, save) == (409, "ERR_STATE_SAVE", "failed saving state in state store s: stale")
    assert answer(table, Problem(StateProblem.SAVE_FAILED, ETagInvalidError("x"), store="s"))[0] == 400
    assert answer(table, Problem(StateProblem.SAVE_FAILED, BackendUnavailableError("x"), store="s"))[0] == 500
    invoke = load()["request"]
    forbidden = InvokeError(grpc.StatusCode.PERMISSION_DENIED, "no")
    assert answer(invoke, Problem(RequestProblem.INVOKE_FAILED, forbidden, app_id="a"))[0] == 403
    failed = InvokeError(grpc.StatusCode.UNAVAILABLE, "down")
    assert answer(invoke, Problem(RequestProblem.INVOKE_FAILED, failed, app_id="a")) == (
        500,
        "ERR_DIRECT_INVOKE",
        "failed to invoke, id: a, err: down",
    )


def test_a_kind_the_table_does_not_list_is_answered_internal() -> None:
    problem = Problem(StateProblem.GET_FAILED, RuntimeError("boom"), store="s", key="k")
    assert answer({}, problem) == (500, "ERR_INTERNAL", str(problem))


def test_checks_follow_the_file_order() -> None:
    text = '[state]\nKEY_EMPTY = [400, "ERR_A", "a"]\nNO_STORES = [500, "ERR_B", "b"]\n'
    book = parse_book("t", text, http_row, BLOCKS)
    with pytest.raises(Problem) as refused:
        book.checks("state").refuse([Problem(StateProblem.NO_STORES), Problem(StateProblem.KEY_EMPTY, store="s")])
    assert refused.value.kind is StateProblem.KEY_EMPTY


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[stat]\nKEY_EMPTY = [400, "ERR_A", "a"]\n', "unknown block [stat]"),
        ('[state]\nKEY_EMPTI = [400, "ERR_A", "a"]\n', "[state] KEY_EMPTI: StateProblem has no such kind"),
        ('[state]\nKEY_EMPTY = [700, "ERR_A", "a"]\n', "unknown status 700"),
        ('[state]\nKEY_EMPTY = ["etag", "ERR_A", "a"]\n', "unknown status 'etag'"),
        ('[state]\nKEY_EMPTY = [true, "ERR_A", "a"]\n', "unknown status True"),
        ('[state]\nKEY_EMPTY = [400, "err a", "a"]\n', "error code 'err a' is not an UPPER_CASE name"),
        ('[state]\nKEY_EMPTY = [400, "a"]\n', "expected [status, error code, message template]"),
        ('[state]\nKEY_EMPTY = ["INVALID_ARGUMENT", "a"]\n', "expected [status, error code, message template]"),
    ],
)
def test_a_slip_fails_the_load_and_is_named(text: str, named: str) -> None:
    with pytest.raises(ValueError, match=named.replace("[", r"\[").replace("]", r"\]")):
        parse_book("t.toml", text, http_row, BLOCKS)
