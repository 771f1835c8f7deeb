"""Bulk subscribe on any pub/sub component.

A component with PubSubFeature.BULK_SUBSCRIBE reads and acks its batches itself. For the others,
the messages their one-by-one subscription hands over are gathered into batches (as daprd's
defaultBulkSubscriber does): each message's handler call waits until its batch has been handled,
then answers that message's verdict, so the component acks or nacks it as it always does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from layotto.components.pubsub._consumer import Gathering, call_bulk_handler
from layotto.components.pubsub.base import (
    MAX_CONCURRENCY,
    BulkHandler,
    BulkOptions,
    Message,
    PubSub,
    PubSubFeature,
    Subscription,
    bulk_in_flight,
)


async def subscribe_bulk(
    component: PubSub,
    topic: str,
    handler: BulkHandler,
    metadata: Mapping[str, str],
    options: BulkOptions,
    *,
    max_concurrency: int,
) -> Subscription:
    """Subscribe `topic` with `handler` taking batches: natively when the component can, else
    through its one-by-one `subscribe`. `max_concurrency`: the subscription's setting (from its
    metadata and the component's), which bounds the messages in flight with `bulk_in_flight`."""
    if PubSubFeature.BULK_SUBSCRIBE in component.features:
        return await component.bulk_subscribe(topic, handler, metadata, options)
    batcher = Batcher(handler, options)
    # Room for a batch to fill while the previous one is with the handler.
    inner_metadata = {**metadata, MAX_CONCURRENCY: str(bulk_in_flight(options, max_concurrency))}
    inner = await component.subscribe(topic, batcher, inner_metadata)
    return _BatchedSubscription(inner, batcher)


class Batcher:
    """The one-by-one handler that gathers messages into batches for a bulk handler."""

    def __init__(self, handler: BulkHandler, options: BulkOptions) -> None:
        self.handler = handler
        self._gathering = Gathering[tuple[Message, asyncio.Future[bool]]](
            options.max_messages, options.max_await, self._send
        )
        self._batches: set[asyncio.Task[None]] = set()

    async def __call__(self, message: Message) -> bool:
        verdict: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._gathering.add((message, verdict))
        return await verdict

    def _send(self, batch: list[tuple[Message, asyncio.Future[bool]]]) -> None:
        task = asyncio.create_task(self._handle(batch), name="pubsub-bulk-batch")
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _handle(self, batch: list[tuple[Message, asyncio.Future[bool]]]) -> None:
        try:
            answer = await call_bulk_handler(self.handler, [message for message, _ in batch])
        except asyncio.CancelledError:
            for _, verdict in batch:
                verdict.cancel()
            raise
        for (_, verdict), ok in zip(batch, answer, strict=True):
            if not verdict.done():  # its waiter may be gone (the subscription is closing)
                verdict.set_result(ok)

    async def close(self) -> None:
        for _, verdict in self._gathering.take():
            verdict.cancel()
        batches = list(self._batches)
        for task in batches:
            task.cancel()
        await asyncio.gather(*batches, return_exceptions=True)


class _BatchedSubscription:
    def __init__(self, inner: Subscription, batcher: Batcher) -> None:
        self.inner = inner
        self.batcher = batcher

    async def close(self) -> None:
        # The component first: its handler calls end (nacked), and none starts after.
        await self.inner.close()
        await self.batcher.close()
