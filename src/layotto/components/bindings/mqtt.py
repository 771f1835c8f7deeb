"""Dapr's `bindings.mqtt3` (alias `mqtt`): publish to a topic, and read a topic as input.

Metadata (upstream's): `url` (`tcp://user:pass@host:1883`, required), `topic` (required),
`consumerID` (required: the client ids are `<consumerID>-consumer` and a producer's own),
`retain` (false), `cleanSession` (false), `backOffMaxRetries` (0). `qos` is ignored, as
upstream: QoS is 1. Beyond upstream: `backOffInterval` (5 s, upstream's fixed wait) and
`timeout` (5 s, one publish or connect).

- `create` publishes the data at QoS 1 to request metadata `topic`, else the component's.
- input: the consumer subscribes `topic` at QoS 1 on a persistent session (unless
  `cleanSession`) and acks (PUBACK) a message only once the app took it. A failed message is
  retried here `backOffMaxRetries` times (-1: until taken), `backOffInterval` apart; then it is
  left unacked, and the broker sends it again when the consumer reconnects with the same
  `consumerID` (a later reading, another sidecar, a restart). Messages arriving meanwhile wait:
  one message at a time, in order. The event's metadata is `topic`, the message's topic.
- a broker that holds unacked messages stops sending past its in-flight window (Mosquitto:
  20), so a backlog of failed messages pauses the input until they are taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiomqtt

from layotto.components.base import ComponentContext, Metadata
from layotto.components.bindings import base as binding
from layotto.components.pubsub.mqtt import MqttPubSub
from layotto.errors import BackendUnavailableError, ConfigError

log = logging.getLogger("layotto.bindings.mqtt")


class MqttBinding(binding.OutputBinding):
    metadata_keys = (
        "url",
        "topic",
        "consumerID",
        "qos",
        "cleanSession",
        "backOffMaxRetries",
        "backOffInterval",
        "retain",
        "redeliverInterval",
        "timeout",
    )
    features = frozenset({binding.BindingFeature.INPUT})

    def __init__(self) -> None:
        self._readings: set[binding.TaskReading] = set()
        #: Publishing is the MQTT pub/sub component's (one producer connection, redialled).
        self._producer = MqttPubSub()

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        for key, missing in (("url", "missing url"), ("topic", "missing topic"), ("consumerID", "missing consumerID")):
            if not metadata.get_str(key):
                raise ConfigError(missing, f"{metadata.where}.metadata.{key}")
        if metadata.get_str("qos"):
            log.warning("%s: metadata 'qos' is deprecated and ignored; qos is 1", metadata.where)
        self.topic = metadata.get_str("topic")
        self.consumer_id = metadata.get_str("consumerID")
        self.clean_session = metadata.get_bool("cleanSession", False)
        self.max_retries = metadata.get_int("backOffMaxRetries", 0)
        self.interval = metadata.get_duration("backOffInterval", 5.0)
        await self._producer.init(metadata.with_values({"qos": "1"}), context)

    def operations(self) -> list[str]:
        return [binding.CREATE]

    async def ping(self) -> None:
        await self._producer.ping()

    async def invoke(self, request: binding.InvokeRequest) -> binding.InvokeResponse:
        await self._producer.publish(request.metadata.get("topic") or self.topic, request.data, {})
        return binding.InvokeResponse()

    def _consumer(self) -> aiomqtt.Client:
        producer = self._producer
        client = aiomqtt.Client(
            producer.host,
            producer.port,
            username=producer.username,
            password=producer.password,
            identifier=f"{self.consumer_id}-consumer",
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=self.clean_session,
            timeout=producer.timeout,
        )
        client._client.manual_ack_set(True)  # PUBACK only once the app took the message
        return client

    async def _connected(self) -> aiomqtt.Client:
        client = self._consumer()
        await client.__aenter__()
        try:
            await client.subscribe(self.topic, qos=1)
        except BaseException:
            await _leave(client)
            raise
        return client

    async def read(self, handler: binding.Handler) -> binding.Reading:
        try:
            client = await self._connected()
        except (aiomqtt.MqttError, OSError) as exc:
            where = f"{self._producer.host}:{self._producer.port}"
            raise BackendUnavailableError(f"mqtt broker at {where} is unavailable: {exc}") from exc
        return binding.TaskReading(self._consume(client, handler), f"mqtt-{self.topic}", self._readings)

    async def _consume(self, client: aiomqtt.Client | None, handler: binding.Handler) -> None:
        failures = 0
        try:
            while True:
                try:
                    if client is None:
                        client = await self._connected()
                        failures = 0
                    async for message in client.messages:
                        payload = message.payload
                        data = payload if isinstance(payload, bytes) else str(payload).encode()
                        if await self._deliver(handler, binding.BindingEvent(data, {"topic": str(message.topic)})):
                            client._client.ack(message.mid, message.qos)
                except (aiomqtt.MqttError, OSError) as exc:
                    log.warning("mqtt binding %s lost its broker (%s); reconnecting", self.context.name, exc)
                    if client is not None:
                        await _leave(client)
                    client = None
                    await binding.pause(failures)
                    failures += 1
        finally:
            if client is not None:
                await _leave(client)

    async def _deliver(self, handler: binding.Handler, event: binding.BindingEvent) -> bool:
        attempt = 0
        while not await binding.handled(handler, event, f"mqtt binding {self.context.name}"):
            if 0 <= self.max_retries <= attempt:
                log.warning("mqtt binding %s: a message failed; left unacked", self.context.name)
                return False
            attempt += 1
            await asyncio.sleep(self.interval)
        return True

    async def close(self) -> None:
        await binding.close_readings(self._readings)
        await self._producer.close()


async def _leave(client: aiomqtt.Client) -> None:
    with contextlib.suppress(Exception):
        await client.__aexit__(None, None, None)
