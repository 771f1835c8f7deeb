"""The bindings under test, one row each (tests/support/rows.BackendRow): `ROWS`, the output
bindings (what each one can do is its list of `operations()`), and `INPUT_ROWS`, the bindings
driven as inputs (`BindingFeature.INPUT`), each with the metadata that makes it one."""

from __future__ import annotations

import base64
import enum
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiomqtt
import asyncpg
import redis.asyncio as aioredis

from layotto.components.bindings.base import BindingFeature, InvokeRequest, InvokeResponse, OutputBinding
from tests.support.redis_cluster import (
    cluster_metadata,
    dead_cluster_metadata,
    dead_sentinel_metadata,
    sentinel_metadata,
)
from tests.support.rows import BackendRow
from tests.support.services import POSTGRES_DSN
from tests.support.sidecar import free_port

#: One table for the postgres row, created and dropped by this module.
PG_TABLE = f"layotto_test_binding_{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class BindingTraits:
    """How to write, read and delete one record with the binding's own operations."""

    #: Metadata pointing at nothing (a closed port).
    dead_metadata: Callable[[], dict[str, Any]]
    write: Callable[[str, bytes], InvokeRequest]
    read: Callable[[str], InvokeRequest]
    delete: Callable[[str], InvokeRequest]
    #: The record's bytes from a read reply; b"" when there is no record.
    value: Callable[[InvokeResponse], bytes] = lambda reply: reply.data


#: A row's metadata is a function of the test HTTP server's base URL.
Row = BackendRow[BindingTraits]


def _pg_value(reply: InvokeResponse) -> bytes:
    rows = json.loads(reply.data)
    return base64.b64decode(rows[0][0]) if rows else b""


ROWS: list[Row] = [
    BackendRow(
        block="bindings",
        type="http",
        metadata=lambda base: {"url": f"{base}/kv"},
        traits=BindingTraits(
            dead_metadata=lambda: {"url": f"http://127.0.0.1:{free_port()}/kv"},
            write=lambda k, v: InvokeRequest("create", v, {"path": k}),
            read=lambda k: InvokeRequest("get", b"", {"path": k}),
            delete=lambda k: InvokeRequest("delete", b"", {"path": k}),
        ),
    ),
    BackendRow(
        block="bindings",
        type="redis",
        metadata=lambda base: {"redisHost": "127.0.0.1:6379", "maxRetries": "0"},
        requires=("redis",),
        traits=BindingTraits(
            dead_metadata=lambda: {"redisHost": f"127.0.0.1:{free_port()}", "maxRetries": "0", "dialTimeout": "1s"},
            write=lambda k, v: InvokeRequest("create", v, {"key": f"layotto-test-binding-{k}"}),
            read=lambda k: InvokeRequest("get", b"", {"key": f"layotto-test-binding-{k}"}),
            delete=lambda k: InvokeRequest("delete", b"", {"key": f"layotto-test-binding-{k}"}),
        ),
    ),
    BackendRow(
        block="bindings",
        type="redis",
        name="redis-on-cluster",
        metadata=lambda base: {**cluster_metadata(), "maxRetries": "0"},
        traits=BindingTraits(
            dead_metadata=dead_cluster_metadata,
            write=lambda k, v: InvokeRequest("create", v, {"key": f"layotto-test-binding-{k}"}),
            read=lambda k: InvokeRequest("get", b"", {"key": f"layotto-test-binding-{k}"}),
            delete=lambda k: InvokeRequest("delete", b"", {"key": f"layotto-test-binding-{k}"}),
        ),
    ),
    BackendRow(
        block="bindings",
        type="redis",
        name="redis-on-sentinel",
        metadata=lambda base: {**sentinel_metadata(), "maxRetries": "0"},
        traits=BindingTraits(
            dead_metadata=dead_sentinel_metadata,
            write=lambda k, v: InvokeRequest("create", v, {"key": f"layotto-test-binding-{k}"}),
            read=lambda k: InvokeRequest("get", b"", {"key": f"layotto-test-binding-{k}"}),
            delete=lambda k: InvokeRequest("delete", b"", {"key": f"layotto-test-binding-{k}"}),
        ),
    ),
    BackendRow(
        block="bindings",
        type="postgresql",
        metadata=lambda base: {"url": POSTGRES_DSN},
        requires=("postgresql",),
        traits=BindingTraits(
            dead_metadata=lambda: {
                "url": f"postgresql://postgres@127.0.0.1:{free_port()}/test",
                "connectTimeout": "1s",
            },
            write=lambda k, v: InvokeRequest(
                "exec",
                b"",
                {
                    "sql": f"INSERT INTO {PG_TABLE} (k, v) VALUES ($1, $2)"
                    " ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
                    "params": json.dumps([k, base64.b64encode(v).decode()]),
                },
            ),
            read=lambda k: InvokeRequest(
                "query", b"", {"sql": f"SELECT v FROM {PG_TABLE} WHERE k = $1", "params": json.dumps([k])}
            ),
            delete=lambda k: InvokeRequest(
                "exec", b"", {"sql": f"DELETE FROM {PG_TABLE} WHERE k = $1", "params": json.dumps([k])}
            ),
            value=_pg_value,
        ),
    ),
]


# ---- input bindings ----


