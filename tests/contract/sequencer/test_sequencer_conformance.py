"""One suite for every sequencer: each backend is a row in backends.ROWS, not new test code.

Everything goes through the gRPC server with raw stubs, as an app would call it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from layotto.components.sequencer.base import SequencerFeature
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.contract.sequencer.backends import ROWS, Row, sequencer_config
from tests.support.rows import params
from tests.support.sidecar import running_sidecar

WEAK = pb.SequencerOptions.WEAK
STRONG = pb.SequencerOptions.STRONG
#: Counters per key (SequencerFeature.SEGMENT): keys start at 1, STRONG ids are consecutive.
COUNTERS = [b for b in ROWS if SequencerFeature.SEGMENT in b.features]
SHARED_COUNTERS = [b for b in COUNTERS if b.traits.distributed]


def new_key() -> str:
    return f"k-{uuid.uuid4().hex}"


@contextlib.asynccontextmanager
async def stub_for(grpc_config: dict[str, Any]) -> AsyncIterator[runtime_pb2_grpc.RuntimeStub]:
    async with running_sidecar(grpc_config) as (_, address), grpc.aio.insecure_channel(address) as channel:
        yield runtime_pb2_grpc.RuntimeStub(channel)


async def next_id(
    stub: runtime_pb2_grpc.RuntimeStub, key: str, increment: int | None = None, store: str = "seq"
) -> int:
    request = pb.GetNextIdRequest(store_name=store, key=key)
    if increment is not None:
        request.options.increment = increment  # type: ignore[assignment]
    reply = await stub.GetNextId(request)
    return int(reply.next_id)


async def rpc_error(stub: runtime_pb2_grpc.RuntimeStub, request: pb.GetNextIdRequest) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetNextId(request)
    return info.value.code(), info.value.details() or ""


@pytest.mark.parametrize("backend", params(ROWS))
@pytest.mark.parametrize("increment", [None, WEAK, STRONG], ids=["default", "weak", "strong"])
async def test_ids_are_unique_and_increasing(backend: Row, increment: int | None) -> None:
    backend.require()
    async with stub_for(sequencer_config(backend)) as stub:
        key = new_key()
        ids = [await next_id(stub, key, increment) for _ in range(25)]
        assert all(b > a for a, b in itertools.pairwise(ids)), ids
        assert ids[0] > 0
        # Concurrent callers on one key still get distinct ids.
        burst = await asyncio.gather(*(next_id(stub, key, increment) for _ in range(50)))
        assert len(set(burst)) == 50 and min(burst) > ids[-1]


@pytest.mark.parametrize("backend", params(COUNTERS))
async def test_keys_are_independent_and_strong_ids_are_consecutive(backend: Row) -> None:
    backend.require()
    async with stub_for(sequencer_config(backend)) as stub:
        first, second = new_key(), new_key()
        assert [await next_id(stub, first, STRONG) for _ in range(5)] == [1, 2, 3, 4, 5]
        assert [await next_id(stub, second, STRONG) for _ in range(3)] == [1, 2, 3]
        assert await next_id(stub, first, STRONG) == 6


@pytest.mark.parametrize("backend", params(COUNTERS))
@pytest.mark.parametrize("cache", [True, False], ids=["cache-on", "cache-off"])
async def test_segment_cache_serves_weak_ids_and_strong_always_hits_the_backend(backend: Row, cache: bool) -> None:
    backend.require()
    step = 50
    config = sequencer_config(backend, extra_metadata={"segmentCacheEnable": str(cache).lower(), "segmentStep": step})
    key = new_key()
    async with stub_for(config) as stub:
        weak = [await next_id(stub, key, WEAK) for _ in range(10)]
        assert weak == list(range(1, 11))
        strong = await next_id(stub, key, STRONG)
        if cache:
            # The first WEAK call reserved 1..50 at once: STRONG goes to the backend, past it.
            assert strong == step + 1
        else:
            assert strong == 11
        last = await next_id(stub, key, WEAK)
        # WEAK never goes below an id this sidecar already issued.
        assert last == (12 if not cache else last) and last > strong
    if not backend.traits.persistent:
        return
    async with stub_for(config) as stub:
        # A restarted sidecar skips what the old one had cached, never repeats it.
        assert await next_id(stub, key, WEAK) > last


@pytest.mark.parametrize("backend", params(COUNTERS))
async def test_segment_cache_crosses_segments_without_gaps_inside_one_sidecar(backend: Row) -> None:
    backend.require()
    config = sequencer_config(backend, extra_metadata={"segmentCacheEnable": "true", "segmentStep": 20})
    async with stub_for(config) as stub:
        key = new_key()
        ids = [await next_id(stub, key, WEAK) for _ in range(95)]
        # One sidecar alone: the prefetched segments follow each other exactly.
        assert ids == list(range(1, 96))


@pytest.mark.parametrize("backend", params(ROWS))
async def test_bigger_than_applies_at_init(backend: Row) -> None:
    backend.require()
    weak_key, strong_key = new_key(), new_key()
    config = sequencer_config(backend, bigger_than={weak_key: 1000, strong_key: 5000})
    async with stub_for(config) as stub:
        assert await next_id(stub, weak_key, WEAK) > 1000
        first_strong = await next_id(stub, strong_key, STRONG)
        assert first_strong > 5000
        if SequencerFeature.SEGMENT in backend.features:
            assert first_strong == 5001
    if not backend.traits.persistent:
        return
    # A second start with a lower floor never lowers the counter.
    config = sequencer_config(backend, bigger_than={strong_key: 10})
    async with stub_for(config) as stub:
        assert await next_id(stub, strong_key, STRONG) > first_strong


@pytest.mark.parametrize("backend", params(SHARED_COUNTERS))
async def test_key_prefix_strategies(backend: Row) -> None:
    backend.require()
    key = new_key()
    apps = ("app-a", "app-b")
    # Default strategy (appid): two apps sharing a backend have separate counters.
    async with (
        stub_for(sequencer_config(backend, app_id=apps[0])) as a,
        stub_for(sequencer_config(backend, app_id=apps[1])) as b,
    ):
        assert [await next_id(a, key, STRONG), await next_id(b, key, STRONG)] == [1, 1]
    # Strategy none: the key is shared by every app.
    shared = new_key()
    none = {"keyPrefix": "none"}
    async with (
        stub_for(sequencer_config(backend, app_id=apps[0], extra_metadata=none)) as a,
        stub_for(sequencer_config(backend, app_id=apps[1], extra_metadata=none)) as b,
    ):
        ids = [await next_id(a, shared, STRONG), await next_id(b, shared, STRONG), await next_id(a, shared, STRONG)]
        assert ids == [1, 2, 3]


@pytest.mark.parametrize("backend", params(ROWS))
async def test_validation_errors_in_upstream_order(backend: Row) -> None:
    backend.require()
    async with stub_for(sequencer_config(backend, name="seq")) as stub:

        def req(store: str = "seq", key: str = "k", increment: int | None = None) -> pb.GetNextIdRequest:
            r = pb.GetNextIdRequest(store_name=store, key=key)
            if increment is not None:
                r.options.increment = increment  # type: ignore[assignment]
            return r

        cases = [
            (req(key=""), grpc.StatusCode.INVALID_ARGUMENT, "Key is empty in sequencer store seq"),
            (req(store="nope", key=""), grpc.StatusCode.INVALID_ARGUMENT, "Key is empty in sequencer store nope"),
            (req(increment=7), grpc.StatusCode.UNKNOWN, "Options.Increment is illegal."),
            (req(key="a||b", increment=7), grpc.StatusCode.UNKNOWN, "Options.Increment is illegal."),
            (req(key="a||b"), grpc.StatusCode.UNKNOWN, "input key/keyPrefix 'a||b' can't contain '||'"),
            (
                req(store="nope", key="a||b"),
                grpc.StatusCode.UNKNOWN,
                "input key/keyPrefix 'a||b' can't contain '||'",
            ),
            (req(store="nope"), grpc.StatusCode.INVALID_ARGUMENT, "Sequencer store nope not found"),
        ]
        for request, code, message in cases:
            assert await rpc_error(stub, request) == (code, message), request
        # A rejected request changes nothing: the key still starts where it would have.
        if SequencerFeature.SEGMENT in backend.features:
            assert await next_id(stub, new_key(), STRONG) == 1


async def test_no_sequencer_configured() -> None:
    async with stub_for({"app": {"app_id": "x"}}) as stub:
        code, message = await rpc_error(stub, pb.GetNextIdRequest(store_name="seq", key=""))
        assert (code, message) == (grpc.StatusCode.FAILED_PRECONDITION, "Sequencer store is not configured")
