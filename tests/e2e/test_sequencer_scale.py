"""Uniqueness at scale: 3 sidecar processes x 20 concurrent clients x 500 ids on one key.

No id is handed out twice, every client sees its ids strictly increase, and after one
sidecar is SIGKILLed and restarted the ids it hands out are above every earlier one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import pytest

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.contract.sequencer.backends import BY_TYPE, Row
from tests.contract.sequencer.backends import sequencer_config as make_config
from tests.support.sidecar import SidecarProcess

SIDECARS = 3
CLIENTS_PER_SIDECAR = 20
#: Ids per client: the issue's 500 on every backend (about 10 s each here).
#: LAYOTTO_SEQ_SCALE=quick runs 100 per client off redis, for a faster local loop.
_QUICK = os.environ.get("LAYOTTO_SEQ_SCALE", "") == "quick"
SCALE = {t: 100 if _QUICK and t != "redis" else 500 for t in ("redis", "postgresql", "etcd", "mysql", "zookeeper")}


@contextlib.asynccontextmanager
async def running(config: dict[str, Any], count: int) -> AsyncIterator[list[SidecarProcess]]:
    """Sidecar processes, started in parallel (each start waits for its gRPC port)."""
    procs = [SidecarProcess(config, actuator=False) for _ in range(count)]
    try:
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))
        yield procs
    finally:
        await asyncio.gather(*(asyncio.to_thread(p.terminate) for p in procs if p.proc is not None))


async def _client(stub: runtime_pb2_grpc.RuntimeStub, key: str, count: int, increment: int) -> list[int]:
    request = pb.GetNextIdRequest(store_name="seq", key=key)
    request.options.increment = increment  # type: ignore[assignment]
    return [int((await stub.GetNextId(request)).next_id) for _ in range(count)]


async def _draw(procs: Sequence[SidecarProcess], key: str, clients: int, count: int, increment: int) -> list[list[int]]:
    """`clients` concurrent clients on each sidecar; each client's ids in the order received."""
    channels = [grpc.aio.insecure_channel(p.address) for p in procs]
    try:
        stubs = [runtime_pb2_grpc.RuntimeStub(c) for c in channels]
        return list(await asyncio.gather(*(_client(s, key, count, increment) for s in stubs for _ in range(clients))))
    finally:
        for channel in channels:
            await channel.close()


def _check(sequences: list[list[int]]) -> list[int]:
    for seq in sequences:
        assert all(b > a for a, b in itertools.pairwise(seq)), "a client saw its ids go down"
    every = [i for seq in sequences for i in seq]
    assert len(every) == len(set(every)), f"{len(every) - len(set(every))} duplicate ids"
    return every


@pytest.mark.slow
@pytest.mark.parametrize("backend_type", list(SCALE))
async def test_ids_unique_across_sidecars_and_above_all_after_a_crash(backend_type: str) -> None:
    backend: Row = BY_TYPE[backend_type]
    backend.require()
    key = f"scale-{uuid.uuid4().hex}"
    # A small segment so the sidecars interleave many reservations on the one key.
    config = make_config(backend, extra_metadata={"segmentCacheEnable": "true", "segmentStep": 500})
    per_client = SCALE[backend_type]
    async with running(config, SIDECARS) as procs:
        weak = _check(await _draw(procs, key, CLIENTS_PER_SIDECAR, per_client, pb.SequencerOptions.WEAK))
        assert len(weak) == SIDECARS * CLIENTS_PER_SIDECAR * per_client
        strong = _check(await _draw(procs, key, 5, 20, pb.SequencerOptions.STRONG))
        assert not set(strong) & set(weak)
        before = max(weak + strong)

        procs[0].kill()
        await asyncio.to_thread(procs[0].start)
        # The restarted sidecar's cache is gone: its WEAK ids come from a fresh segment.
        after_weak = _check(await _draw(procs[:1], key, 5, 50, pb.SequencerOptions.WEAK))
        # STRONG ids from every sidecar are above everything handed out before.
        after_strong = _check(await _draw(procs, key, 2, 10, pb.SequencerOptions.STRONG))
        assert min(after_weak + after_strong) > before
