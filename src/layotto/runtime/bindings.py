"""Delivery of input bindings' events to the app, as daprd does it.

Once the components have started (and the app is healthy), the service takes the bindings
that can be inputs (`BindingFeature.INPUT`) and whose `direction` metadata, if any, includes
`input`, and finds those the app wants:

- a binding whose `direction` names `input` is read without asking the app;
- else a gRPC app is asked once (Dapr's `ListInputBindings`; Layotto's AppCallback has no input
  bindings, so a Layotto app gets none), an HTTP app per binding (`OPTIONS /<route>` answering
  2xx or 405; `route` metadata, default the binding's name). The app is asked again, with
  backoff, until it answers.

Each event goes to the app through the `AppChannel` (`OnBindingEvent`; an HTTP app: `POST
/<route>` with the data as body and the metadata as headers), bounded by the binding's
`appCallbackTimeout` metadata (60 s). The app's answer acks the event (success, a 2xx) or fails
it (a gRPC error, another status, a timeout, no answer), and the component acks or leaves it to
its backend accordingly. After a failure the binding's next answer waits a moment that grows
with consecutive failures (50 ms doubling, up to 5 s), so that a backend redelivering at once
does not spin.

A reply acts through the block cores the APIs use (`runtime/cores.py`), both parts at once and
each regardless of the other, awaited before the event is acked:
- its states (`storeName`, `state`) are saved to that store through the state core, with the
  app's key prefix, exactly as the app's own SaveState would save them (daprd saves the keys
  bare; here the app reads them back with GetState);
- its `data` is written to each output binding named in `to` (operation `create`) through the
  bindings core, one after the other (the first error stops them) or all at once with
  `concurrency: parallel`. A binding whose `direction` says only `input` is no output binding,
  here as for the APIs.
A failed save or write (an unknown store or binding included) is logged and does not fail the
event, as in daprd.

While the app is unhealthy (app health checks) the readings are closed; the backend keeps the
events meanwhile, and reading begins again once the app is healthy. Each delivery is counted
in `layotto_binding_events_total{binding,outcome}` (`delivered`, `failed`) and, with tracing
on, is a CONSUMER span `bindings/<name>` continuing the event's `traceparent` metadata.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from layotto.components.bindings.base import CREATE, Binding, BindingEvent, BindingFeature, InvokeRequest, Reading
from layotto.core.bindings import BindingsProblem
from layotto.core.problems import Checks
from layotto.core.state import StateProblem
from layotto.errors import BackendUnavailableError
from layotto.observability import tracing
from layotto.runtime.appchannel import AppChannel, BindingReply
from layotto.runtime.apphealth import AppHealth, AppWorkService, retrying
from layotto.runtime.cores import bindings_core, directions, state_core

if TYPE_CHECKING:
    from prometheus_client import Counter

    from layotto.observability.tracing.tracer import Tracer
    from layotto.runtime.runtime import Runtime, Service

log = logging.getLogger("layotto.bindings.input")

ROUTE = "route"
CALLBACK_TIMEOUT = "appCallbackTimeout"


@functools.cache
def _events_counter() -> Counter:
    """`layotto_binding_events_total{binding, outcome}`, once per process."""
    from layotto.observability import metrics

    return metrics.counter(
        "layotto_binding_events_total", "Input binding events delivered to the app by outcome", ["binding", "outcome"]
    )


def _meta(values: Mapping[str, object], key: str) -> str:
    return next((str(v) for k, v in values.items() if k.lower() == key.lower()), "")


@dataclass(frozen=True)
class InputSpec:
    """An input binding as the service reads it."""

    name: str
    component: Binding
    route: str
    #: `direction` names `input`: read without asking the app.
    explicit: bool
    timeout: float


class Forwarder:
    """Acts on an app's reply: saves its states (`store_name`) and writes its data to the
    output bindings it names (`to`), through the cores the APIs use."""

    def __init__(self, rt: Runtime) -> None:
        self.core = bindings_core(rt, Checks(list(BindingsProblem)))
        # The app's key prefix is deliberate (daprd saves the keys bare): the states are saved as
        # the app's own SaveState would save them, so that the app reads them back with GetState.
        self.state = state_core(rt, Checks(list(StateProblem)))

    async def __call__(self, source: str, reply: BindingReply) -> None:
        # Independent, as in daprd: a failed save does not stop the writes, nor the reverse.
        # Awaited (daprd saves in the background), so that stopping cannot lose a save.
        await asyncio.gather(self._save(source, reply), self._forward(source, reply))

    async def _save(self, source: str, reply: BindingReply) -> None:
        if not reply.states:
            return
        try:
            await self.state.save(reply.store_name, reply.states)
        except Exception as exc:  # the event was taken: a failed save is logged, as by daprd
            log.warning(
                "saving the state of the app's reply to store %r (from binding %s) failed: %s",
                reply.store_name,
                source,
                exc,
            )

    async def _forward(self, source: str, reply: BindingReply) -> None:
        if not reply.to:
            return
        if reply.parallel:
            await asyncio.gather(*(self._write(source, to, reply.data) for to in reply.to))
            return
        for to in reply.to:
            if not await self._write(source, to, reply.data):
                return

    async def _write(self, source: str, to: str, data: bytes) -> bool:
        try:
            await self.core.invoke(to, InvokeRequest(CREATE, data))
        except Exception as exc:  # the event was taken: a failed write is logged, as by daprd
            log.warning("writing the app's reply to binding %s (from %s) failed: %s", to, source, exc)
            return False
        return True


class BindingDispatcher:
    """The handler an input binding calls for each event: one delivery to the app."""

    #: The pause after a failure: doubled per consecutive failure, up to the cap.
    backoff_base = 0.05
    backoff_cap = 5.0

    def __init__(self, spec: InputSpec, channel: AppChannel, forward: Forwarder, tracer: Tracer | None) -> None:
        self.spec = spec
        self.channel = channel
        self.forward = forward
        self.tracer = tracer
        self.closed = False
        self.failures = 0
        self._outcomes = {outcome: _events_counter().labels(spec.name, outcome) for outcome in ("delivered", "failed")}

    async def __call__(self, event: BindingEvent) -> bool:
        if self.closed:
            return False
        reply = await self._traced(event)
        if reply is None:
            self._outcomes["failed"].inc()
            self.failures += 1
            await asyncio.sleep(min(self.backoff_cap, self.backoff_base * 2 ** min(self.failures - 1, 16)))
            return False
        self.failures = 0
        self._outcomes["delivered"].inc()
        await self.forward(self.spec.name, reply)
        return True

    async def _traced(self, event: BindingEvent) -> BindingReply | None:
        if self.tracer is None:
            return await self._deliver(event)
        parent = event.metadata.get(tracing.TRACEPARENT, "")
        context = ((tracing.TRACEPARENT, parent),) if parent else ()
        span = tracing.start_span(f"bindings/{self.spec.name}", context, time.time_ns())
        span.kind = "CONSUMER"
        token = tracing.CURRENT.set(span)  # the callback's traceparent names this span
        try:
            reply = await self._deliver(event)
        finally:
            tracing.CURRENT.reset(token)
            span.end_ns = time.time_ns()
        span.code = "OK" if reply is not None else "UNKNOWN"
        span.set_attribute("binding", self.spec.name)
        self.tracer.finish(span)
        return reply

    async def _deliver(self, event: BindingEvent) -> BindingReply | None:
        limit = self.spec.timeout
        try:
            async with asyncio.timeout(limit + 1.0):
                return await self.channel.deliver_binding(
                    self.spec.name, event.data, event.metadata, limit, route=self.spec.route
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the app failing in any way fails the event
            log.debug("the app failed an event of input binding %s: %r", self.spec.name, exc)
            return None


def _spec_metadata(rt: Runtime, name: str) -> Mapping[str, object]:
    spec = rt.spec("bindings", name)
    return spec.metadata if spec is not None else {}


def input_specs(rt: Runtime) -> dict[str, InputSpec]:
    """The configured bindings that may be inputs, by name."""
    found: dict[str, InputSpec] = {}
    for name, component in rt.components("bindings").items():
        metadata = _spec_metadata(rt, name)
        if not isinstance(component, Binding) or BindingFeature.INPUT not in component.features:
            continue
        said = directions(metadata)
        if said is not None and "input" not in said:
            continue
        raw = _meta(metadata, CALLBACK_TIMEOUT)
        try:
            timeout = float(raw or 60.0)
        except ValueError:
            log.warning("binding %s: %s=%r is not a number; using 60", name, CALLBACK_TIMEOUT, raw)
            timeout = 60.0
        route = _meta(metadata, ROUTE) or name
        found[name] = InputSpec(name, component, route, said is not None, timeout)
    return found


class InputBindingService(AppWorkService):
    """Reads the input bindings the app wants and delivers their events through the AppChannel."""

    task_name = "input-bindings"

    def __init__(
        self, rt: Runtime, channel: AppChannel, tracer: Tracer | None = None, health: AppHealth | None = None
    ) -> None:
        super().__init__(rt, channel, tracer, health)
        self.forward = Forwarder(rt)
        #: The input bindings the app takes events of, by name (kept while an unhealthy app's
        #: readings are closed).
        self.wanted: dict[str, InputSpec] = {}
        self.readings: dict[str, tuple[Reading, BindingDispatcher]] = {}

    async def _learn(self) -> None:
        inputs = input_specs(self.rt)
        asked = {name: spec.route for name, spec in inputs.items() if not spec.explicit}
        listed = await self._ask(asked) if asked else set()
        self.wanted = {name: spec for name, spec in inputs.items() if spec.explicit or name in listed}
        for name in inputs.keys() - self.wanted.keys():
            log.info("app has not subscribed to binding %s", name)

    async def _ask(self, routes: Mapping[str, str]) -> set[str]:
        return await retrying(
            lambda: self.channel.list_input_bindings(routes), "listing the app's input bindings", 0.1, 5.0
        )

    def _is_open(self) -> bool:
        return bool(self.readings)

    async def _open_all(self) -> None:
        for spec in self.wanted.values():
            await self._open(spec)

    async def _open(self, spec: InputSpec) -> None:
        dispatcher = BindingDispatcher(spec, self.channel, self.forward, self.tracer)
        try:
            reading = await retrying(
                lambda: spec.component.read(dispatcher),
                f"reading input binding {spec.name}",
                0.2,
                10.0,
                retry_on=(BackendUnavailableError,),
                level=logging.WARNING,
            )
        except Exception as exc:
            log.error("error reading from input binding %s: %s", spec.name, exc)
            return
        self.readings[spec.name] = (reading, dispatcher)
        log.info("reading input binding %s", spec.name)

    async def _close_all(self) -> None:
        readings, self.readings = self.readings, {}
        for name, (reading, dispatcher) in readings.items():
            dispatcher.closed = True
            try:
                await reading.close()
            except Exception:
                log.exception("closing input binding %s failed", name)


async def input_binding_services(
    rt: Runtime, channel: AppChannel | None = None, tracer: Tracer | None = None, health: AppHealth | None = None
) -> list[Service]:
    """A ServiceFactory (the sidecar binds `channel`, its channel to the app, `tracer`, its one
    tracer (None with tracing off), and `health`, the app's health)."""
    if channel is None or not input_specs(rt):
        return []
    return [InputBindingService(rt, channel, tracer, health)]
