"""The segment cache: WEAK ids served from memory, one backend round trip per segment.

Per key, a double buffer: the segment being handed out and the next one, reserved in the
background once the current one runs low (a tenth of a segment left), so callers rarely wait
for the backend. Each segment is reserved atomically in the backend, so sidecars sharing it
never hand out the same id; ids left in a segment when a sidecar stops are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("layotto.sequencer")

Reserve = Callable[[str, int], Coroutine[Any, Any, int]]

#: After a background prefetch fails, wait this long before the next background attempt;
#: a caller whose segment is exhausted still retries at once.
_PREFETCH_BACKOFF = 0.5


class _KeySegments:
    __slots__ = ("end", "failed_at", "floor", "next", "pending")

    def __init__(self) -> None:
        self.next = 0  # next id to hand out
        self.end = 0  # one past the last id of the current segment
        self.floor = 0  # ids <= floor were already issued by this sidecar (STRONG calls)
        self.pending: asyncio.Task[int] | None = None  # reserving the following segment
        self.failed_at = 0.0


class SegmentCache:
    def __init__(self, reserve: Reserve, step: int, low_water: int | None = None) -> None:
        self._reserve = reserve
        self.step = step
        # Upstream prefetches at 1000 left of 10000; keep that ratio for other steps.
        self.low_water = low_water if low_water is not None else max(1, step // 10)
        self._keys: dict[str, _KeySegments] = {}

    def observe(self, key: str, issued: int) -> None:
        """An id was issued outside the cache; never hand out one at or below it later."""
        state = self._keys.get(key)
        if state is not None and issued > state.floor:
            state.floor = issued

    async def next(self, key: str) -> int:
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeySegments()
        while True:
            if state.next <= state.floor:
                state.next = state.floor + 1
            if state.next < state.end:
                issued = state.next
                state.next += 1
                if state.end - state.next <= self.low_water:
                    self._prefetch(key, state)
                return issued
            await self._swap(key, state)

    def _prefetch(self, key: str, state: _KeySegments) -> None:
        pending = state.pending
        if pending is not None:
            if not pending.done() or pending.exception() is None:
                return
            if time.monotonic() - state.failed_at < _PREFETCH_BACKOFF:
                return
        state.pending = self._start(key, state)

    def _start(self, key: str, state: _KeySegments) -> asyncio.Task[int]:
        task: asyncio.Task[int] = asyncio.get_running_loop().create_task(self._reserve(key, self.step))

        def done(t: asyncio.Task[int]) -> None:
            if not t.cancelled() and t.exception() is not None:
                state.failed_at = time.monotonic()
                log.warning("reserving a segment of %s failed: %s", key, t.exception())

        task.add_done_callback(done)
        return task

    async def _swap(self, key: str, state: _KeySegments) -> None:
        """The current segment is used up: wait for the next one and make it current."""
        task = state.pending
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = state.pending = self._start(key, state)
        try:
            # Shielded: one caller giving up (deadline, cancel) must not cancel the
            # reservation other callers are waiting for.
            first = await asyncio.shield(task)
        except Exception:
            if state.pending is task:
                state.pending = None
            raise
        if state.pending is task:  # the first waiter to wake installs it; others just loop
            state.pending = None
            state.next, state.end = first, first + self.step

    async def close(self) -> None:
        tasks = [s.pending for s in self._keys.values() if s.pending is not None and not s.pending.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._keys.clear()
