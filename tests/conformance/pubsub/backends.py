"""The table of pubsub backends the conformance suite runs over, with their cleanup."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.services import require


@dataclass
class Backend:
    name: str
    type: str
    metadata: dict[str, str]
    service: str | None = None
    #: Messages published while no subscriber of the group runs are kept.
    durable: bool = True
    cleanup: Callable[[list[str], list[str]], Awaitable[None]] | None = field(default=None, repr=False)

    def component(self, **extra: str) -> dict[str, Any]:
        return {"type": self.type, "metadata": {**self.metadata, **extra}}

    def require(self) -> None:
        if self.service:
            require(self.service)


async def _redis_cleanup(topics: list[str], groups: list[str]) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis(host="127.0.0.1", port=6379)
    try:
        if topics:
            await client.delete(*topics)
    finally:
        await client.aclose()


def nats_stream_name(topic: str) -> str:
    return "layotto-" + re.sub(r"[^A-Za-z0-9_-]", "_", topic)


async def _nats_cleanup(topics: list[str], groups: list[str]) -> None:
    import nats

    nc = await nats.connect("nats://127.0.0.1:4222")
    try:
        js = nc.jetstream()
        for topic in topics:
            with contextlib.suppress(Exception):
                await js.delete_stream(nats_stream_name(topic))
    finally:
        await nc.close()


async def _rabbit_cleanup(topics: list[str], groups: list[str]) -> None:
    import aio_pika

    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    try:
        for topic in topics:
            channel = await connection.channel()
            try:
                for queue in (f"{group}-{topic}" for group in groups):
                    with contextlib.suppress(Exception):
                        await channel.queue_delete(queue)
                with contextlib.suppress(Exception):
                    await channel.exchange_delete(topic)
            finally:
                with contextlib.suppress(Exception):
                    await channel.close()
    finally:
        await connection.close()


BACKENDS = [
    Backend("in-memory", "in-memory", {}, durable=False),
    Backend(
        "redis",
        "redis",
        {"redisHost": "127.0.0.1:6379", "processingTimeout": "1s", "redeliverInterval": "0.3s"},
        service="redis",
        cleanup=_redis_cleanup,
    ),
    Backend(
        "nats",
        "nats",
        {"natsURL": "nats://127.0.0.1:4222", "ackWait": "1s"},
        service="nats",
        cleanup=_nats_cleanup,
    ),
    Backend(
        "rabbitmq",
        "rabbitmq",
        {"host": "amqp://guest:guest@127.0.0.1:5672/"},
        service="rabbitmq",
        cleanup=_rabbit_cleanup,
    ),
    Backend("mqtt", "mqtt", {"url": "tcp://127.0.0.1:1883", "qos": "1"}, service="mqtt", durable=False),
]

BY_NAME = {b.name: b for b in BACKENDS}
DURABLE = [b for b in BACKENDS if b.durable]
