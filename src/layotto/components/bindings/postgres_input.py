"""Input for Dapr's `bindings.postgresql` (upstream's is output only): LISTEN on a channel.

Metadata `channel` (a Layotto extension) names a PostgreSQL notification channel; without it
the binding is output only (no `BindingFeature.INPUT`). Reading holds a connection of its own
that LISTENs on the channel; each NOTIFY (`NOTIFY <channel>, '<payload>'`, or
`pg_notify('<channel>', payload)`, e.g. from a trigger) is an event whose data is the payload
and whose metadata is `channel` and `pid` (the notifying backend's process id).

PostgreSQL keeps no notification for a listener: one sent while no sidecar listens (or while
the connection is being re-established) is lost, and one the app fails cannot be delivered
again. Input here is at most once; use a queue (rabbitmq, a redis list or stream) when events
must not be lost. Notifications are delivered one at a time, in the order PostgreSQL sent them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg

from layotto.components._drivers import postgres
from layotto.components.base import ComponentContext, Metadata
from layotto.components.bindings import base as binding
from layotto.components.bindings.postgres import PostgresBinding
from layotto.errors import BackendUnavailableError

log = logging.getLogger("layotto.bindings.postgres")


class _Listener:
    """One LISTENing connection and the notifications it received, in order."""

    def __init__(self, conn: Any, channel: str) -> None:
        self.conn = conn
        self.channel = channel
        self.events: asyncio.Queue[binding.BindingEvent | None] = asyncio.Queue()
        conn.add_termination_listener(lambda _conn: self.events.put_nowait(None))

    def on_notify(self, _conn: Any, pid: int, channel: str, payload: str) -> None:
        self.events.put_nowait(binding.BindingEvent(payload.encode(), {"channel": channel, "pid": str(pid)}))

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.conn.close(), 2.0)
        except Exception:
            self.conn.terminate()


class PostgresInputBinding(PostgresBinding):
    metadata_keys = (*PostgresBinding.metadata_keys, "channel")
    features = frozenset({binding.BindingFeature.INPUT})

    def __init__(self) -> None:
        self._readings: set[binding.TaskReading] = set()

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self.channel = metadata.get_str("channel")
        if not self.channel:
            self.features = frozenset()

    async def _listen(self) -> _Listener:
        try:
            conn = await asyncpg.connect(**self.connect_args)
        except (*postgres.CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
            raise BackendUnavailableError(f"{self._describe} is unavailable: {exc}") from exc
        listener = _Listener(conn, self.channel)
        try:
            await conn.add_listener(self.channel, listener.on_notify)
        except BaseException:
            await listener.close()
            raise
        return listener

    async def read(self, handler: binding.Handler) -> binding.Reading:
        if binding.BindingFeature.INPUT not in self.features:
            return await super().read(handler)
        listener = await self._listen()
        return binding.TaskReading(self._deliver(listener, handler), f"postgres-listen-{self.channel}", self._readings)

    async def _deliver(self, listener: _Listener | None, handler: binding.Handler) -> None:
        where = f"postgresql binding {self.context.name}"
        failures = 0
        try:
            while True:
                if listener is None:
                    try:
                        listener = await self._listen()
                        failures = 0
                    except BackendUnavailableError as exc:
                        log.warning("%s: cannot LISTEN again (%s); retrying", where, exc)
                        await binding.pause(failures)
                        failures += 1
                        continue
                event = await listener.events.get()
                if event is None:  # the connection ended: listen anew
                    log.warning("%s: the listening connection was lost; notifications meanwhile are lost", where)
                    await listener.close()
                    listener = None
                    continue
                if not await binding.handled(handler, event, where):
                    log.warning("%s: the app failed a notification; PostgreSQL cannot deliver it again", where)
        finally:
            if listener is not None:
                await listener.close()

    async def close(self) -> None:
        await binding.close_readings(self._readings)
        await super().close()
