"""Delays for the in-memory pub/sub: a timer heap in this process (as volatile as the broker)."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time

from layotto.components.delay_queue.base import RETRY_DELAY, DelayedMessage, DelayScheduler


class MemoryScheduler(DelayScheduler):
    async def start(self) -> None:
        self._heap: list[tuple[float, int, DelayedMessage]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._start_loop()

    async def stop(self) -> None:
        await self._stop_loop()

    async def schedule(self, message: DelayedMessage, delay: float) -> None:
        heapq.heappush(self._heap, (time.monotonic() + max(delay, 0.0), next(self._seq), message))
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            now = time.monotonic()
            if self._heap and self._heap[0][0] <= now:
                _, _, message = heapq.heappop(self._heap)
                if not await self.publish(message):
                    heapq.heappush(self._heap, (time.monotonic() + RETRY_DELAY, next(self._seq), message))
                continue
            timeout = self._heap[0][0] - now if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
