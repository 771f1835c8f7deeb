"""The DelayQueue extension: a message published through a delay-capable pub/sub component
once its delay is over.

The message is wrapped in a CloudEvent as PublishEvent wraps it (unless `rawPayload`), by the
Pub/Sub core, so subscribers receive it exactly like an event published at its due time; its id
is the CloudEvent id the subscriber sees, and `ttlInSeconds` counts from the due time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import Enum

from layotto.components.delay_queue.base import DelayedMessage, DelayScheduler
from layotto.core.problems import Problem, guarded, named
from layotto.core.pubsub import PubSubCore, PubSubProblem

__all__ = ["DelayQueueCore", "DelayQueueProblem"]


class DelayQueueProblem(Enum):
    NOT_FOUND = "no delay queue for this pubsub"  # facts: kind, name
    TOPIC_EMPTY = "topic is empty"  # facts: name
    BAD_CLOUDEVENT = "the data is not a CloudEvent"  # cause: the parse error
    TTL_OUT_OF_RANGE = "ttlInSeconds is more than an event may live"  # facts: ttl, limit
    PUBLISH_FAILED = "scheduling failed"  # facts: name, topic


class DelayQueueCore:
    KIND = "delay_queue"

    def __init__(self, schedulers: Mapping[str, DelayScheduler], events: PubSubCore) -> None:
        self._schedulers = schedulers
        #: Builds the CloudEvent; its checks are not used (this core checks the request itself).
        self._events = events

    async def publish(
        self, name: str, topic: str, data: bytes, content_type: str, metadata: dict[str, str], delay: int
    ) -> str:
        """Schedule the message; returns its id."""
        scheduler = named(self._schedulers, name, DelayQueueProblem.NOT_FOUND, kind=self.KIND, name=name)
        if not topic:
            raise Problem(DelayQueueProblem.TOPIC_EMPTY, name=name)
        delay = max(0, delay)
        due = datetime.now(UTC) + timedelta(seconds=delay)
        try:
            message_id, payload = self._events.event(name, topic, data, content_type, metadata, "", due)
        except Problem as problem:
            if problem.kind is PubSubProblem.BAD_CLOUDEVENT:
                raise Problem(DelayQueueProblem.BAD_CLOUDEVENT, problem.cause) from None
            if problem.kind is PubSubProblem.TTL_OUT_OF_RANGE:
                raise Problem(DelayQueueProblem.TTL_OUT_OF_RANGE, **problem.facts) from None
            raise
        message = DelayedMessage(id=message_id, topic=topic, data=payload, metadata=metadata)
        scheduled = scheduler.schedule(message, float(delay))
        await guarded(scheduled, DelayQueueProblem.PUBLISH_FAILED, name=name, topic=topic)
        return message_id
