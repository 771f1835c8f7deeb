"""Delivery of subscribed events to the app.

The app is reached through the runtime's shared `AppChannel` (runtime/appchannel.py). At
start the service asks the app for its subscriptions, retrying with backoff until the app is up
(the sidecar serves meanwhile), adds the declared ones (Dapr `Subscription` resources) on topics
the app does not subscribe to itself, subscribes each one on its component, and hands every
message to a `Dispatcher` that applies the outcome rules:

- SUCCESS acks; DROP acks, logs and counts (and, with a dead-letter topic, publishes the
  event there first, as daprd does); an expired event is dropped the same way.
- RETRY, a callback error, a timeout or an unknown status: retried here with backoff a few
  times, then nacked so the backend redelivers it later (possibly to another sidecar).
- gRPC UNIMPLEMENTED (an HTTP app: 404) from the app is dropped like DROP, but never
  dead-lettered (upstream, daprd).
- With a dead-letter topic, an event that failed `maxDeliveryAttempts` times (1 by default,
  as daprd moves it after its first failed delivery) is published there (same component) and
  acked.
- With a resiliency `inbound` policy for the component (runtime/resiliency.py), the policy
  makes the retries here instead (its timeout per try, its breaker), as daprd's does; once it
  gives up, the event is dead-lettered or nacked as above.

With tracing on, each callback is a CONSUMER span continuing the envelope's `traceparent`,
and the app gets that span as its parent in the callback's `traceparent` header.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from layotto.components.pubsub.base import Message, PubSub, Subscription, subscribe_options
from layotto.core.cloudevents import RAW_PAYLOAD, Event, decode, is_truthy
from layotto.observability import tracing
from layotto.runtime.appchannel import AppChannel, Status
from layotto.runtime.apphealth import AppHealth, AppWorkService, retrying
from layotto.runtime.resiliency import Outcomes, Policy
from layotto.runtime.subscriptions import TopicSubscription, declared, merged

if TYPE_CHECKING:
    from prometheus_client import Counter

    from layotto.observability.tracing.tracer import Tracer
    from layotto.runtime.runtime import Runtime, Service

log = logging.getLogger("layotto.pubsub.delivery")


@functools.cache
def _events_counter() -> Counter:
    """`layotto_pubsub_events_total{pubsub, topic, outcome}`, once per process."""
    from layotto.observability import metrics

    return metrics.counter(
        "layotto_pubsub_events_total", "Pub/sub deliveries to the app by outcome", ["pubsub", "topic", "outcome"]
    )


@dataclass
class DeliveryStats:
    """Outcomes of deliveries (also exported as a Prometheus counter)."""

    delivered: int = 0
    retried: int = 0
    dropped: int = 0
    expired: int = 0
    dead_lettered: int = 0
    nacked: int = 0

    def count(self, outcome: str, pubsub: str, topic: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        _events_counter().labels(pubsub, topic, outcome).inc()


class _TopicCounters:
    """The counter's children of one subscription, looked up once per outcome (`labels()`
    takes a lock and builds a key on every call)."""

    def __init__(self, pubsub: str, topic: str) -> None:
        self.pubsub = pubsub
        self.topic = topic
        self._children: dict[str, Counter] = {}

    def inc(self, outcome: str) -> None:
        child = self._children.get(outcome)
        if child is None:
            child = self._children[outcome] = _events_counter().labels(self.pubsub, self.topic, outcome)
        child.inc()


def _meta(values: Mapping[str, object], key: str) -> str:
    for k, v in values.items():
        if k.lower() == key.lower():
            return str(v)
    return ""


@dataclass
class DeliveryPolicy:
    """Per-subscription delivery settings: subscription metadata over component metadata."""

    max_concurrency: int = 32
    dead_letter_topic: str = ""
    #: Attempts (in this sidecar) before dead-lettering; 0 = never dead-letter.
    max_delivery_attempts: int = 0
    #: Immediate retries here before the event is nacked to the backend.
    local_retries: int = 3
    backoff_base: float = 0.05
    backoff_cap: float = 2.0
    timeout: float = 60.0
    raw_payload: bool = False

    @classmethod
    def from_metadata(
        cls, subscription: Mapping[str, str], component: Mapping[str, object], app_id: str
    ) -> DeliveryPolicy:
        def pick(key: str) -> str:
            return _meta(subscription, key) or _meta(component, key)

        def number(key: str, default: float) -> float:
            raw = pick(key)
            try:
                return float(raw) if raw else default
            except ValueError:
                log.warning("subscription metadata %s=%r is not a number; using %s", key, raw, default)
                return default

        options = subscribe_options(subscription, component, app_id)
        dead_letter = pick("deadLetterTopic")
        return cls(
            max_concurrency=options.max_concurrency,
            dead_letter_topic=dead_letter,
            # daprd dead-letters after the first failed delivery (with no resiliency retries).
            max_delivery_attempts=int(number("maxDeliveryAttempts", 1 if dead_letter else 0)),
            local_retries=int(number("maxRetries", 3)),
            backoff_base=number("retryBackoff", 0.05),
            timeout=number("appCallbackTimeout", 60.0),
            raw_payload=is_truthy(pick(RAW_PAYLOAD)),
        )


Deliver = Callable[[Event, float], Awaitable[Status]]


class _Undelivered(Exception):  # noqa: N818  (a verdict, not a bug)
    """A try of a delivery under an inbound policy that did not settle the event."""

    def __init__(self, why: str, *, closing: bool = False) -> None:
        super().__init__(why)
        self.closing = closing


def _redeliver(exc: BaseException) -> bool:
    return isinstance(exc, _Undelivered) and not exc.closing


#: Deliveries: the app's RETRY (or failing to take the event) is the failure a policy retries;
#: its status codes are verdicts, so `matching` has nothing to match.
DELIVERY_OUTCOMES = Outcomes(
    failed=_redeliver,
    retriable=lambda exc, _: _redeliver(exc),
    timed_out=lambda: _Undelivered("the inbound policy's timeout passed"),
    refused=lambda message, _: _Undelivered(message),
)


class Dispatcher:
    """The handler a component calls for each message of one subscription."""

    _ATTEMPTS_KEPT = 100_000

    def __init__(
        self,
        component: PubSub,
        pubsub_name: str,
        topic: str,
        policy: DeliveryPolicy,
        deliver: Deliver,
        stats: DeliveryStats,
        tracer: Tracer | None = None,
        subscription: TopicSubscription | None = None,
        inbound: Policy | None = None,
    ) -> None:
        self.component = component
        #: Picks each event's route in the app (None: the callback API has no routes).
        self.subscription = subscription if subscription is not None and subscription.rules else None
        self.default_route = subscription.default_route if subscription is not None else ""
        self.pubsub_name = pubsub_name
        self.topic = topic
        self.policy = policy
        #: The component's resiliency policy for deliveries (None: the local retries above).
        self.inbound = inbound
        # The app is told the time it has: the inbound timeout, when it is the shorter.
        self._time_limit = min(policy.timeout, inbound.timeout or policy.timeout) if inbound else policy.timeout
        self._deliver = deliver
        self.stats = stats
        self.tracer = tracer
        self.span_name = f"pubsub/{pubsub_name}/{topic}"
        self.closed = False
        self._slots = asyncio.Semaphore(policy.max_concurrency)
        self._counters = _TopicCounters(pubsub_name, topic)
        # Failed attempts per event id, across redeliveries to this sidecar (bounded LRU).
        self._attempts: OrderedDict[str, int] = OrderedDict()

    def _failed(self, event_id: str) -> int:
        count = self._attempts.pop(event_id, 0) + 1
        self._attempts[event_id] = count
        while len(self._attempts) > self._ATTEMPTS_KEPT:
            self._attempts.popitem(last=False)
        return count

    async def _attempt(self, event: Event) -> Status:
        if self.tracer is None:
            return await self._call(event)
        context = ((tracing.TRACEPARENT, event.traceparent),) if event.traceparent else ()
        span = tracing.start_span(self.span_name, context, time.time_ns())
        span.kind = "CONSUMER"
        token = tracing.CURRENT.set(span)  # the callback's traceparent names this span
        try:
            status = await self._call(event)
        finally:
            tracing.CURRENT.reset(token)
            span.end_ns = time.time_ns()
        span.code = "OK" if status is Status.SUCCESS else status.name
        span.set_attribute("pubsub", self.pubsub_name)
        span.set_attribute("topic", self.topic)
        span.set_attribute("event.id", event.id)
        self.tracer.finish(span)
        return status

    def _count(self, outcome: str) -> None:
        stats = self.stats
        setattr(stats, outcome, getattr(stats, outcome) + 1)
        self._counters.inc(outcome)

    async def _call(self, event: Event) -> Status:
        try:
            # A guard over the callback's own deadline; unlike wait_for, no task per call.
            async with asyncio.timeout(self._time_limit + 1.0):
                return await self._deliver(event, self._time_limit)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the app failing in any way means "try again later"
            log.debug("delivering event %s failed: %r", event.id, exc)
            return Status.RETRY

    async def __call__(self, message: Message) -> bool:
        if self.closed:
            return False
        event = decode(
            message.data,
            topic=message.topic or self.topic,
            pubsub_name=self.pubsub_name,
            raw=self.policy.raw_payload,
            message_id=message.id,
        )
        event.route = self.subscription.route(event) if self.subscription is not None else self.default_route
        if event.expired:
            self._count("expired")
            log.warning("dropping expired pub/sub event %s on topic %s", event.id, self.topic)
            return True
        async with self._slots:
            if self.inbound is not None:
                return await self._under(self.inbound, event)
            tries = 0
            while not self.closed:
                status = await self._attempt(event)
                if status is not Status.RETRY:
                    return await self._settled(event, status)
                self._count("retried")
                failures = self._failed(event.id)
                limit = self.policy.max_delivery_attempts
                if self.policy.dead_letter_topic and limit and failures >= limit:
                    return await self._dead_letter(event, f"failed {failures} times")
                if tries >= self.policy.local_retries:
                    break
                delay = min(self.policy.backoff_cap, self.policy.backoff_base * 2**tries)
                await asyncio.sleep(delay * (0.5 + random.random()))
                tries += 1
        self._count("nacked")
        return False

    async def _settled(self, event: Event, status: Status) -> bool:
        """The app's final verdict on the event (any but RETRY)."""
        self._attempts.pop(event.id, None)
        if status is Status.SUCCESS:
            self._count("delivered")
            return True
        log.warning("%s from app for pub/sub event %s on topic %s", status.name, event.id, self.topic)
        if status is Status.DROP and self.policy.dead_letter_topic:
            return await self._dead_letter(event, "was dropped by the app")
        self._count("dropped")
        return True

    async def _under(self, inbound: Policy, event: Event) -> bool:
        """One delivery under the component's inbound policy."""

        async def attempt() -> Status:
            if self.closed:
                raise _Undelivered("the subscription is closing", closing=True)
            status = await self._attempt(event)
            if status is Status.RETRY:
                self._count("retried")
                raise _Undelivered("the app did not take the event")
            return status

        try:
            status = await inbound.run(attempt, DELIVERY_OUTCOMES)
        except _Undelivered as exc:
            failures = self._failed(event.id)
            limit = self.policy.max_delivery_attempts
            if not exc.closing and self.policy.dead_letter_topic and limit and failures >= limit:
                return await self._dead_letter(event, f"was not delivered under {inbound.name}'s policy ({exc})")
            log.debug("event %s on topic %s not delivered under %s: %s", event.id, self.topic, inbound.name, exc)
            self._count("nacked")
            return False
        return await self._settled(event, status)

    async def _dead_letter(self, event: Event, why: str) -> bool:
        # Counted first: the dead-letter subscriber may see the event before publish returns.
        self.stats.dead_lettered += 1
        try:
            await self.component.publish(self.policy.dead_letter_topic, event.raw, {})
        except Exception as exc:
            self.stats.dead_lettered -= 1
            log.warning(
                "cannot publish event %s to dead-letter topic %s: %s", event.id, self.policy.dead_letter_topic, exc
            )
            self._count("nacked")
            return False
        self._counters.inc("dead_lettered")
        self._attempts.pop(event.id, None)
        log.warning(
            "event %s on topic %s %s; moved to dead-letter topic %s",
            event.id,
            self.topic,
            why,
            self.policy.dead_letter_topic,
        )
        return True


