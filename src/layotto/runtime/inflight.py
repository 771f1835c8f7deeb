"""Calls in progress on each component, for hot reload: a component a reload replaces or
removes is closed only once the calls that reached it are over.

The block cores call components through `InFlight.track`'s proxy (runtime/cores.py), as they do
through the resiliency guard: each coroutine method, and each async generator method for as long
as its iteration lasts, counts as a call in progress; `isinstance` sees the component's class.
Only a sidecar that reloads components tracks them (`Runtime.swappable`), so the others call
their components directly.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from layotto.runtime.proxy import ComponentProxy

__all__ = ["InFlight"]

C = TypeVar("C")


class _Count:
    __slots__ = ("calls", "idle")

    def __init__(self) -> None:
        self.calls = 0
        self.idle: asyncio.Event | None = None

    def enter(self) -> None:
        self.calls += 1

    def leave(self) -> None:
        self.calls -= 1
        if self.calls == 0 and self.idle is not None:
            self.idle.set()


class _Tracked(ComponentProxy):
    """A component as the cores see it while it may be swapped: its coroutine and async
    generator methods count the calls in progress (the target may be the resiliency guard's
    proxy over the component)."""

    _tracked_count: _Count

    def __init__(self, target: object, count: _Count) -> None:
        super().__init__(target)
        object.__setattr__(self, "_tracked_count", count)

    def _around(self, name: str, value: Any) -> Any | None:
        count = object.__getattribute__(self, "_tracked_count")
        if inspect.iscoroutinefunction(value):
            return _counted(value, count)
        if inspect.isasyncgenfunction(value):
            return _counted_stream(value, count)
        return None

    def __repr__(self) -> str:
        return f"<{object.__getattribute__(self, '_proxied')!r}, tracked>"


def _counted(method: Callable[..., Awaitable[Any]], count: _Count) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        count.enter()
        try:
            return await method(*args, **kwargs)
        finally:
            count.leave()

    return call


def _counted_stream(method: Callable[..., AsyncIterator[Any]], count: _Count) -> Callable[..., AsyncIterator[Any]]:
    @functools.wraps(method)
    async def stream(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        count.enter()
        try:
            async for item in method(*args, **kwargs):
                yield item
        finally:
            count.leave()

    return stream


class InFlight:
    """One sidecar's count of calls in progress, per component object."""

    def __init__(self) -> None:
        #: id(component) -> (component, its proxy, its count); the component is kept so that
        #: its id is not reused while it is here.
        self._tracked: dict[int, tuple[object, _Tracked, _Count]] = {}

    def track(self, component: object, seen_as: C) -> C:
        """`seen_as` (the component, or the resiliency guard over it) behind the counting proxy
        of `component`, one proxy per component object."""
        found = self._tracked.get(id(component))
        if found is None or found[0] is not component:
            count = _Count()
            found = self._tracked[id(component)] = (component, _Tracked(seen_as, count), count)
        proxy: Any = found[1]
        return proxy  # type: ignore[no-any-return]

    def calls(self, component: object) -> int:
        """The calls in progress on `component` (0 for one never tracked)."""
        found = self._tracked.get(id(component))
        return found[2].calls if found is not None and found[0] is component else 0

    async def drained(self, components: list[object], grace: float) -> bool:
        """Wait until no call is in progress on any of `components`, at most `grace` seconds;
        then forget them. False when calls were still in progress at the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        done = True
        for component in components:
            found = self._tracked.pop(id(component), None)
            if found is None or found[0] is not component:
                continue
            count = found[2]
            if count.calls == 0:
                continue
            count.idle = asyncio.Event()
            try:
                await asyncio.wait_for(count.idle.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                done = False
        return done
