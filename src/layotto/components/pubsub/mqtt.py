"""MQTT pub/sub (`mqtt`) over MQTT 5 with aiomqtt.

- publish with `qos` (default 1) and `retain` (default false).
- a consumer group subscribes `$share/<consumerID>/<topic>`: the broker (Mosquitto and other
  MQTT 5 brokers) gives each message to one member of the group; each group gets every message.
- MQTT has no negative ack and the client acks QoS 1 messages on receipt, so a nacked message is
  retried here, with backoff, until the app takes it. Messages in flight in a sidecar that dies,
  and messages published while a group has no subscriber, are lost: use a broker with durable
  consumer groups (redis, nats, rabbitmq) when that matters.
- `timeout` (default 5 s) bounds a publish, connecting included: a broker that takes the
  message and never acks it (hung, partitioned) fails the publish with UNAVAILABLE. That
  publish is not retried (the broker may have the message) and its connection is dropped;
  the next publish dials anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import uuid
from collections.abc import Mapping
from urllib.parse import urlsplit

import aiomqtt

from layotto.components.base import ComponentContext, Metadata
from layotto.components.pubsub._consumer import InFlight, OpenSubscriptions, backoff_sleep, call_handler
from layotto.components.pubsub.base import Handler, Message, PubSub, subscribe_options
from layotto.errors import BackendUnavailableError, ConfigError

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
    metadata_keys = ("url", "qos", "retain", "redeliverInterval", "timeout", "consumerID", "maxConcurrency")

    def __init__(self) -> None:
        self.subscriptions = OpenSubscriptions[_SharedSubscription]()
        self._publisher: aiomqtt.Client | None = None
        #: The one dial in progress for the publisher, shared by every publish waiting for it. It
        #: runs on when a publish gives up waiting, so that a broker back a moment later is ready.
        self._dialing: asyncio.Task[aiomqtt.Client] | None = None
        self.timeout = 5.0

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
        self.timeout = metadata.get_duration("timeout", 5.0)
        if self.timeout <= 0:
            raise ConfigError(f"'timeout' must be a positive duration, got {metadata['timeout']!r}", metadata.where)
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
            timeout=self.timeout,
        )

    async def _publisher_client(self) -> aiomqtt.Client:
        if self._publisher is not None:
            return self._publisher
        if self._dialing is None or self._dialing.done():
            self._dialing = asyncio.create_task(self._dial_publisher(), name="mqtt-publisher-dial")
            self._dialing.add_done_callback(_retrieve)
        # Shielded: a publish that gives up waiting leaves the dial running for the next one.
        return await asyncio.shield(self._dialing)

    async def _dial_publisher(self) -> aiomqtt.Client:
        client = self.new_client(f"{self.client_prefix}-pub-{uuid.uuid4().hex[:10]}")
        try:
            await client.__aenter__()  # bounded by the client's timeout (CONNACK)
        except BaseException:
            _drop(client)  # a CONNACK arriving later must not leave a connection nobody uses
            raise
        self._publisher = client
        return client

    def _discard_publisher(self, client: aiomqtt.Client) -> None:
        if self._publisher is client:
            self._publisher = None
        _drop(client)

    async def ping(self) -> None:
        try:
            await self._publisher_client()
        except (aiomqtt.MqttError, OSError) as exc:
            raise BackendUnavailableError(f"mqtt broker at {self.host}:{self.port} is unavailable: {exc}") from exc

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        where = f"mqtt broker at {self.host}:{self.port}"
        deadline = asyncio.get_running_loop().time() + self.timeout
        for attempt in range(2):
            client: aiomqtt.Client | None = None
            try:
                async with asyncio.timeout_at(deadline):
                    client = await self._publisher_client()
                    # The deadline above bounds the wait for the ack, dial included.
                    await client.publish(topic, data, qos=self.qos, retain=self.retain, timeout=math.inf)
                return
            except TimeoutError as exc:  # before OSError, of which it is one
                if client is not None:
                    # Sent, never acked: the broker may have it, so no retry; the connection is
                    # presumed dead and dropped, the next publish dials anew.
                    self._discard_publisher(client)
                raise BackendUnavailableError(f"{where} did not answer within {self.timeout:g}s") from exc
            except (aiomqtt.MqttError, OSError) as exc:
                # A dropped connection fails at once: dial again once, then report it.
                if client is not None:
                    self._discard_publisher(client)
                if attempt:
                    raise BackendUnavailableError(f"{where} is unavailable: {exc}") from exc

    async def subscribe(self, topic: str, handler: Handler, metadata: Mapping[str, str]) -> _SharedSubscription:
        options = subscribe_options(metadata, self.metadata, self.context.app_id)
        subscription = _SharedSubscription(self, topic, options.consumer_id, handler, options.max_concurrency)
        try:
            await subscription.start()
        except (aiomqtt.MqttError, OSError) as exc:
            raise BackendUnavailableError(f"mqtt broker at {self.host}:{self.port} is unavailable: {exc}") from exc
        return self.subscriptions.add(subscription)

    async def close(self) -> None:
        await self.subscriptions.close_all()
        if self._dialing is not None:
            self._dialing.cancel()
            await asyncio.gather(self._dialing, return_exceptions=True)
            self._dialing = None
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await self._publisher.__aexit__(None, None, None)
            self._publisher = None


def _drop(client: aiomqtt.Client) -> None:
    """Let go of a connection without waiting on the broker: paho sends DISCONNECT and closes
    the socket once it is written (aiomqtt's own exit waits for the broker's side)."""
    with contextlib.suppress(Exception):
        client._client.disconnect()


def _retrieve(task: asyncio.Task[aiomqtt.Client]) -> None:
    # A dial nobody awaited any more (its publishes gave up) must not log "never retrieved".
    if not task.cancelled():
        task.exception()
