"""The Pub/Sub block: pubsub lookup and checks, the CloudEvent envelope, publishing.

An event is published wrapped in a CloudEvents 1.0 envelope (unless `rawPayload` asks for the
bare bytes), built by the same code for every API, so subscribers of any API receive it alike.
What differs per API is the envelope's `source` and `type` and whether a malformed
`ttlInSeconds` is refused: a `PublishStyle`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from layotto.components.pubsub.base import PubSub
from layotto.core import cloudevents
from layotto.core.problems import Checks, Problem

__all__ = ["PubSubCore", "PubSubProblem", "PublishStyle"]


class PubSubProblem(Enum):
    NO_PUBSUBS = "no pubsub is configured"
    NAME_EMPTY = "pubsub name is empty"
    NOT_FOUND = "pubsub not found"  # facts: name
    TOPIC_EMPTY = "topic is empty"  # facts: name
    BAD_CLOUDEVENT = "the data is not a CloudEvent"  # cause: the parse error
    BAD_TTL = "ttlInSeconds is not an integer"  # facts: ttl (its repr)
    PUBLISH_FAILED = "publish failed"  # facts: name, topic
    SUBSCRIBE_FAILED = "subscribe failed"  # facts: name, topic
    BULK_ENTRY_ID_INVALID = "a bulk entry's id is missing or repeated"
    INITIAL_REQUEST_MISSING = "a subscription stream must open with its initial request"


@dataclass(frozen=True, slots=True)
class PublishStyle:
    """How one API wraps events: the envelope's `source` and `type`."""

    source: str = cloudevents.DEFAULT_SOURCE
    event_type: str = cloudevents.DEFAULT_TYPE


class PubSubCore:
    """Publishing for one API: built with the `Checks` that API makes and its `PublishStyle`."""

    def __init__(self, pubsubs: Mapping[str, PubSub], checks: Checks, style: PublishStyle) -> None:
        self._pubsubs = pubsubs
        self._checks = checks
        self._style = style

    def pubsub(self, name: str, topic: str) -> PubSub:
        """The pubsub `name`, once the request names it and a topic."""
        component = self._pubsubs.get(name)
        if component is None or not topic:
            found = []
            if not self._pubsubs:
                found.append(Problem(PubSubProblem.NO_PUBSUBS))
            if not name:
                found.append(Problem(PubSubProblem.NAME_EMPTY))
            if component is None:
                found.append(Problem(PubSubProblem.NOT_FOUND, name=name))
            if not topic:
                found.append(Problem(PubSubProblem.TOPIC_EMPTY, name=name))
            self._checks.refuse(found)
            if component is None:
                raise Problem(PubSubProblem.NOT_FOUND, name=name)
        return component

    def payload(
        self, name: str, topic: str, data: bytes, content_type: str, metadata: Mapping[str, str], traceparent: str
    ) -> bytes:
        """What goes on the wire for `data`: its CloudEvent envelope, or `data` when raw."""
        if cloudevents.is_truthy(metadata.get(cloudevents.RAW_PAYLOAD)):
            return data
        if cloudevents.is_cloudevent_type(content_type):
            try:
                envelope = cloudevents.from_cloudevent(data, topic=topic, pubsub_name=name, trace_id=traceparent)
            except cloudevents.CloudEventError as exc:
                raise Problem(PubSubProblem.BAD_CLOUDEVENT, exc) from None
        else:
            envelope = cloudevents.new_envelope(
                topic=topic,
                pubsub_name=name,
                data=data,
                content_type=content_type,
                trace_id=traceparent,
                source=self._style.source,
                event_type=self._style.event_type,
            )
        try:
            cloudevents.apply_ttl(envelope, metadata)
        except ValueError:
            # An API that does not check the TTL publishes without one, as upstream Layotto does.
            self._checks.refuse([Problem(PubSubProblem.BAD_TTL, ttl=repr(metadata.get(cloudevents.TTL_IN_SECONDS)))])
        return cloudevents.encode(envelope)

    async def publish(
        self, name: str, topic: str, data: bytes, content_type: str, metadata: dict[str, str], traceparent: str
    ) -> None:
        component = self.pubsub(name, topic)
        payload = self.payload(name, topic, data, content_type, metadata, traceparent)
        await self.send(component, name, topic, payload, metadata)

    @staticmethod
    async def send(component: PubSub, name: str, topic: str, payload: bytes, metadata: dict[str, str]) -> None:
        try:
            await component.publish(topic, payload, metadata)
        except Exception as exc:
            raise Problem(PubSubProblem.PUBLISH_FAILED, exc, name=name, topic=topic) from exc
