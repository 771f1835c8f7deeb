"""RabbitMQ pub/sub (`rabbitmq`), Dapr's layout: a fanout exchange per topic, a queue per
consumer group named `<consumerID>-<topic>` bound to it.

Sidecars of one group consume the same queue (work sharing); each group has its own queue
(every group gets every message). Messages are acked after the handler succeeded, nacked with
requeue otherwise (`requeueInFailure`); a dead connection returns its unacked messages to the
queue. Queues are durable and kept when unused by default so nothing published while a group
has no consumer is lost (Dapr's defaults, `durable: false` / `deleteWhenUnused: true`, can be
set in metadata). Publishing waits for the broker's confirm.

Bulk subscribe (PubSubFeature.BULK_SUBSCRIBE): the broker pushes up to the prefetch window
(`prefetchCount`, else two batches' worth); messages are gathered into batches (full, or the
window after the first one passed), and a batch's acks go as one `basic.ack(multiple)` up to
the highest delivery tag below which every delivery of the channel is acked (a multiple ack
settles all of them, so none that is still undecided, or to be nacked, may be behind it);
nacks go one by one, with requeue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage, AbstractRobustConnection
from aio_pika.exceptions import AMQPError

from layotto.components._drivers import rabbitmq
from layotto.components.base import ComponentContext, Metadata
from layotto.components.pubsub import base as pubsub
from layotto.components.pubsub._consumer import (
    Consumer,
    Gathering,
    OpenSubscriptions,
    call_bulk_handler,
    call_handler,
)
from layotto.errors import ComponentError

log = logging.getLogger("layotto.pubsub.rabbitmq")


class _AckWindow:
    """The unsettled deliveries of one AMQP channel, in delivery-tag order (the order the broker
    delivers them in), each marked once its handler acked it."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.open: dict[int, tuple[AbstractIncomingMessage, bool]] = {}
        # Multiple acks must reach the broker in tag order: one covering a tag already acked
        # alone, or acked twice, is a channel error.
        self.lock = asyncio.Lock()

    def delivered(self, incoming: AbstractIncomingMessage) -> None:
        self.open[_tag(incoming)] = (incoming, False)

    def mark(self, incoming: AbstractIncomingMessage) -> None:
        if _tag(incoming) in self.open:
            self.open[_tag(incoming)] = (incoming, True)

    def forget(self, incoming: AbstractIncomingMessage) -> None:
        self.open.pop(_tag(incoming), None)

    def front(self) -> AbstractIncomingMessage | None:
        """Takes the acked deliveries at the front; the last of them, which one multiple ack
        settles them all by, or None."""
        last = None
        taken = []
        for tag, (incoming, acked) in self.open.items():
            if not acked:
                break
            taken.append(tag)
            last = incoming
        for tag in taken:
            del self.open[tag]
        return last

    async def settle_front(self, topic: str) -> None:
        async with self.lock:
            last = self.front()
            if last is not None:
                try:
                    await last.ack(multiple=True)
                except Exception as exc:  # the channel died: the broker requeues the messages
                    log.warning("ack of messages on %s failed: %r", topic, exc)


def _tag(incoming: AbstractIncomingMessage) -> int:
    return incoming.delivery_tag or 0


