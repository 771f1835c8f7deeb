"""What a binding is: a named backend the app calls with an operation, data and metadata
(an output binding), and/or one whose events the sidecar delivers to the app (an input binding).

Input (`BindingFeature.INPUT`): `read(handler)` starts reading the backend's events and calls
`handler(event)` for each; the handler returns True when the app took the event (the component
acks it: removes it from the backend) and False when it failed (raising counts as False): the
component leaves the event to be delivered again where its backend can (AMQP requeue, a stream
entry left pending, a list entry put back, an MQTT QoS 1 message not acked). A component calls
the handler for one event at a time, in the backend's order, unless its doc says otherwise.
`read` returns once reading has begun; the returned `Reading`'s `close()` stops it, and events
not yet acked stay with the backend. `close()` of the component closes its readings.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from layotto.components.base import Component, Feature, unsupported

log = logging.getLogger("layotto.bindings")

# Dapr's common operation names (bindings.OperationKind).
CREATE = "create"
GET = "get"
DELETE = "delete"
LIST = "list"


@dataclass
class InvokeRequest:
    operation: str
    data: bytes = b""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class InvokeResponse:
    data: bytes = b""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class BindingEvent:
    """One event read from an input binding's backend."""

    data: bytes = b""
    #: What the backend tells about the event (headers, topic, ...), sent to the app with it.
    metadata: dict[str, str] = field(default_factory=dict)


#: True = done (ack), False = failed (deliver again where the backend can). Raising = False.
Handler = Callable[[BindingEvent], Awaitable[bool]]


class Reading(Protocol):
    """A running `read`: `close()` stops reading (once; must not raise)."""

    async def close(self) -> None: ...


class BindingFeature(Feature):
    #: An input binding: `read(handler)` delivers the backend's events (see the module doc).
    INPUT = enum.auto()


class Binding(Component):
    """Base of every binding component. An output binding is an `OutputBinding`; an input
    binding declares `BindingFeature.INPUT` and overrides `read`. A component whose metadata
    configures no input (e.g. redis without `listKey`/`streamKey`) drops the feature in `init`."""

    features: frozenset[BindingFeature] = frozenset()

    async def read(self, handler: Handler) -> Reading:
        """Start delivering events to `handler`; returns once reading has begun."""
        raise unsupported(self, BindingFeature.INPUT, "reading input events")


class OutputBinding(Binding):
    """An output binding. `invoke` is only called with an operation listed by `operations()`;
    the API layer checks this first, as upstream does, so components need not."""

    @abstractmethod
    def operations(self) -> list[str]:
        """The operations this binding supports, in a stable order (shown in error messages)."""

    @abstractmethod
    async def invoke(self, request: InvokeRequest) -> InvokeResponse:
        """Run one operation. Raise InvalidArgumentError for a bad request,
        BackendUnavailableError when the backend cannot be reached, ComponentError otherwise."""


def string_metadata(metadata: Mapping[str, object]) -> dict[str, str]:
    """Reply metadata is map<string,string> on the wire."""
    return {str(k): str(v) for k, v in metadata.items()}


async def handled(handler: Handler, event: BindingEvent, where: str) -> bool:
    """The handler's verdict on `event`; a handler that raises failed it."""
    try:
        return bool(await handler(event))
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("the handler of %s raised; the event counts as failed", where)
        return False


async def pause(attempt: int, base: float = 0.2, cap: float = 5.0) -> None:
    """Wait before reconnecting or retrying: `base` doubled per `attempt`, at most `cap`."""
    await asyncio.sleep(min(cap, base * 2 ** min(attempt, 16)))


class TaskReading:
    """A `Reading` that is one task (a read loop): `close()` cancels it, then runs `cleanup`.
    It belongs to `readings`, its component's open readings, until it is closed."""

    def __init__(
        self,
        loop: Awaitable[None],
        name: str,
        readings: set[TaskReading],
        cleanup: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        coroutine = loop if asyncio.iscoroutine(loop) else _awaited(loop)
        self.task = asyncio.create_task(coroutine, name=name)
        self._readings = readings
        self._cleanup = cleanup
        readings.add(self)

    async def close(self) -> None:
        if self not in self._readings:
            return
        self._readings.discard(self)
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        if self._cleanup is not None:
            try:
                await self._cleanup()
            except Exception as exc:  # closing must not raise
                log.debug("closing %s: %r", self.task.get_name(), exc)


async def _awaited(loop: Awaitable[None]) -> None:
    await loop


async def close_readings(readings: set[TaskReading]) -> None:
    """Close a component's open readings (its `close()`)."""
    for reading in list(readings):
        await reading.close()
