"""The Python SDK's sidecar calls, which go to Dapr's API on the same port (the Layotto API has
no such RPCs): metadata, attributes, bulk publish and shutdown."""

from __future__ import annotations

import asyncio
import json
import uuid

import grpc
import pytest
from layotto_sdk import AsyncClient, BulkPublishFailure, Client, LayottoError

from tests.support.sidecar import running_sidecar

CONFIG = {
    "app": {"app_id": "sdk-sidecar"},
    "state": {"kv": {"type": "in-memory"}},
    "pub_subs": {"ps": {"type": "in-memory"}},
}


async def test_metadata_attributes_and_bulk_publish() -> None:
    topic = f"bulk-{uuid.uuid4().hex[:8]}"
    async with running_sidecar(CONFIG) as (_, address), AsyncClient(address) as client:
        before = await client.get_metadata()
        assert before.app_id == "sdk-sidecar" and before.runtime_version
        assert {(c.name, c.type) for c in before.components} >= {("kv", "state.in-memory"), ("ps", "pubsub.in-memory")}
        await client.set_metadata("team", "payments")
        assert (await client.get_metadata()).extended["team"] == "payments"

        async with client.subscribe("ps", topic) as events:
            failures = await client.publish_events("ps", topic, ["one", {"n": 2}, b"\x03"])
            assert failures == []
            received = [await asyncio.wait_for(anext(events), 10) for _ in range(3)]
            for event in received:
                await events.success(event)
        by_type = {e.data_content_type: e.data for e in received}
        assert by_type["text/plain"] == b"one" and by_type["application/octet-stream"] == b"\x03"
        assert json.loads(by_type["application/json"]) == {"n": 2}
        with pytest.raises(LayottoError) as unknown:
            await client.publish_events("nope", topic, ["x"])
        assert unknown.value.code == grpc.StatusCode.INVALID_ARGUMENT and "nope" in str(unknown.value)


async def test_a_bulk_entry_that_fails_is_reported() -> None:
    async with running_sidecar(CONFIG) as (_, address), AsyncClient(address) as client:
        bad = await client.publish_events("ps", "t", ["fine"], content_type="application/cloudevents+json")
        assert bad == [BulkPublishFailure("0", bad[0].error)] and "cloudevent" in bad[0].error


def test_shutdown_stops_the_sidecar() -> None:
    async def run() -> None:
        async with running_sidecar(CONFIG) as (sidecar, address):
            with Client(address) as client:
                await asyncio.to_thread(client.shutdown)
            await asyncio.wait_for(sidecar.wait(), 15)

    asyncio.run(run())
