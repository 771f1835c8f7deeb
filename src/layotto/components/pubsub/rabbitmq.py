"""RabbitMQ pub/sub (`rabbitmq`), Dapr's layout: a fanout exchange per topic, a queue per
consumer group named `<consumerID>-<topic>` bound to it.

Sidecars of one group consume the same queue (work sharing); each group has its own queue
(every group gets every message). Messages are acked after the handler succeeded, nacked with
requeue otherwise (`requeueInFailure`); a dead connection returns its unacked messages to the
queue. Queues are durable and kept when unused by default so nothing published while a group
has no consumer is lost (Dapr's defaults, `durable: false` / `deleteWhenUnused: true`, can be
set in metadata). Publishing waits for the broker's confirm.
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
from layotto.components.pubsub._consumer import OpenSubscriptions, call_handler
from layotto.components.pubsub.base import Handler, Message, PubSub, subscribe_options
from layotto.errors import ComponentError

log = logging.getLogger("layotto.pubsub.rabbitmq")


class _QueueSubscription:
    def __init__(self, owner: RabbitMQPubSub, topic: str, channel: Any, queue: Any, handler: Handler) -> None:
        self.owner = owner
        self.topic = topic
        self.channel = channel
        self.queue = queue
        self.handler = handler
        self.tag: str | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.tag = await self.queue.consume(self._on_message, no_ack=False)

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        # Handle as a task so the channel's prefetch window, not this callback, bounds concurrency.
        task = asyncio.create_task(self._handle(incoming))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle(self, incoming: AbstractIncomingMessage) -> None:
        message = Message(
            topic=self.topic,
            data=incoming.body,
            metadata={k: str(v) for k, v in (incoming.headers or {}).items()},
            id=incoming.message_id or str(incoming.delivery_tag),
            delivery_count=2 if incoming.redelivered else 1,
        )
        ok = await call_handler(lambda: self.handler(message))
        try:
            if ok:
                await incoming.ack()
            else:
                await incoming.nack(requeue=self.owner.requeue)
        except Exception as exc:  # the channel died: the broker requeues the message itself
            log.warning("ack of a message on %s failed: %r", self.topic, exc)

    async def close(self) -> None:
        try:
            if self.tag is not None:
                await self.queue.cancel(self.tag)
        except Exception as exc:
            log.debug("cancel consumer on %s: %r", self.topic, exc)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        try:
            await self.channel.close()
        except Exception as exc:
            log.debug("close channel of %s: %r", self.topic, exc)
        self.owner.subscriptions.discard(self)


class RabbitMQPubSub(PubSub):
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

    async def subscribe(self, topic: str, handler: Handler, metadata: Mapping[str, str]) -> _QueueSubscription:
        options = subscribe_options(metadata, self.metadata, self.context.app_id)
        try:
            channel = await self.connection.channel()
            await channel.set_qos(prefetch_count=self.prefetch or options.max_concurrency)
            exchange = await channel.declare_exchange(
                topic, aio_pika.ExchangeType.FANOUT, durable=self.durable, auto_delete=self.delete_when_unused
            )
            queue = await channel.declare_queue(
                f"{options.consumer_id}-{topic}", durable=self.durable, auto_delete=self.delete_when_unused
            )
            await queue.bind(exchange)
        except rabbitmq.UNAVAILABLE as exc:
            raise rabbitmq.unavailable(self.url, exc) from exc
        subscription = _QueueSubscription(self, topic, channel, queue, handler)
        await subscription.start()
        return self.subscriptions.add(subscription)

    async def close(self) -> None:
        await self.subscriptions.close_all()
        try:
            await self.connection.close()
        except Exception as exc:
            log.debug("closing rabbitmq connection: %r", exc)
