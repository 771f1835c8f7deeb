"""The Pub/Sub component interface.

A component moves opaque bytes between publishers and subscribers through its backend.
It knows nothing of CloudEvents (the runtime wraps and unwraps them, see
`layotto.core.cloudevents`) nor of the app (see `layotto.runtime.delivery`).

Delivery contract:
- `subscribe(topic, handler, metadata)` starts consuming and calls `handler(message)` for each
  message; the handler returns True to ack (done: delivered or deliberately dropped) or False
  to nack (deliver again later). A handler that raises counts as a nack.
- Components give at-least-once delivery where the backend allows it: a message is acked only
  after its handler returned True; a nacked or unacked message (the sidecar died) is redelivered
  by the backend (Redis pending-entry reclaim, JetStream ack wait, AMQP requeue, MQTT QoS 1).
- Consumer group = metadata `consumerID` (subscription metadata first, then component metadata,
  then the app id, as upstream). Subscribers sharing a consumer group share the messages; each
  group gets every message.
- The handler may be called concurrently for different messages, up to
  `SubscribeOptions.max_concurrency` in flight; the component must not exceed it.

Bulk (PubSubFeature.BULK_SUBSCRIBE): `bulk_subscribe(topic, handler, metadata, options)` reads
messages in batches and calls `handler(messages)` once per batch, which answers one verdict per
message (True = ack, False = nack; raising nacks them all). A batch holds at most
`options.max_messages` messages and is handed over once full or `options.max_await` seconds after
its first message was read. Acks of a batch go to the backend together. Up to `bulk_in_flight()`
messages may be unsettled at once, across batches. A component without the feature gets the
same contract from `components/pubsub/bulk.py`, which batches its one-by-one messages.
"""

from __future__ import annotations

import enum
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from layotto.components.base import Component, Feature, Metadata, unsupported

if TYPE_CHECKING:
    from layotto.components.delay_queue.base import DelayScheduler

#: Metadata keys shared by every component (Dapr/upstream names).
CONSUMER_ID = "consumerID"
MAX_CONCURRENCY = "maxConcurrency"
DEFAULT_MAX_CONCURRENCY = 32


@dataclass
class Message:
    """One message as read from the backend."""

    topic: str
    data: bytes
    #: Backend headers/properties, if the backend carries any (never None).
    metadata: dict[str, str] = field(default_factory=dict)
    #: Backend message id when it has one (stream entry id, sequence, ...), for logs.
    id: str = ""
    #: 1 on first delivery; higher when the backend reports redeliveries; 0 when unknown.
    delivery_count: int = 0


#: Returns True = ack, False = nack (redeliver). Raising = nack.
Handler = Callable[[Message], Awaitable[bool]]
#: One verdict per message, in their order (as Handler's). Raising, or a verdict missing = nack.
BulkHandler = Callable[[Sequence[Message]], Awaitable[Sequence[bool]]]

#: daprd's defaults for a bulk subscription that leaves its settings at 0.
DEFAULT_BULK_MAX_MESSAGES = 100
DEFAULT_BULK_MAX_AWAIT = 1.0


@dataclass(frozen=True)
class BulkOptions:
    """How a bulk subscription batches: at most `max_messages` a batch, handed over `max_await`
    seconds after its first message at the latest."""

    max_messages: int = DEFAULT_BULK_MAX_MESSAGES
    max_await: float = DEFAULT_BULK_MAX_AWAIT

    @classmethod
    def of(cls, max_messages_count: int, max_await_duration_ms: int) -> BulkOptions:
        """From Dapr's settings, where 0 (or less) means daprd's default."""
        return cls(
            max_messages=max_messages_count if max_messages_count > 0 else DEFAULT_BULK_MAX_MESSAGES,
            max_await=max_await_duration_ms / 1000 if max_await_duration_ms > 0 else DEFAULT_BULK_MAX_AWAIT,
        )


def bulk_in_flight(options: BulkOptions, max_concurrency: int) -> int:
    """Messages a bulk subscription may have unsettled: `maxConcurrency`, but at least two
    batches, so that the next batch fills while one is with the handler (daprd reads one batch
    ahead the same way)."""
    return max(max_concurrency, 2 * options.max_messages)


class Subscription(Protocol):
    """A running subscription. `close()` stops consuming; messages not yet acked are
    redelivered by the backend (to this group's other consumers or a later subscriber)."""

    async def close(self) -> None: ...


@dataclass
class SubscribeOptions:
    """Parsed from subscription metadata merged over component metadata."""

    consumer_id: str
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY


class PubSubFeature(Feature):
    #: Delayed publishing (upstream's DelayQueue extension): `delay_scheduler` makes the
    #: scheduler that keeps a message until it is due, then publishes it through this component.
    #: Without it, `delay_scheduler` raises UnsupportedError and PublishDelayMessage does not
    #: serve the component.
    DELAY = enum.auto()
    #: Batched reads and acks (`bulk_subscribe`, see the module doc): a batch is read from the
    #: backend in one go where it can (XREADGROUP COUNT, a JetStream pull of n) and its acks are
    #: sent together (one XACK, one flush, one multiple basic.ack).
    BULK_SUBSCRIBE = enum.auto()


class PubSub(Component):
    """Base of pubsub components. Subclasses implement publish/subscribe; close() must close
    every subscription still open."""

    features: frozenset[PubSubFeature] = frozenset()

    @abstractmethod
    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        """Send `data` to `topic`. Raises BackendUnavailableError when the backend is down."""

    @abstractmethod
    async def subscribe(self, topic: str, handler: Handler, metadata: Mapping[str, str]) -> Subscription:
        """Start consuming `topic` for the consumer group in metadata (see module doc).

        Returns once the subscription is registered with the backend, so that a message
        published after this returns is delivered to it (for durable groups: also messages
        published while no consumer of the group was running).
        """

    async def bulk_subscribe(
        self, topic: str, handler: BulkHandler, metadata: Mapping[str, str], options: BulkOptions
    ) -> Subscription:
        """`subscribe`, with messages read, handed to `handler` and acked in batches
        (PubSubFeature.BULK_SUBSCRIBE; see the module doc)."""
        raise unsupported(self, PubSubFeature.BULK_SUBSCRIBE, "bulk subscribe")

    def delay_scheduler(self, name: str, metadata: Metadata) -> DelayScheduler:
        """A (not yet started) scheduler of delayed messages for this component, `name` in
        config with `metadata` (PubSubFeature.DELAY)."""
        raise unsupported(self, PubSubFeature.DELAY, "delayed publishing")


def subscribe_options(
    subscription: Mapping[str, str], component: Mapping[str, object], app_id: str
) -> SubscribeOptions:
    """Consumer group and concurrency: subscription metadata, else component metadata, else
    the app id (upstream's consumerID default)."""

    def pick(key: str) -> str:
        for source in (subscription, component):
            for k, v in source.items():
                if k.lower() == key.lower() and str(v):
                    return str(v)
        return ""

    concurrency = pick(MAX_CONCURRENCY)
    try:
        max_concurrency = int(concurrency) if concurrency else DEFAULT_MAX_CONCURRENCY
    except ValueError:
        max_concurrency = DEFAULT_MAX_CONCURRENCY
    return SubscribeOptions(
        consumer_id=pick(CONSUMER_ID) or app_id or "layotto",
        max_concurrency=max(1, max_concurrency),
    )