def component_metadata(rt: Runtime, pubsub_name: str) -> Mapping[str, object]:
    spec = rt.spec("pubsub", pubsub_name)
    return spec.metadata if spec is not None else {}


class DeliveryService(AppWorkService):
    """Subscribes the app's topics and delivers their events through the AppChannel."""

    task_name = "pubsub-delivery"

    def __init__(
        self, rt: Runtime, channel: AppChannel, tracer: Tracer | None = None, health: AppHealth | None = None
    ) -> None:
        super().__init__(rt, channel, tracer, health)
        #: What the app subscribes to (kept while its subscriptions are closed for an unhealthy app).
        self.wanted: list[TopicSubscription] = []
        self.stats = DeliveryStats()
        self.subscriptions: list[tuple[TopicSubscription, Subscription, Dispatcher]] = []

    async def _learn(self) -> None:
        wanted = await retrying(
            self.channel.list_subscriptions, "asking the app for ListTopicSubscriptions", 0.1, 5.0, brief=_brief
        )
        log.info("app subscribes to %s", [(s.pubsub_name, s.topic) for s in wanted] or "nothing")
        self.wanted = merged(wanted, declared(self.rt.config.subscriptions))

    def _is_open(self) -> bool:
        return bool(self.subscriptions)

    async def _open_all(self) -> None:
        for sub in self.wanted:
            await self._subscribe(sub)

    async def _subscribe(self, sub: TopicSubscription) -> None:
        component = self.rt.get("pubsub", sub.pubsub_name)
        if not isinstance(component, PubSub):
            log.warning("app subscribes to topic %s of unknown pubsub %r; ignored", sub.topic, sub.pubsub_name)
            return
        policy = DeliveryPolicy.from_metadata(
            sub.metadata, component_metadata(self.rt, sub.pubsub_name), self.rt.app_id
        )
        engine = self.rt.resiliency
        dispatcher = Dispatcher(
            component,
            sub.pubsub_name,
            sub.topic,
            policy,
            self.channel.deliver,
            self.stats,
            self.tracer,
            sub,
            inbound=engine.inbound("pubsub", sub.pubsub_name) if engine else None,
        )
        handle = await retrying(
            lambda: component.subscribe(sub.topic, dispatcher, dict(sub.metadata)),
            f"subscribing to {sub.pubsub_name}/{sub.topic}",
            0.2,
            10.0,
            level=logging.WARNING,
        )
        self.subscriptions.append((sub, handle, dispatcher))
        log.info("subscribed to topic %s on pubsub %s", sub.topic, sub.pubsub_name)

    async def _close_all(self) -> None:
        for _, handle, dispatcher in self.subscriptions:
            dispatcher.closed = True
            try:
                await handle.close()
            except Exception:
                log.exception("closing a subscription failed")
        self.subscriptions.clear()


def _brief(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return repr(exc)


async def delivery_services(
    rt: Runtime, channel: AppChannel | None = None, tracer: Tracer | None = None, health: AppHealth | None = None
) -> list[Service]:
    """A ServiceFactory (the sidecar binds `channel`, its channel to the app, `tracer`, its one
    tracer (None with tracing off), and `health`, the app's health)."""
    if not rt.components("pubsub") or channel is None:
        return []
    return [DeliveryService(rt, channel, tracer, health)]