class _QueueSubscription(Consumer["RabbitMQPubSub", tuple[pubsub.BulkHandler, pubsub.BulkOptions]]):
    """One consumer of the group's queue; `handler` takes each message, or `bulk` batches."""

    def __init__(
        self,
        owner: RabbitMQPubSub,
        topic: str,
        channel: Any,
        queue: Any,
        handler: pubsub.Handler | None,
        bulk: tuple[pubsub.BulkHandler, pubsub.BulkOptions] | None = None,
    ) -> None:
        super().__init__(owner, topic, handler, bulk)
        self.channel = channel
        self.queue = queue
        self.tag: str | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self._window: _AckWindow | None = None
        if bulk is not None:
            self._gathering = Gathering[tuple[AbstractIncomingMessage, _AckWindow]](
                bulk[1].max_messages, bulk[1].max_await, self._send_batch
            )

    async def start(self) -> None:
        consume = self._on_message if self.bulk is None else self._on_bulk_message
        self.tag = await self.queue.consume(consume, no_ack=False)

    def _task(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        # Handle as a task so the channel's prefetch window, not this callback, bounds concurrency.
        self._task(self._handle(incoming))

    def _message(self, incoming: AbstractIncomingMessage) -> pubsub.Message:
        return pubsub.Message(
            topic=self.topic,
            data=incoming.body,
            metadata={k: str(v) for k, v in (incoming.headers or {}).items()},
            id=incoming.message_id or str(incoming.delivery_tag),
            delivery_count=2 if incoming.redelivered else 1,
        )

    async def _handle(self, incoming: AbstractIncomingMessage) -> None:
        assert self.handler is not None
        handler = self.handler
        message = self._message(incoming)
        ok = await call_handler(lambda: handler(message))
        try:
            if ok:
                await incoming.ack()
            else:
                await incoming.nack(requeue=self.owner.requeue)
        except Exception as exc:  # the channel died: the broker requeues the message itself
            log.warning("ack of a message on %s failed: %r", self.topic, exc)

    async def _on_bulk_message(self, incoming: AbstractIncomingMessage) -> None:
        if self._window is None or self._window.channel is not incoming.channel:
            # A new channel (the connection came back): its tags start again; the old one's
            # unsettled deliveries went back to the queue with it.
            self._window = _AckWindow(incoming.channel)
        self._window.delivered(incoming)
        self._gathering.add((incoming, self._window))

    def _send_batch(self, batch: list[tuple[AbstractIncomingMessage, _AckWindow]]) -> None:
        self._task(self._handle_batch(batch))

    async def _handle_batch(self, batch: list[tuple[AbstractIncomingMessage, _AckWindow]]) -> None:
        assert self.bulk is not None
        verdicts = await call_bulk_handler(self.bulk[0], [self._message(incoming) for incoming, _ in batch])
        windows: dict[int, _AckWindow] = {}
        for (incoming, window), ok in zip(batch, verdicts, strict=True):
            windows[id(window)] = window
            if ok:
                window.mark(incoming)
                continue
            try:
                await incoming.nack(requeue=self.owner.requeue)
            except Exception as exc:  # the channel died: the broker requeues the message itself
                log.warning("nack of a message on %s failed: %r", self.topic, exc)
            window.forget(incoming)  # only once sent: no multiple ack may cover it before
        for window in windows.values():
            await window.settle_front(self.topic)

    async def _stop(self) -> None:
        try:
            if self.tag is not None:
                await self.queue.cancel(self.tag)
        except Exception as exc:
            log.debug("cancel consumer on %s: %r", self.topic, exc)
        if self.bulk is not None:
            self._gathering.take()  # not handled: requeued when the channel closes
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self._ack_held()
        try:
            await self.channel.close()
        except Exception as exc:
            log.debug("close channel of %s: %r", self.topic, exc)

    async def _ack_held(self) -> None:
        """Acks deliveries acked by their handler but held behind an unsettled one, one by one,
        so that they do not come again once the channel closes."""
        window = self._window
        if window is None:
            return
        async with window.lock:
            for incoming, acked in list(window.open.values()):
                if acked:
                    try:
                        await incoming.ack()
                    except Exception as exc:
                        log.debug("ack of a message on %s failed: %r", self.topic, exc)
                        return
            window.open.clear()


class RabbitMQPubSub(pubsub.PubSub):
    metadata_keys = (
        "host",
        "durable",
        "deleteWhenUnused",
        "deliveryMode",
        "prefetchCount",
        "requeueInFailure",
        "dialTimeout",
        "reconnectWait",
        "consumerID",
        "maxConcurrency",
    )
    features = frozenset({pubsub.PubSubFeature.BULK_SUBSCRIBE})
    connection: AbstractRobustConnection

    def __init__(self) -> None:
        self.subscriptions = OpenSubscriptions[_QueueSubscription]()
        self._exchanges: dict[str, AbstractExchange] = {}
        self._publish_channel: Any = None
        self._lock = asyncio.Lock()

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self.metadata = metadata
        self.url = metadata.get_str("host", "amqp://guest:guest@127.0.0.1:5672/")
        self.durable = metadata.get_bool("durable", True)
        self.delete_when_unused = metadata.get_bool("deleteWhenUnused", False)
        self.delivery_mode = metadata.get_int("deliveryMode", 2)
        self.prefetch = metadata.get_int("prefetchCount", 0)
        self.requeue = metadata.get_bool("requeueInFailure", True)
        # aio_pika waits 5 s between attempts; a broker back is noticed within this.
        self.connection = await rabbitmq.connect(
            self.url, metadata.get_duration("dialTimeout", 5.0), metadata.get_duration("reconnectWait", 1.0)
        )

    def _check_connected(self) -> None:
        rabbitmq.check_connected(self.connection, self.url)

    async def ping(self) -> None:
        self._check_connected()

    async def _exchange(self, topic: str) -> AbstractExchange:
        exchange = self._exchanges.get(topic)
        if exchange is not None:
            return exchange
        async with self._lock:
            if self._publish_channel is None or self._publish_channel.is_closed:
                self._publish_channel = await self.connection.channel(publisher_confirms=True)
                self._exchanges.clear()
            declared: AbstractExchange = await self._publish_channel.declare_exchange(
                topic, aio_pika.ExchangeType.FANOUT, durable=self.durable, auto_delete=self.delete_when_unused
            )
            self._exchanges[topic] = declared
            return declared

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        mode = aio_pika.DeliveryMode.PERSISTENT if self.delivery_mode == 2 else aio_pika.DeliveryMode.NOT_PERSISTENT
        self._check_connected()
        try:
            exchange = await self._exchange(topic)
            await exchange.publish(aio_pika.Message(body=data, delivery_mode=mode), routing_key="", timeout=10.0)
        except rabbitmq.UNAVAILABLE as exc:
            self._exchanges.pop(topic, None)
            raise rabbitmq.unavailable(self.url, exc) from exc
        except AMQPError as exc:
            self._exchanges.pop(topic, None)
            raise ComponentError(f"rabbitmq refused the message: {exc!r}") from exc

    async def subscribe(self, topic: str, handler: pubsub.Handler, metadata: Mapping[str, str]) -> _QueueSubscription:
        options = pubsub.subscribe_options(metadata, self.metadata, self.context.app_id)
        channel, queue = await self._queue(topic, options.consumer_id, self.prefetch or options.max_concurrency)
        subscription = _QueueSubscription(self, topic, channel, queue, handler)
        await subscription.start()
        return self.subscriptions.add(subscription)

    async def bulk_subscribe(
        self, topic: str, handler: pubsub.BulkHandler, metadata: Mapping[str, str], options: pubsub.BulkOptions
    ) -> _QueueSubscription:
        settings = pubsub.subscribe_options(metadata, self.metadata, self.context.app_id)
        prefetch = self.prefetch or pubsub.bulk_in_flight(options, settings.max_concurrency)
        channel, queue = await self._queue(topic, settings.consumer_id, prefetch)
        subscription = _QueueSubscription(self, topic, channel, queue, None, (handler, options))
        await subscription.start()
        return self.subscriptions.add(subscription)

    async def _queue(self, topic: str, group: str, prefetch: int) -> tuple[Any, Any]:
        try:
            channel = await self.connection.channel()
            await channel.set_qos(prefetch_count=prefetch)
            exchange = await channel.declare_exchange(
                topic, aio_pika.ExchangeType.FANOUT, durable=self.durable, auto_delete=self.delete_when_unused
            )
            queue = await channel.declare_queue(
                f"{group}-{topic}", durable=self.durable, auto_delete=self.delete_when_unused
            )
            await queue.bind(exchange)
        except rabbitmq.UNAVAILABLE as exc:
            raise rabbitmq.unavailable(self.url, exc) from exc
        return channel, queue

    async def close(self) -> None:
        await self.subscriptions.close_all()
        try:
            await self.connection.close()
        except Exception as exc:
            log.debug("closing rabbitmq connection: %r", exc)
