"""The app's health as daprd's app health checks see it (`--enable-app-health-check`).

The sidecar probes the app every `interval` (an HTTP app: GET `path`, any 2xx is healthy; a gRPC
app: its callback API's health check). After `threshold` failed probes in a row the app is
unhealthy, and the services that push work to it (event delivery, input bindings) stop taking
work from their brokers until a probe succeeds again; the work waits in the broker meanwhile.
With health checks off (or no app), the app counts as healthy from the start.
"""

from __future__ import annotations

import asyncio
import logging
from abc import abstractmethod
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from layotto.config.model import AppHealthCheck
from layotto.runtime.appchannel import AppChannel

if TYPE_CHECKING:
    from layotto.observability.tracing.tracer import Tracer
    from layotto.runtime.runtime import Runtime

log = logging.getLogger("layotto.apphealth")

Listener = Callable[[bool], Awaitable[None]]
T = TypeVar("T")


class AppHealth:
    def __init__(self, channel: AppChannel | None, check: AppHealthCheck | None) -> None:
        self._channel = channel
        self._check = check if channel is not None else None
        self.healthy = self._check is None
        self._changed = asyncio.Condition()
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None

    def watch(self, listener: Listener) -> None:
        """Call `listener(healthy)` on every change, in the order of the changes."""
        self._listeners.append(listener)

    async def wait_for(self, healthy: bool = True) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.healthy is healthy)

    async def start(self) -> None:
        if self._check is not None:
            self._task = asyncio.create_task(self._probe_forever(self._check), name="app-health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _probe_forever(self, check: AppHealthCheck) -> None:
        assert self._channel is not None
        failures = 0
        while True:
            try:
                ok = await asyncio.wait_for(self._channel.healthy(check.path, check.timeout), check.timeout + 0.5)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an app that cannot answer is failing its probe
                log.debug("app health probe failed: %r", exc)
                ok = False
            failures = 0 if ok else failures + 1
            if ok and not self.healthy:
                await self._set(True)
            elif not ok and self.healthy and failures >= check.threshold:
                await self._set(False)
            await asyncio.sleep(check.interval)

    async def _set(self, healthy: bool) -> None:
        log.warning("the app is %s", "healthy again" if healthy else "unhealthy: no work is sent to it")
        self.healthy = healthy
        for listener in self._listeners:
            try:
                await listener(healthy)
            except Exception:
                log.exception("reacting to the app's health failed")
        # Waiters learn of the change once the listeners have acted on it.
        async with self._changed:
            self._changed.notify_all()


class AppWorkService:
    """The base of a service that pushes work to the app (pub/sub events, input binding events).

    Its one task waits for a healthy app, learns what the app wants (`_learn`) and opens it
    (`_open_all`); an unhealthy app's work is closed (`_close_all`) and opened again once the app
    is healthy, so the work waits in the broker meanwhile.
    """

    #: The name of the service's task.
    task_name = "app-work"

    def __init__(
        self, rt: Runtime, channel: AppChannel, tracer: Tracer | None = None, health: AppHealth | None = None
    ) -> None:
        self.rt = rt
        self.channel = channel
        self.tracer = tracer
        self.health = health or AppHealth(None, None)
        #: Set once the first work has been opened (or there is nothing to open).
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    async def _learn(self) -> None:
        """Find out what the app wants (asking it, retrying until it answers)."""

    @abstractmethod
    async def _open_all(self) -> None:
        """Open what the app wants."""

    @abstractmethod
    async def _close_all(self) -> None:
        """Close all that is open."""

    @abstractmethod
    def _is_open(self) -> bool:
        """Whether anything is open."""

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.task_name)

    async def _run(self) -> None:
        self.health.watch(self._on_app_health)
        await self.health.wait_for(healthy=True)
        await self._learn()
        await self._open_all()
        self.ready.set()
        if not self.health.healthy:  # it changed while the work was opening
            await self._close_all()

    async def _on_app_health(self, healthy: bool) -> None:
        if not self.ready.is_set():
            return  # the first opening waits for a healthy app by itself
        if not healthy:
            await self._close_all()
        elif not self._is_open():
            await self._open_all()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._close_all()


async def retrying(
    call: Callable[[], Awaitable[T]],
    describe: str,
    first: float,
    most: float,
    *,
    retry_on: tuple[type[Exception], ...] = (Exception,),
    level: int = logging.INFO,
    brief: Callable[[Exception], str] = repr,
) -> T:
    """`call`'s result once it succeeds, retrying what fails with `retry_on` after a delay that
    doubles from `first` seconds up to `most` (the app or a broker may not be up yet)."""
    delay = first
    while True:
        try:
            return await call()
        except asyncio.CancelledError:
            raise
        except retry_on as exc:
            log.log(level, "%s failed (%s); retrying in %.1fs", describe, brief(exc), delay)
            await asyncio.sleep(delay)
            delay = min(most, delay * 2)
