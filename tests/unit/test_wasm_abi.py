"""The WASM functions' data: the ABI's pair encoding and the problem -> WasmResult table."""

from __future__ import annotations

import pytest

from layotto.core.problems import Problem
from layotto.core.state import StateProblem
from layotto.errors import ComponentError, NotFoundError
from layotto.wasm import answers
from layotto.wasm.abi import WasmResult, decode_pairs, encode_pairs


def test_pairs_round_trip_in_the_abi_layout() -> None:
    pairs = [("id", "id_1"), ("content-type", "text/plain"), ("empty", "")]
    raw = encode_pairs(pairs)
    assert raw[:4] == (3).to_bytes(4, "little")
    assert raw[4:12] == (2).to_bytes(4, "little") + (4).to_bytes(4, "little")
    assert raw.endswith(b"empty\0\0")
    assert decode_pairs(raw) == pairs
    # Upstream's Go encoder writes '0' where the terminators go: sizes are what count.
    sizes = 4 + 8 * len(pairs)
    assert decode_pairs(raw[:sizes] + raw[sizes:].replace(b"\0", b"0")) == pairs
    with pytest.raises(ValueError):
        decode_pairs(raw[:-3])
    with pytest.raises(ValueError):
        decode_pairs(b"\x09\0\0\0")


def test_every_block_the_functions_reach_has_its_answers() -> None:
    book = answers.load()
    for block in answers.BLOCKS:
        assert book[block], block
    state = book["state"]
    assert answers.result_of(state, Problem(StateProblem.STORE_NOT_FOUND, store="x")) == WasmResult.NOT_FOUND
    assert answers.result_of(state, Problem(StateProblem.KEY_EMPTY, store="x")) == WasmResult.BAD_ARGUMENT
    failed = Problem(StateProblem.GET_FAILED, ComponentError("down"), store="x", key="k")
    assert answers.result_of(state, failed) == WasmResult.INTERNAL_FAILURE
    missing = Problem(StateProblem.GET_FAILED, NotFoundError("gone"), store="x", key="k")
    assert answers.result_of(state, missing) == WasmResult.NOT_FOUND
    # A kind the table does not list is no check of this entry point, and an internal failure if raised.
    assert answers.result_of(state, Problem(StateProblem.QUERY_UNSUPPORTED, store="x")) == WasmResult.INTERNAL_FAILURE
    assert StateProblem.QUERY_UNSUPPORTED not in state
