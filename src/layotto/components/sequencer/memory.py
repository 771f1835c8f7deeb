"""In-memory sequencer: one counter per key in this process (tests, single sidecar)."""

from __future__ import annotations

from layotto.components.base import ComponentContext, Metadata
from layotto.components.sequencer.base import RangeSequencer, check_count


class InMemorySequencer(RangeSequencer):
    metadata_keys = ("segmentCacheEnable", "segmentStep", "keyPrefix")
    segment_cache_default = True

    def __init__(self) -> None:
        self._counters: dict[str, int] = {}

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)

    async def reserve(self, key: str, count: int) -> int:
        check_count(count)
        last = self._counters.get(key, 0)
        self._counters[key] = last + count
        return last + 1

    async def raise_to(self, key: str, floor: int) -> None:
        if self._counters.get(key, 0) < floor:
            self._counters[key] = floor
