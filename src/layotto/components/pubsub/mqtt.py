"""MQTT pub/sub (`mqtt`) over MQTT 5 with aiomqtt.

- publish with `qos` (default 1) and `retain` (default false).
- a consumer group subscribes `$share/<consumerID>/<topic>`: the broker (Mosquitto and other
  MQTT 5 brokers) gives each message to one member of the group; each group gets every message.
- MQTT has no negative ack and the client acks QoS 1 messages on receipt, so a nacked message is
  retried here, with backoff, until the app takes it. Messages in flight in a sidecar that dies,
  and messages published while a group has no subscriber, are lost: use a broker with durable
  consumer groups (redis, nats, rabbitmq) when that matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Mapping
from urllib.parse import urlsplit

import aiomqtt

from layotto.components.base import ComponentContext, Metadata
from layotto.components.pubsub._consumer import InFlight, backoff_sleep, call_handler
from layotto.components.pubsub.base import Handler, Message, PubSub, subscribe_options
from layotto.errors import BackendUnavailableError

log = logging.getLogger("layotto.pubsub.mqtt")


class _SharedSubscription:
    def __init__(self, owner: MqttPubSub, topic: str, group: str, handler: Handler, limit: int) -> None:
        self.owner = owner
        self.topic = topic
        self.group = group
        self.handler = handler
        self.inflight = InFlight(limit)
        self.client: aiomqtt.Client | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.client = await self._connect()
        self.task = asyncio.create_task(self._loop(), name=f"mqtt-{self.topic}")

    async def _connect(self) -> aiomqtt.Client:
        client = self.owner.new_client(f"{self.group}-{uuid.uuid4().hex[:10]}")
        await client.__aenter__()
        try:
            await client.subscribe(f"$share/{self.group}/{self.topic}", qos=self.owner.qos)
        except BaseException:
            await client.__aexit__(None, None, None)
            raise
        return client

    async def _loop(self) -> None:
        failures = 0
        while True:
            try:
                if self.client is None:
                    self.client = await self._connect()
                    failures = 0
                async for incoming in self.client.messages:
                    await self.inflight.wait_free()
                    payload = incoming.payload
                    data = payload if isinstance(payload, bytes) else str(payload).encode()
                    message = Message(topic=self.topic, data=data, id=str(incoming.mid), delivery_count=1)
                    self.inflight.spawn(functools.partial(self._handle, message))
            except asyncio.CancelledError:
                raise
            except (aiomqtt.MqttError, OSError) as exc:
                log.warning("mqtt subscription to %s lost (%s); reconnecting", self.topic, exc)
                client, self.client = self.client, None
                if client is not None:
                    with contextlib.suppress(Exception):
                        await client.__aexit__(None, None, None)
                await backoff_sleep(failures)
                failures += 1

    async def _handle(self, message: Message) -> None:
        attempt = 0
        while not await call_handler(lambda: self.handler(message)):
            await backoff_sleep(attempt, base=self.owner.redeliver_interval, cap=10.0)
            attempt += 1
            message.delivery_count += 1

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.inflight.cancel()
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.__aexit__(None, None, None)
            self.client = None
        self.owner.subscriptions.discard(self)


class MqttPubSub(PubSub):
    def __init__(self) -> None:
        self.subscriptions: set[_SharedSubscription] = set()
        self._publisher: aiomqtt.Client | None = None
        self._lock = asyncio.Lock()

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self.metadata = metadata
        self.url = metadata.get_str("url", "tcp://127.0.0.1:1883")
        parts = urlsplit(self.url if "://" in self.url else f"tcp://{self.url}")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 1883
        self.username = parts.username
        self.password = parts.password
        self.qos = metadata.get_int("qos", 1)
        self.retain = metadata.get_bool("retain", False)
        self.redeliver_interval = metadata.get_duration("redeliverInterval", 0.2)
        self.client_prefix = metadata.get_str("consumerID") or context.app_id or "layotto"
        try:
            await self._publisher_client()
        except (aiomqtt.MqttError, OSError) as exc:
            raise BackendUnavailableError(f"mqtt broker at {self.host}:{self.port} is unavailable: {exc}") from exc

    def new_client(self, identifier: str) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            identifier=identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            timeout=10.0,
        )

    async def _publisher_client(self) -> aiomqtt.Client:
        async with self._lock:
            if self._publisher is None:
                client = self.new_client(f"{self.client_prefix}-pub-{uuid.uuid4().hex[:10]}")
                await client.__aenter__()
                self._publisher = client
            return self._publisher

    async def ping(self) -> None:
        try:
            await self._publisher_client()
        except (aiomqtt.MqttError, OSError) as exc:
            raise BackendUnavailableError(f"mqtt broker at {self.host}:{self.port} is unavailable: {exc}") from exc

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        for attempt in range(2):
            try:
                client = await self._publisher_client()
                await client.publish(topic, data, qos=self.qos, retain=self.retain)
                return
            except (aiomqtt.MqttError, OSError) as exc:
                # A dropped connection: reconnect once, then report the broker unavailable.
                async with self._lock:
                    stale, self._publisher = self._publisher, None
                if stale is not None:
                    with contextlib.suppress(Exception):
                        await stale.__aexit__(None, None, None)
                if attempt:
                    raise BackendUnavailableError(
                        f"mqtt broker at {self.host}:{self.port} is unavailable: {exc}"
                    ) from exc

    async def subscribe(self, topic: str, handler: Handler, metadata: Mapping[str, str]) -> _SharedSubscription:
        options = subscribe_options(metadata, self.metadata, self.context.app_id)
        subscription = _SharedSubscription(self, topic, options.consumer_id, handler, options.max_concurrency)
        try:
            await subscription.start()
        except (aiomqtt.MqttError, OSError) as exc:
            raise BackendUnavailableError(f"mqtt broker at {self.host}:{self.port} is unavailable: {exc}") from exc
        self.subscriptions.add(subscription)
        return subscription

    async def close(self) -> None:
        for subscription in list(self.subscriptions):
            await subscription.close()
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await self._publisher.__aexit__(None, None, None)
            self._publisher = None
