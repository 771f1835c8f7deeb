"""In-memory pub/sub (`in-memory`): one process, no persistence. For tests and development.

Each consumer group of a topic has its own queue; the group's subscribers take turns on it.
A nacked message goes back to its group's queue after `redeliverInterval`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from layotto.components.base import ComponentContext, Metadata
from layotto.components.delay_queue.base import DelayScheduler
from layotto.components.delay_queue.memory import MemoryScheduler
from layotto.components.pubsub.base import Handler, Message, PubSub, PubSubFeature, subscribe_options

log = logging.getLogger("layotto.pubsub.memory")


@dataclass
class _Group:
    queue: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    members: int = 0


class _MemorySubscription:
    def __init__(self, owner: InMemoryPubSub, key: tuple[str, str], handler: Handler, workers: int) -> None:
        self._owner = owner
        self._key = key
        self._handler = handler
        self._tasks = [asyncio.create_task(self._work()) for _ in range(workers)]
        self._closed = False

    async def _work(self) -> None:
        group = self._owner.groups[self._key]
        while True:
            message = await group.queue.get()
            acked = False
            try:
                acked = await self._handler(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handler failed for message %s", message.id)
            finally:
                if not acked:
                    self._owner.redeliver(group, message)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._owner.groups[self._key].members -= 1


class InMemoryPubSub(PubSub):
    metadata_keys = ("redeliverInterval", "consumerID", "maxConcurrency")
    features = frozenset({PubSubFeature.DELAY})

    def __init__(self) -> None:
        self.groups: dict[tuple[str, str], _Group] = {}
        self._subscriptions: list[_MemorySubscription] = []
        self._ids = itertools.count(1)
        self._timers: set[asyncio.Task[None]] = set()
        self.redeliver_interval = 0.1

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self.metadata = metadata
        self.redeliver_interval = metadata.get_duration("redeliverInterval", 0.1)

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        message = Message(topic=topic, data=data, id=str(next(self._ids)), delivery_count=1)
        for (group_topic, _), group in self.groups.items():
            if group_topic == topic:
                group.queue.put_nowait(Message(topic, data, id=message.id, delivery_count=1))

    def delay_scheduler(self, name: str, metadata: Metadata) -> DelayScheduler:
        return MemoryScheduler(self, name, metadata)

    def redeliver(self, group: _Group, message: Message) -> None:
        again = Message(message.topic, message.data, dict(message.metadata), message.id, message.delivery_count + 1)

        async def later() -> None:
            await asyncio.sleep(self.redeliver_interval)
            group.queue.put_nowait(again)

        task = asyncio.create_task(later())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def subscribe(self, topic: str, handler: Handler, metadata: Mapping[str, str]) -> _MemorySubscription:
        options = subscribe_options(metadata, self.metadata, self.context.app_id)
        key = (topic, options.consumer_id)
        group = self.groups.setdefault(key, _Group())
        group.members += 1
        subscription = _MemorySubscription(self, key, handler, options.max_concurrency)
        self._subscriptions.append(subscription)
        return subscription

    async def close(self) -> None:
        for subscription in self._subscriptions:
            await subscription.close()
        for task in list(self._timers):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._timers, return_exceptions=True)
