"""Every sequencer through its block interface (no gRPC): increasing ids, and that the declared
features are the component's: `reserve` hands out consecutive ranges where SEGMENT is declared
and is refused with UnsupportedError elsewhere (snowflake)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator

import pytest

from layotto.components.sequencer.base import Sequencer, SequencerFeature
from layotto.errors import UnsupportedError
from tests.contract.sequencer.backends import ROWS, Row
from tests.support.rows import params


@pytest.fixture(scope="module", params=params(ROWS))
def row(request: pytest.FixtureRequest) -> Row:
    chosen: Row = request.param
    chosen.require()
    return chosen


@pytest.fixture(scope="module")
async def sequencer(row: Row) -> AsyncIterator[Sequencer]:
    component = await row.create()
    assert isinstance(component, Sequencer)
    try:
        yield component
    finally:
        await component.close()


def new_key() -> str:
    return f"sequencer|||ifc||{uuid.uuid4().hex}"


async def test_declares_exactly_the_rows_features(sequencer: Sequencer, row: Row) -> None:
    assert sequencer.features == row.features
    assert all(isinstance(f, SequencerFeature) for f in sequencer.features)


@pytest.mark.parametrize("strong", [True, False], ids=["strong", "weak"])
async def test_next_id_increases(sequencer: Sequencer, strong: bool) -> None:
    key = new_key()
    ids = [await sequencer.next_id(key, strong=strong, metadata={}) for _ in range(10)]
    assert ids[0] > 0 and all(b > a for a, b in itertools.pairwise(ids)), ids


async def test_segment_feature(sequencer: Sequencer, row: Row) -> None:
    key = new_key()
    if SequencerFeature.SEGMENT not in row.features:
        with pytest.raises(UnsupportedError) as refused:
            await sequencer.reserve(key, 5)
        assert refused.value.feature == SequencerFeature.SEGMENT
        return
    first = await sequencer.reserve(key, 5)
    assert first == 1, "a fresh key's first id is 1"
    assert await sequencer.reserve(key, 3) == 6, "the next range starts after the last one"
    assert await sequencer.next_id(key, strong=True, metadata={}) == 9
