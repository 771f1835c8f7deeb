"""Dapr's `bindings.rabbitmq`: one queue, written by `create` and read as input.

Metadata (upstream's): `host` (AMQP URL, required), `queueName` (required), `durable`,
`deleteWhenUnused`, `exclusive` (all false), `prefetchCount` (0: no limit), `maxPriority`
(makes a priority queue), `ttlInSeconds` (the queue's message TTL), `reconnectWaitInSeconds`
(5 s; a Go duration or seconds). The queue is declared at init with these settings.

- `create` publishes the data to the queue (default exchange, routing key = queue name) as a
  persistent message, waiting for the broker's confirm; request metadata `contentType`
  (default `text/plain`), `ttlInSeconds` (the message's expiry) and `priority`; every request
  metadata entry is also a message header.
- input: messages are consumed one at a time, in queue order; acked once the app took one,
  nacked with requeue when it failed, so the broker delivers it again. Messages not acked when
  the reading stops or the connection drops go back to the queue. The event's metadata is the
  message's string headers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aio_pika.exceptions import AMQPError

from layotto.components._drivers import rabbitmq
from layotto.components.base import ComponentContext, Metadata
from layotto.components.bindings import base as binding
from layotto.errors import ComponentError, ConfigError, InvalidArgumentError

log = logging.getLogger("layotto.bindings.rabbitmq")


def _seconds(metadata: dict[str, str], key: str) -> int | None:
    raw = metadata.get(key, "")
    if raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidArgumentError(f"value must be a valid integer: actual is '{raw}'") from None


class RabbitMQBinding(binding.OutputBinding):
    metadata_keys = (
        "host",
        "queueName",
        "prefetchCount",
        "durable",
        "deleteWhenUnused",
        "exclusive",
        "ttlInSeconds",
        "maxPriority",
        "dialTimeout",
        "reconnectWaitInSeconds",
    )
    features = frozenset({binding.BindingFeature.INPUT})
    connection: AbstractRobustConnection

    def __init__(self) -> None:
        self._readings: set[binding.TaskReading] = set()
        self._publisher: Any = None
        self._lock = asyncio.Lock()

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self.url = metadata.get_str("host")
        if not self.url:
            raise ConfigError("missing host address", f"{metadata.where}.metadata.host")
        self.queue_name = metadata.get_str("queueName")
        if not self.queue_name:
            raise ConfigError("missing queue Name", f"{metadata.where}.metadata.queueName")
        self.prefetch = metadata.get_int("prefetchCount", 0)
        self.queue_options: dict[str, Any] = {
            "durable": metadata.get_bool("durable", False),
            "auto_delete": metadata.get_bool("deleteWhenUnused", False),
            "exclusive": metadata.get_bool("exclusive", False),
        }
        arguments: dict[str, Any] = {}
        if metadata.get_str("ttlInSeconds"):
            arguments["x-message-ttl"] = metadata.get_int("ttlInSeconds") * 1000
        if metadata.get_str("maxPriority"):
            arguments["x-max-priority"] = min(255, metadata.get_int("maxPriority"))
        self.queue_options["arguments"] = arguments
        self.connection = await rabbitmq.connect(
            self.url,
            metadata.get_duration("dialTimeout", 5.0),
            metadata.get_duration("reconnectWaitInSeconds", 5.0),
        )
        try:
            channel = await self._publish_channel()
            await channel.declare_queue(self.queue_name, **self.queue_options)
        except Exception as exc:
            await self.connection.close()
            raise ComponentError(f"rabbitmq: cannot declare queue {self.queue_name}: {exc!r}") from exc

    def operations(self) -> list[str]:
        return [binding.CREATE]

    async def ping(self) -> None:
        rabbitmq.check_connected(self.connection, self.url)

    async def _publish_channel(self) -> Any:
        async with self._lock:
            if self._publisher is None or self._publisher.is_closed:
                self._publisher = await self.connection.channel(publisher_confirms=True)
            return self._publisher

    async def invoke(self, request: binding.InvokeRequest) -> binding.InvokeResponse:
        metadata = request.metadata
        ttl = _seconds(metadata, "ttlInSeconds")
        priority = _seconds(metadata, "priority")
        message = aio_pika.Message(
            body=request.data,
            content_type=metadata.get("contentType") or "text/plain",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers=dict(metadata),
            expiration=ttl if ttl is not None and ttl > 0 else None,
            priority=priority,
        )
        try:
            channel = await self._publish_channel()
            await channel.default_exchange.publish(message, routing_key=self.queue_name, timeout=10.0)
        except rabbitmq.UNAVAILABLE as exc:
            raise rabbitmq.unavailable(self.url, exc) from exc
        except AMQPError as exc:
            raise ComponentError(f"failed to publish message: {exc!r}") from exc
        return binding.InvokeResponse()

    async def read(self, handler: binding.Handler) -> binding.Reading:
        try:
            channel = await self.connection.channel()
            await channel.set_qos(prefetch_count=self.prefetch)
            queue = await channel.declare_queue(self.queue_name, **self.queue_options)
        except rabbitmq.UNAVAILABLE as exc:
            raise rabbitmq.unavailable(self.url, exc) from exc
        one_at_a_time = asyncio.Lock()
        where = f"rabbitmq binding {self.context.name}"
        handling: set[asyncio.Task[Any]] = set()

        async def on_message(incoming: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            if task is not None:
                handling.add(task)
                task.add_done_callback(handling.discard)
            async with one_at_a_time:  # the lock's waiters are served in delivery order
                headers = {str(k): v for k, v in (incoming.headers or {}).items() if isinstance(v, str)}
                ok = await binding.handled(handler, binding.BindingEvent(incoming.body, headers), where)
                try:
                    await (incoming.ack() if ok else incoming.nack(requeue=True))
                except Exception as exc:  # the channel died: the broker requeues the message itself
                    log.warning("%s: settling a message failed: %r", where, exc)

        tag = await queue.consume(on_message, no_ack=False)

        async def stop() -> None:
            try:
                await queue.cancel(tag)
            finally:
                # Unsettled messages go back to the queue with the channel.
                for task in list(handling):
                    task.cancel()
                await asyncio.gather(*handling, return_exceptions=True)
                await channel.close()

        # The broker pushes messages to `on_message`: the reading's task only waits to be closed.
        idle: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        return binding.TaskReading(idle, f"rabbitmq-{self.queue_name}", self._readings, stop)

    async def close(self) -> None:
        await binding.close_readings(self._readings)
        try:
            await self.connection.close()
        except Exception as exc:
            log.debug("closing rabbitmq connection: %r", exc)
