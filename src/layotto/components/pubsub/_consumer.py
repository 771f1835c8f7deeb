"""Shared plumbing of the broker components: bounded concurrent handling of messages, batches
gathered from messages that arrive one by one, and the set of open subscriptions each closes
with itself."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar

from layotto.components.pubsub.base import BulkHandler, Handler, Message, Subscription

T = TypeVar("T")


class _Owner(Protocol):
    @property
    def subscriptions(self) -> OpenSubscriptions[Any]: ...


Owner = TypeVar("Owner", bound=_Owner)
Batching = TypeVar("Batching")

log = logging.getLogger("layotto.pubsub")


class Consumer(Generic[Owner, Batching]):
    """What each broker's subscription holds: its component (`owner`), its topic, and either the
    `handler` that takes each message or the `bulk` handler (with its options) that takes batches."""

    def __init__(self, owner: Owner, topic: str, handler: Handler | None, bulk: Batching | None) -> None:
        self.owner = owner
        self.topic = topic
        self.handler = handler
        self.bulk = bulk

    async def close(self) -> None:
        """Stop consuming (`_stop`: what is not acked is the broker's to redeliver), then leave
        the component's open subscriptions, whatever stopping met."""
        try:
            await self._stop()
        finally:
            self.owner.subscriptions.discard(self)

    async def _stop(self) -> None:
        raise NotImplementedError


class InFlight:
    """Runs message handlers as tasks, at most `limit` messages at a time (a task handling a
    batch counts its messages)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.tasks: set[asyncio.Task[None]] = set()
        #: Messages of the running tasks; only a task of more than one is in `_weights`.
        self.used = 0
        self._weights: dict[asyncio.Task[None], int] = {}
        self._freed = asyncio.Event()

    @property
    def free(self) -> int:
        return max(0, self.limit - self.used)

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
        self.used += 1
        task.add_done_callback(self._done)

    def start(self, work: Coroutine[Any, Any, None], messages: int = 1) -> None:
        """`spawn` for a coroutine already made (no wrapper), handling `messages` messages."""
        task = asyncio.create_task(work)
        self.tasks.add(task)
        self.used += messages
        if messages != 1:
            self._weights[task] = messages
        task.add_done_callback(self._done_logged)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.used -= self._weights.pop(task, 1)
        self._freed.set()

    def _done_logged(self, task: asyncio.Task[None]) -> None:
        self._done(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("handling a message failed", exc_info=task.exception())

    async def cancel(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Gathering(Generic[T]):
    """Items that arrive one by one, handed to `flush` in batches: a batch goes once it holds
    `size` items, or `wait` seconds after its first item arrived (daprd's bulk window)."""

    def __init__(self, size: int, wait: float, flush: Callable[[list[T]], None]) -> None:
        self.size = max(1, size)
        self.wait = wait
        self._flush = flush
        self._items: list[T] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, item: T) -> None:
        self._items.append(item)
        if len(self._items) >= self.size:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.wait, self.flush)

    def flush(self) -> None:
        items = self.take()
        if items:
            self._flush(items)

    def take(self) -> list[T]:
        """The items not handed over yet (none will be: the caller owns them now)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        items, self._items = self._items, []
        return items


async def call_handler(handler: Callable[[], Awaitable[bool]]) -> bool:
    """A handler that raises counts as a nack."""
    try:
        return await handler()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("pubsub handler raised; the message will be redelivered")
        return False


async def call_bulk_handler(handler: BulkHandler, messages: Sequence[Message]) -> list[bool]:
    """One verdict per message: a handler that raises nacks them all, a verdict it left out is
    a nack."""
    try:
        answer = await handler(messages)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("bulk pubsub handler raised; its %d messages will be redelivered", len(messages))
        return [False] * len(messages)
    verdicts = [bool(ok) for ok in answer[: len(messages)]]
    if len(verdicts) < len(messages):
        log.warning(
            "a bulk handler answered %d verdicts for %d messages; the rest are nacked", len(answer), len(messages)
        )
        verdicts += [False] * (len(messages) - len(verdicts))
    return verdicts


def stopping() -> bool:
    """Whether the running task was cancelled while one of its awaits ended another way: on
    Python 3.11 `asyncio.wait_for` (which client libraries use) can turn a cancellation that
    meets its timeout into TimeoutError, and a loop that goes on after a timeout would never
    stop. Such a loop checks this where it catches one."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


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
