"""Shared plumbing of the broker components: bounded concurrent handling of messages, and the
set of open subscriptions each closes with itself."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, Generic, TypeVar

from layotto.components.pubsub.base import Subscription

log = logging.getLogger("layotto.pubsub")


class InFlight:
    """Runs message handlers as tasks, at most `limit` at a time."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.tasks: set[asyncio.Task[None]] = set()
        self._freed = asyncio.Event()

    @property
    def free(self) -> int:
        return max(0, self.limit - len(self.tasks))

    async def wait_free(self) -> int:
        while not self.free:
            self._freed.clear()
            await self._freed.wait()
        return self.free

    def spawn(self, work: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handling a message failed")

        task = asyncio.create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        """`spawn` for a coroutine already made: one task per message, no wrapper."""
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self._done_logged)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self._freed.set()

    def _done_logged(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self._freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("handling a message failed", exc_info=task.exception())

    async def cancel(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def call_handler(handler: Callable[[], Awaitable[bool]]) -> bool:
    """A handler that raises counts as a nack."""
    try:
        return await handler()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("pubsub handler raised; the message will be redelivered")
        return False


async def backoff_sleep(attempt: int, base: float = 0.2, cap: float = 5.0) -> None:
    await asyncio.sleep(min(cap, base * 2 ** min(attempt, 10)))


S = TypeVar("S", bound=Subscription)


class OpenSubscriptions(Generic[S]):
    """The subscriptions a component has open: each leaves when it closes, the rest are closed
    with the component."""

    def __init__(self) -> None:
        self._open: set[S] = set()

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[S]:
        return iter(list(self._open))

    def add(self, subscription: S) -> S:
        self._open.add(subscription)
        return subscription

    def discard(self, subscription: S) -> None:
        self._open.discard(subscription)

    async def close_all(self) -> None:
        for subscription in list(self._open):
            await subscription.close()