class Redelivery(enum.Enum):
    """What the backend does with an event the app failed."""

    #: The reading gets it again (AMQP requeue, a list entry put back, a stream entry reclaimed).
    SAME_READING = "same reading"
    #: It stays unacked and comes to the next reading of the same consumer (MQTT session).
    NEXT_READING = "next reading"
    #: It is gone (a cron tick, a PostgreSQL notification).
    NONE = "none"


@dataclass(frozen=True)
class InputTraits:
    """How to make the backend produce an event, and what it does with a failed one."""

    #: Puts one event with `data` in the backend: (component, its metadata, data). None: the
    #: binding makes its events itself (cron).
    send: Callable[[OutputBinding, dict[str, Any], bytes], Awaitable[None]] | None
    redelivery: Redelivery
    #: The metadata every event of the backend carries (keys).
    metadata_keys: frozenset[str] = frozenset()


#: An input row's metadata is a function of a tag unique to the test (queue, key, topic names).
InputRow = BackendRow[InputTraits]

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


async def _invoke_create(component: OutputBinding, metadata: dict[str, Any], data: bytes) -> None:
    await component.invoke(InvokeRequest("create", data))


async def _lpush(component: OutputBinding, metadata: dict[str, Any], data: bytes) -> None:
    async with aioredis.Redis(host="127.0.0.1", port=6379) as client:
        await client.lpush(metadata["listKey"], data)


async def _xadd(component: OutputBinding, metadata: dict[str, Any], data: bytes) -> None:
    async with aioredis.Redis(host="127.0.0.1", port=6379) as client:
        await client.xadd(metadata["streamKey"], {"data": data, "origin": "contract"})


async def _notify(component: OutputBinding, metadata: dict[str, Any], data: bytes) -> None:
    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        await conn.execute("SELECT pg_notify($1, $2)", metadata["channel"], data.decode())
    finally:
        await conn.close()


async def _drop_redis_keys(metadata: dict[str, Any]) -> None:
    async with aioredis.Redis(host="127.0.0.1", port=6379) as client:
        key = metadata.get("listKey") or metadata["streamKey"]
        await client.delete(key, f"{key}:processing:{metadata['consumerID']}")


async def _drop_queue(metadata: dict[str, Any]) -> None:
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(metadata["queueName"])


async def _end_mqtt_session(metadata: dict[str, Any]) -> None:
    # A clean session of the same client id ends the persistent one the test left on the broker.
    client = aiomqtt.Client("127.0.0.1", 1883, identifier=f"{metadata['consumerID']}-consumer", clean_session=True)
    async with client:
        pass


_INPUT = frozenset({BindingFeature.INPUT})

INPUT_ROWS: list[InputRow] = [
    BackendRow(
        block="bindings",
        type="cron",
        metadata=lambda tag: {"schedule": "@every 1s"},
        features=_INPUT,
        traits=InputTraits(send=None, redelivery=Redelivery.NONE, metadata_keys=frozenset({"timeZone", "readTimeUTC"})),
    ),
    BackendRow(
        block="bindings",
        type="rabbitmq",
        metadata=lambda tag: {"host": RABBITMQ_URL, "queueName": f"layotto-test-input-{tag}"},
        requires=("rabbitmq",),
        features=_INPUT,
        cleanup=_drop_queue,
        traits=InputTraits(send=_invoke_create, redelivery=Redelivery.SAME_READING),
    ),
    BackendRow(
        block="bindings",
        type="mqtt3",
        metadata=lambda tag: {
            "url": "tcp://127.0.0.1:1883",
            "topic": f"layotto/test/input/{tag}",
            "consumerID": f"layotto-test-{tag}",
        },
        requires=("mqtt",),
        features=_INPUT,
        cleanup=_end_mqtt_session,
        traits=InputTraits(send=_invoke_create, redelivery=Redelivery.NEXT_READING, metadata_keys=frozenset({"topic"})),
    ),
    BackendRow(
        block="bindings",
        type="redis",
        name="redis-list",
        metadata=lambda tag: {
            "redisHost": "127.0.0.1:6379",
            "listKey": f"layotto-test-input-{tag}",
            "consumerID": "contract",
        },
        requires=("redis",),
        features=_INPUT,
        cleanup=_drop_redis_keys,
        traits=InputTraits(send=_lpush, redelivery=Redelivery.SAME_READING, metadata_keys=frozenset({"key"})),
    ),
    BackendRow(
        block="bindings",
        type="redis",
        name="redis-stream",
        metadata=lambda tag: {
            "redisHost": "127.0.0.1:6379",
            "streamKey": f"layotto-test-input-{tag}",
            "consumerID": "contract",
            "processingTimeout": "100ms",
            "redeliverInterval": "100ms",
        },
        requires=("redis",),
        features=_INPUT,
        cleanup=_drop_redis_keys,
        traits=InputTraits(send=_xadd, redelivery=Redelivery.SAME_READING, metadata_keys=frozenset({"id", "origin"})),
    ),
    BackendRow(
        block="bindings",
        type="postgresql",
        metadata=lambda tag: {"url": POSTGRES_DSN, "channel": f"layotto_test_{tag}"},
        requires=("postgresql",),
        features=_INPUT,
        traits=InputTraits(send=_notify, redelivery=Redelivery.NONE, metadata_keys=frozenset({"channel", "pid"})),
    ),
]
