"""The pubsub backends the contract suites run over (tests/support/rows.BackendRow), with their
cleanup."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from layotto.components.pubsub.base import PubSubFeature
from tests.contract.pluggable_process import pubsub_registry
from tests.support.redis_cluster import cluster_metadata, sentinel_metadata
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


def _redis_cleanup_of(metadata: Callable[[], dict[str, str]]) -> Callable[[list[str], list[str]], Awaitable[None]]:
    """The cleanup of a redis row on a deployment of its own (a cluster: one key at a time)."""

    async def cleanup(topics: list[str], groups: list[str]) -> None:
        from layotto.components._drivers import redis as redis_driver
        from layotto.components.base import Metadata

        client = redis_driver.connect(redis_driver.RedisSettings.from_metadata(Metadata(metadata())))
        try:
            for topic in topics:
                await client.delete(topic)
        finally:
            await client.aclose()

    return cleanup


#: Fast redelivery, so the suites' redelivery tests do not wait.
_REDIS_TIMINGS = {"processingTimeout": "1s", "redeliverInterval": "0.3s"}


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
        features=frozenset({PubSubFeature.DELAY, PubSubFeature.BULK_SUBSCRIBE}),
        traits=PubSubTraits(),
        cleanup=_redis_cleanup,
    ),
    BackendRow(
        block="pubsub",
        type="redis",
        name="redis-on-cluster",
        metadata=lambda: {**cluster_metadata(), **_REDIS_TIMINGS},
        features=frozenset({PubSubFeature.DELAY, PubSubFeature.BULK_SUBSCRIBE}),
        traits=PubSubTraits(),
        cleanup=_redis_cleanup_of(cluster_metadata),
    ),
    BackendRow(
        block="pubsub",
        type="redis",
        name="redis-on-sentinel",
        metadata=lambda: {**sentinel_metadata(), **_REDIS_TIMINGS},
        features=frozenset({PubSubFeature.DELAY, PubSubFeature.BULK_SUBSCRIBE}),
        traits=PubSubTraits(),
        cleanup=_redis_cleanup_of(sentinel_metadata),
    ),
    BackendRow(
        block="pubsub",
        type="nats",
        metadata={"natsURL": "nats://127.0.0.1:4222", "ackWait": "1s"},
        requires=("nats",),
        features=frozenset({PubSubFeature.BULK_SUBSCRIBE}),
        traits=PubSubTraits(),
        cleanup=_nats_cleanup,
    ),
    BackendRow(
        block="pubsub",
        type="rabbitmq",
        metadata={"host": "amqp://guest:guest@127.0.0.1:5672/"},
        requires=("rabbitmq",),
        features=frozenset({PubSubFeature.BULK_SUBSCRIBE}),
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
    # A pluggable component (Dapr's protocol): the suites' own broker in a process of its own.
    BackendRow(
        block="pubsub",
        type="test-pluggable-pubsub",
        name="pluggable",
        traits=PubSubTraits(),
        registry=pubsub_registry,
    ),
]

BY_NAME = by_id(ROWS)
DURABLE = [b for b in ROWS if b.traits.durable]
