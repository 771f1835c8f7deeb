"""The Sequencer block: checks in upstream's order, the stored key layout, the next id."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from layotto.components.base import Metadata
from layotto.components.sequencer.base import SEPARATOR, Sequencer, prefix_strategy, stored_key
from layotto.core.problems import Problem
from layotto.errors import ComponentError

__all__ = ["BoundSequencer", "SequencerCore", "SequencerProblem", "bind_sequencers"]


class SequencerProblem(Enum):
    NO_STORES = "no sequencer is configured"
    KEY_EMPTY = "key is empty"  # facts: store
    BAD_INCREMENT = "unknown increment option"
    KEY_HAS_SEPARATOR = "key contains the separator"  # facts: key, separator
    STORE_NOT_FOUND = "sequencer not found"  # facts: store
    NEXT_ID_FAILED = "next id failed"  # facts: store


@dataclass(frozen=True, slots=True)
class BoundSequencer:
    store: Sequencer
    strategy: str


def bind_sequencers(stores: Mapping[str, Sequencer], metadata: Mapping[str, Metadata]) -> dict[str, BoundSequencer]:
    """name -> sequencer with its validated `keyPrefix` strategy (a ConfigError names a bad one)."""
    return {name: BoundSequencer(s, prefix_strategy(metadata.get(name, Metadata({})))) for name, s in stores.items()}


class SequencerCore:
    def __init__(self, stores: Mapping[str, BoundSequencer], app_id: str) -> None:
        self._stores = stores
        self._app_id = app_id

    async def next_id(self, store_name: str, key: str, strong: bool | None, metadata: dict[str, str]) -> int:
        """The next id for `key`; `strong` None means the request's increment option is unknown."""
        if not self._stores:
            raise Problem(SequencerProblem.NO_STORES)
        if not key:
            raise Problem(SequencerProblem.KEY_EMPTY, store=store_name)
        if strong is None:
            raise Problem(SequencerProblem.BAD_INCREMENT)
        if SEPARATOR in key:
            raise Problem(SequencerProblem.KEY_HAS_SEPARATOR, key=key, separator=SEPARATOR)
        bound = self._stores.get(store_name)
        if bound is None:
            raise Problem(SequencerProblem.STORE_NOT_FOUND, store=store_name)
        try:
            return await bound.store.next_id(
                stored_key(bound.strategy, store_name, self._app_id, key), strong=strong, metadata=metadata
            )
        except ComponentError as exc:
            raise Problem(SequencerProblem.NEXT_ID_FAILED, exc, store=store_name) from exc
