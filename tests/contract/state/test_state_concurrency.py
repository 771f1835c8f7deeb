"""Many writers, one key: read-modify-write with etag retries loses no increment, on every backend."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from layotto.components.state.base import StateFeature
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb

from .backends import STORE
from .conftest import StateEnv

WRITERS = 8
INCREMENTS = 6


async def _increment(env: StateEnv, key: str) -> int:
    """Add one to the counter under `key`; returns how many etag conflicts it retried."""
    conflicts = 0
    while True:
        current = await env.stub.GetState(pb.GetStateRequest(store_name=STORE, key=key))
        value = int(current.data or b"0") + 1
        item = pb.StateItem(key=key, value=str(value).encode())
        if current.etag:
            item.etag.value = current.etag
        else:
            item.options.concurrency = pb.StateOptions.CONCURRENCY_FIRST_WRITE
        try:
            await env.stub.SaveState(pb.SaveStateRequest(store_name=STORE, states=[item]))
            return conflicts
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.ABORTED, exc.details()
            conflicts += 1


@pytest.mark.needs(StateFeature.ETAG)
async def test_concurrent_read_modify_write_loses_nothing(env: StateEnv) -> None:
    key = f"counter-{uuid.uuid4().hex}"

    async def writer() -> int:
        return sum([await _increment(env, key) for _ in range(INCREMENTS)])

    conflicts = sum(await asyncio.wait_for(asyncio.gather(*(writer() for _ in range(WRITERS))), timeout=60))
    final = await env.stub.GetState(pb.GetStateRequest(store_name=STORE, key=key))
    assert int(final.data) == WRITERS * INCREMENTS
    assert final.etag == str(WRITERS * INCREMENTS)
    # Not asserted (scheduling decides), but reported with -s: proof the retries were exercised.
    print(f"{env.backend.id}: {conflicts} etag conflicts retried")
