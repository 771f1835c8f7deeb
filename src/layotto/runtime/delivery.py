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

A bulk subscription (Dapr's `bulkSubscribe`) has its events read in batches
(components/pubsub/bulk.py: natively where the component batches, else gathered) and handed
to a `BulkDispatcher`, which sends each batch to the app in one callback per route and applies
the same rules to each entry by the app's status for it: an entry the app leaves out is RETRY,
a failed callback is RETRY for all of them; RETRY entries are sent again (only they) with the
same backoff and limits, dead-lettered one by one, or nacked one by one to the backend. With
tracing on, each event of the batch has its span, and the app gets the last one's.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from layotto.components.pubsub.base import BulkOptions, Message, PubSub, Subscription, subscribe_options
from layotto.components.pubsub.bulk import subscribe_bulk
from layotto.core.cloudevents import RAW_PAYLOAD, Event, decode, is_truthy
from layotto.observability import tracing
from layotto.observability.logging import COMPONENT
from layotto.observability.tracing import Span
from layotto.runtime.appchannel import AppChannel, BulkDelivery, BulkEntry, Status
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


async def _no_single(event: Event, time_limit: float) -> Status:
    raise AssertionError("a bulk subscription delivers batches")


class Dispatcher:
    """The handler a component calls for each message of one subscription.

    The outcome rules (module doc) are applied to a group of events at once, one callback per
    try: here the group is the one event of the message; `BulkDispatcher`'s is a batch, whose
    entries each get the verdict one-by-one delivery would give them.
    """

    _ATTEMPTS_KEPT = 100_000

    def __init__(
        self,
        component: PubSub,
        pubsub_name: str,
        topic: str,
        policy: DeliveryPolicy,
        stats: DeliveryStats,
        tracer: Tracer | None = None,
        subscription: TopicSubscription | None = None,
        inbound: Policy | None = None,
        *,
        deliver: Deliver = _no_single,
    ) -> None:
        self.component = component
        self.topic_subscription = subscription
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

    def _span(self, event: Event) -> Span:
        context = ((tracing.TRACEPARENT, event.traceparent),) if event.traceparent else ()
        span = tracing.start_span(self.span_name, context, time.time_ns())
        span.kind = "CONSUMER"
        return span

    def _finish(self, span: Span, event: Event, status: Status) -> None:
        assert self.tracer is not None
        span.end_ns = time.time_ns()
        span.code = "OK" if status is Status.SUCCESS else status.name
        span.set_attribute("pubsub", self.pubsub_name)
        span.set_attribute("topic", self.topic)
        span.set_attribute("event.id", event.id)
        self.tracer.finish(span)

    async def _attempt(self, event: Event) -> Status:
        if self.tracer is None:
            return await self._call(event)
        span = self._span(event)
        token = tracing.CURRENT.set(span)  # the callback's traceparent names this span
        try:
            status = await self._call(event)
        finally:
            tracing.CURRENT.reset(token)
        self._finish(span, event, status)
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

    def _event(self, message: Message) -> Event:
        event = decode(
            message.data,
            topic=message.topic or self.topic,
            pubsub_name=self.pubsub_name,
            raw=self.policy.raw_payload,
            message_id=message.id,
        )
        event.route = self.subscription.route(event) if self.subscription is not None else self.default_route
        return event

    def _expired(self, event: Event) -> bool:
        if not event.expired:
            return False
        self._count("expired")
        log.warning("dropping expired pub/sub event %s on topic %s", event.id, self.topic)
        return True

    async def __call__(self, message: Message) -> bool:
        if self.closed:
            return False
        event = self._event(message)
        if self._expired(event):
            return True
        async with self._slots:
            (verdict,) = await self._settle([event])
        return verdict

    async def _try(self, events: list[Event]) -> list[Status]:
        """One try of `events`: the app's verdict on each."""
        return [await self._attempt(event) for event in events]

    async def _settle(self, events: list[Event]) -> list[bool]:
        """Deliver `events` until each has its verdict: ack (True) or nack (False); what is
        logged meanwhile names the pub/sub (`component` in JSON logs)."""
        token = COMPONENT.set(self.pubsub_name)
        try:
            return await self._settle_all(events)
        finally:
            COMPONENT.reset(token)

    async def _settle_all(self, events: list[Event]) -> list[bool]:
        if self.inbound is not None:
            return await self._under(self.inbound, events)
        verdicts: dict[int, bool] = {}
        pending = list(range(len(events)))
        tries = 0
        while pending and not self.closed:
            statuses = await self._try([events[i] for i in pending])
            retry = []
            for i, status in zip(pending, statuses, strict=True):
                event = events[i]
                if status is not Status.RETRY:
                    verdicts[i] = await self._settled(event, status)
                    continue
                self._count("retried")
                failures = self._failed(event.id)
                limit = self.policy.max_delivery_attempts
                if self.policy.dead_letter_topic and limit and failures >= limit:
                    verdicts[i] = await self._dead_letter(event, f"failed {failures} times")
                    continue
                retry.append(i)
            pending = retry
            if not pending or tries >= self.policy.local_retries:
                break
            delay = min(self.policy.backoff_cap, self.policy.backoff_base * 2**tries)
            await asyncio.sleep(delay * (0.5 + random.random()))
            tries += 1
        for i in pending:
            self._count("nacked")
            verdicts[i] = False
        return [verdicts[i] for i in range(len(events))]

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

    async def _under(self, inbound: Policy, events: list[Event]) -> list[bool]:
        """One delivery of `events` under the component's inbound policy: each try sends the
        events the app has not taken yet."""
        answered: dict[int, Status] = {}
        pending = list(range(len(events)))

        async def attempt() -> None:
            nonlocal pending
            if self.closed:
                raise _Undelivered("the subscription is closing", closing=True)
            statuses = await self._try([events[i] for i in pending])
            retry = []
            for i, status in zip(pending, statuses, strict=True):
                if status is Status.RETRY:
                    self._count("retried")
                    retry.append(i)
                else:
                    answered[i] = status
            pending = retry
            if pending:
                raise _Undelivered("the app did not take the event")

        undelivered: _Undelivered | None = None
        try:
            await inbound.run(attempt, DELIVERY_OUTCOMES)
        except _Undelivered as exc:
            undelivered = exc
        verdicts = {i: await self._settled(events[i], status) for i, status in answered.items()}
        for i in pending:
            if undelivered is None:
                break
            event = events[i]
            failures = self._failed(event.id)
            limit = self.policy.max_delivery_attempts
            if not undelivered.closing and self.policy.dead_letter_topic and limit and failures >= limit:
                why = f"was not delivered under {inbound.name}'s policy ({undelivered})"
                verdicts[i] = await self._dead_letter(event, why)
                continue
            log.debug(
                "event %s on topic %s not delivered under %s: %s", event.id, self.topic, inbound.name, undelivered
            )
            self._count("nacked")
            verdicts[i] = False
        return [verdicts[i] for i in range(len(events))]

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


DeliverBulk = Callable[[BulkDelivery, float], Awaitable[dict[str, Status]]]


class BulkDispatcher(Dispatcher):
    """The bulk handler a component calls with each batch of one bulk subscription.

    Each try sends the batch's events that still wait for a verdict, one callback per route of
    the app (daprd's bulk request per path); an entry the app answers RETRY, or does not answer,
    is retried or dead-lettered or nacked exactly as the same event delivered alone would be.
    The component bounds the messages in flight (`bulk_in_flight`), so no slot is taken here.
    """

    def __init__(self, *args: Any, deliver_bulk: DeliverBulk, **kwargs: Any) -> None:
        """Dispatcher's arguments but `deliver`: the app takes batches, through `deliver_bulk`."""
        super().__init__(*args, **kwargs)
        self._deliver_bulk = deliver_bulk
        self.options = options_of(self.topic_subscription)
        #: The backend headers of the events being delivered that have any, by id(event).
        self._headers: dict[int, Mapping[str, str]] = {}

    async def __call__(self, messages: Sequence[Message]) -> list[bool]:  # type: ignore[override]
        if self.closed:
            return [False] * len(messages)
        events = [self._event(message) for message in messages]
        verdicts = [True] * len(events)
        live = [i for i, event in enumerate(events) if not self._expired(event)]
        if not live:
            return verdicts
        headed = [i for i in live if messages[i].metadata]
        for i in headed:
            self._headers[id(events[i])] = messages[i].metadata
        try:
            settled = await self._settle([events[i] for i in live])
        finally:
            for i in headed:
                del self._headers[id(events[i])]
        for i, verdict in zip(live, settled, strict=True):
            verdicts[i] = verdict
        return verdicts

    async def _try(self, events: list[Event]) -> list[Status]:
        routes: dict[str, list[int]] = {}
        for i, event in enumerate(events):
            routes.setdefault(event.route, []).append(i)
        statuses = [Status.RETRY] * len(events)
        for route, indices in routes.items():
            answers = await self._call_bulk(route, [events[i] for i in indices])
            for i, status in zip(indices, answers, strict=True):
                statuses[i] = status
        return statuses

    async def _call_bulk(self, route: str, events: list[Event]) -> list[Status]:
        entries = [BulkEntry(str(uuid.uuid4()), event, self._headers.get(id(event), {})) for event in events]
        bulk = BulkDelivery(
            str(uuid.uuid4()), self.pubsub_name, self.topic, route, entries, raw_payload=self.policy.raw_payload
        )
        spans = [self._span(event) for event in events] if self.tracer is not None else []
        token = tracing.CURRENT.set(spans[-1]) if spans else None  # daprd: the last event's span
        try:
            async with asyncio.timeout(self._time_limit + 1.0):
                answered = await self._deliver_bulk(bulk, self._time_limit)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the app failing in any way means "try again later"
            log.debug("delivering bulk event %s (%d events) failed: %r", bulk.id, len(entries), exc)
            answered = {}
        finally:
            if token is not None:
                tracing.CURRENT.reset(token)
        statuses = [answered.get(entry.entry_id, Status.RETRY) for entry in entries]
        if spans:
            for span, event, status in zip(spans, events, statuses, strict=True):
                self._finish(span, event, status)
        return statuses


def options_of(subscription: TopicSubscription | None) -> BulkOptions:
    bulk = subscription.bulk if subscription is not None else None
    if bulk is None:
        return BulkOptions()
    return BulkOptions.of(bulk.max_messages_count, bulk.max_await_duration_ms)


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
        inbound = engine.inbound("pubsub", sub.pubsub_name) if engine else None
        metadata = dict(sub.metadata)
        dispatcher: Dispatcher
        subscribing: Callable[[], Awaitable[Subscription]]
        parts = (component, sub.pubsub_name, sub.topic, policy, self.stats, self.tracer, sub, inbound)
        if sub.bulk_enabled:
            bulk = BulkDispatcher(*parts, deliver_bulk=self.channel.deliver_bulk)
            dispatcher = bulk

            def subscribing() -> Awaitable[Subscription]:
                return subscribe_bulk(
                    component, sub.topic, bulk, metadata, bulk.options, max_concurrency=policy.max_concurrency
                )
        else:
            single = Dispatcher(*parts, deliver=self.channel.deliver)
            dispatcher = single

            def subscribing() -> Awaitable[Subscription]:
                return component.subscribe(sub.topic, single, metadata)

        handle = await retrying(
            subscribing, f"subscribing to {sub.pubsub_name}/{sub.topic}", 0.2, 10.0, level=logging.WARNING
        )
        self.subscriptions.append((sub, handle, dispatcher))
        how = f" in batches ({dispatcher.options})" if isinstance(dispatcher, BulkDispatcher) else ""
        log.info("subscribed to topic %s on pubsub %s%s", sub.topic, sub.pubsub_name, how)

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
