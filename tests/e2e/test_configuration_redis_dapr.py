"""Configuration written the way Dapr's docs show (`SET orderId1 "100||1"` in redis-cli), read
and watched through the Dapr gRPC API of a sidecar loaded from a Dapr component manifest
(`configuration.redis` with no `keyLayout`: Dapr's key layout is the default)."""

from __future__ import annotations

import asyncio
import textwrap
import uuid
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from layotto.config import dapr_yaml, layotto_json
from layotto.sidecar import Sidecar
from tests.support.services import require
from tests.support.sidecar import free_port, layotto_config

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    from dapr.proto.runtime.v1 import configuration_pb2 as dconfig
    from dapr.proto.runtime.v1 import dapr_pb2_grpc

STORE = "configstore"
WAIT = 5.0


def _manifest() -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata:
          name: {STORE}
        spec:
          type: configuration.redis
          version: v1
          metadata:
          - name: redisHost
            value: localhost:6379
        """
    )


@pytest.fixture
async def dapr(tmp_path: Path) -> AsyncIterator[Any]:
    """The Dapr gRPC stub of a sidecar whose only component comes from the manifest."""
    require("redis")
    (tmp_path / "components.yaml").write_text(_manifest())
    port = free_port()
    cfg = layotto_json.load_document(
        layotto_config({"app": {"app_id": f"dapr-config-{uuid.uuid4().hex[:8]}"}}, grpc_port=port), source="<test>"
    )
    dapr_yaml.load_into(cfg, str(tmp_path))
    sidecar = Sidecar(cfg)
    await sidecar.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield dapr_pb2_grpc.DaprStub(channel)  # type: ignore[no-untyped-call]
    finally:
        await sidecar.stop()


@pytest.fixture
async def redis_cli() -> AsyncIterator[aioredis.Redis]:
    """What a Dapr user types into redis-cli, as a plain client."""
    require("redis")
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def orders(redis_cli: aioredis.Redis) -> AsyncIterator[tuple[str, str]]:
    """Dapr's example keys, unique to the test, deleted after it."""
    run = uuid.uuid4().hex[:10]
    keys = (f"orderId1-{run}", f"orderId2-{run}")
    try:
        yield keys
    finally:
        await redis_cli.delete(*keys)


async def test_get_configuration_reads_what_dapr_users_write(
    dapr: Any, redis_cli: aioredis.Redis, orders: tuple[str, str]
) -> None:
    order1, order2 = orders
    await redis_cli.set(order1, "100||1")
    await redis_cli.set(order2, "200")
    reply = await dapr.GetConfiguration(dconfig.GetConfigurationRequest(store_name=STORE, keys=[order1, order2]))
    assert {k: (v.value, v.version) for k, v in reply.items.items()} == {order1: ("100", "1"), order2: ("200", "")}
    every = await dapr.GetConfiguration(dconfig.GetConfigurationRequest(store_name=STORE))
    assert (every.items[order1].value, every.items[order2].value) == ("100", "200")


async def test_subscribe_configuration_sees_a_plain_set_and_del(
    dapr: Any, redis_cli: aioredis.Redis, orders: tuple[str, str]
) -> None:
    order1, order2 = orders
    await redis_cli.set(order1, "100||1")
    call = dapr.SubscribeConfiguration(dconfig.SubscribeConfigurationRequest(store_name=STORE, keys=[order1, order2]))
    # The first message carries only the id, sent once the store watches the keys.
    first = await asyncio.wait_for(call.read(), WAIT)
    assert first.id and not first.items

    async def pushed() -> dict[str, tuple[str, str]]:
        reply = await asyncio.wait_for(call.read(), WAIT)
        assert reply is not grpc.aio.EOF, "stream ended"
        assert reply.id == first.id
        return {k: (v.value, v.version) for k, v in reply.items.items()}

    await redis_cli.set(order2, "200||7")
    assert await pushed() == {order2: ("200", "7")}
    await redis_cli.delete(order1)
    assert await pushed() == {order1: ("", "")}

    done = await dapr.UnsubscribeConfiguration(dconfig.UnsubscribeConfigurationRequest(store_name=STORE, id=first.id))
    assert done.ok
    assert await asyncio.wait_for(call.read(), WAIT) is grpc.aio.EOF
