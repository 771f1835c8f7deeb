"""The count of calls in progress on a component (runtime/inflight.py), which a reload waits on
before it closes a replaced component."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from layotto.components.state.base import StateStore
from layotto.components.state.memory import InMemoryStateStore
from layotto.runtime.inflight import InFlight


class Gated(InMemoryStateStore):
    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def wait(self) -> str:
        await self.gate.wait()
        return "done"

    async def chunks(self) -> AsyncIterator[bytes]:
        yield b"a"
        await self.gate.wait()
        yield b"b"


async def test_coroutines_and_streams_count_until_they_end_and_drained_waits_for_them() -> None:
    calls = InFlight()
    store = Gated()
    tracked = calls.track(store, store)
    assert isinstance(tracked, StateStore) and isinstance(tracked, Gated)
    assert tracked is calls.track(store, store)
    waiting = asyncio.ensure_future(tracked.wait())
    stream = tracked.chunks()
    assert await anext(stream) == b"a"
    await asyncio.sleep(0)  # the coroutine's first step
    assert calls.calls(store) == 2
    drained = asyncio.ensure_future(calls.drained([store], grace=10))
    await asyncio.sleep(0)
    assert not drained.done()
    store.gate.set()
    assert await waiting == "done"
    assert [chunk async for chunk in stream] == [b"b"]
    assert await drained is True
    assert calls.calls(store) == 0


async def test_drained_gives_up_at_the_grace_period() -> None:
    calls = InFlight()
    store = Gated()
    waiting = asyncio.ensure_future(calls.track(store, store).wait())
    await asyncio.sleep(0)
    assert await calls.drained([store], grace=0.01) is False
    store.gate.set()
    await waiting
