"""The pubsub backends the contract suites run over (tests/support/rows.BackendRow), with their
cleanup."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

from layotto.components.pubsub.base import PubSubFeature
from tests.support.rows import BackendRow, by_id


@dataclass(frozen=True)
class PubSubTraits:
    #: Messages published while no subscriber of the group runs are kept.
    durable: bool = True


#: `cleanup(topics, consumer groups)` removes what a test left on the broker.
Row = BackendRow[PubSubTraits]


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


ROWS: list[Row] = [
    BackendRow(
        block="pubsub",
        type="in-memory",
        features=frozenset({PubSubFeature.DELAY}),
        traits=PubSubTraits(durable=False),
    ),
    BackendRow(
        block="pubsub",
        type="redis",
        metadata={"redisHost": "127.0.0.1:6379", "processingTimeout": "1s", "redeliverInterval": "0.3s"},
        requires=("redis",),
        features=frozenset({PubSubFeature.DELAY}),
        traits=PubSubTraits(),
        cleanup=_redis_cleanup,
    ),
    BackendRow(
        block="pubsub",
        type="nats",
        metadata={"natsURL": "nats://127.0.0.1:4222", "ackWait": "1s"},
        requires=("nats",),
        traits=PubSubTraits(),
        cleanup=_nats_cleanup,
    ),
    BackendRow(
        block="pubsub",
        type="rabbitmq",
        metadata={"host": "amqp://guest:guest@127.0.0.1:5672/"},
        requires=("rabbitmq",),
        traits=PubSubTraits(),
        cleanup=_rabbit_cleanup,
    ),
    BackendRow(
        block="pubsub",
        type="mqtt",
        metadata={"url": "tcp://127.0.0.1:1883", "qos": "1"},
        requires=("mqtt",),
        traits=PubSubTraits(durable=False),
    ),
]

BY_NAME = by_id(ROWS)
DURABLE = [b for b in ROWS if b.traits.durable]
