"""The Pub/Sub block: pubsub lookup and checks, the CloudEvent envelope, publishing.

An event is published wrapped in a CloudEvents 1.0 envelope (unless `rawPayload` asks for the
bare bytes), built by the same code for every API, so subscribers of any API receive it alike.
What differs per API is the envelope's `source` and `type` and whether a malformed
`ttlInSeconds` is refused: a `PublishStyle`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from layotto.components.pubsub.base import PubSub
from layotto.core import cloudevents
from layotto.core.problems import Checks, Problem

__all__ = ["BulkEntry", "PubSubCore", "PubSubProblem", "PublishStyle"]


class PubSubProblem(Enum):
    NO_PUBSUBS = "no pubsub is configured"
    NAME_EMPTY = "pubsub name is empty"
    NOT_FOUND = "pubsub not found"  # facts: name
    TOPIC_EMPTY = "topic is empty"  # facts: name
    BAD_CLOUDEVENT = "the data is not a CloudEvent"  # cause: the parse error
    BAD_TTL = "ttlInSeconds is not an integer"  # facts: ttl (its repr)
    TTL_OUT_OF_RANGE = "ttlInSeconds is more than an event may live"  # facts: ttl, limit
    PUBLISH_FAILED = "publish failed"  # facts: name, topic
    SUBSCRIBE_FAILED = "subscribe failed"  # facts: name, topic
    BULK_ENTRY_ID_INVALID = "a bulk entry's id is missing or repeated"  # facts: name, topic
    INITIAL_REQUEST_MISSING = "a subscription stream must open with its initial request"


@dataclass(frozen=True, slots=True)
class PublishStyle:
    """How one API wraps events: the envelope's `source` and `type`."""

    source: str = cloudevents.DEFAULT_SOURCE
    event_type: str = cloudevents.DEFAULT_TYPE


@dataclass(frozen=True, slots=True)
class BulkEntry:
    """One event of a bulk publish; its metadata overrides the request's."""

    entry_id: str
    event: bytes
    content_type: str
    metadata: Mapping[str, str]


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
        return self.event(name, topic, data, content_type, metadata, traceparent)[1]

    def event(
        self,
        name: str,
        topic: str,
        data: bytes,
        content_type: str,
        metadata: Mapping[str, str],
        traceparent: str,
        due: datetime | None = None,
    ) -> tuple[str, bytes]:
        """The event's id (the CloudEvent's, a fresh one when raw) and its payload; a `ttlInSeconds`
        counts from `due` (now when None), the moment the event is to be published."""
        if cloudevents.is_truthy(metadata.get(cloudevents.RAW_PAYLOAD)):
            return uuid.uuid4().hex, data
        try:
            if cloudevents.is_cloudevent_type(content_type):
                envelope = cloudevents.from_cloudevent(data, topic=topic, pubsub_name=name, trace_id=traceparent)
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
        except cloudevents.CloudEventError as exc:
            # JSON nested too deep as well: upstream's answer to an envelope it cannot build.
            raise Problem(PubSubProblem.BAD_CLOUDEVENT, exc) from None
        try:
            cloudevents.apply_ttl(envelope, metadata, now=due)
        except cloudevents.TtlOutOfRangeError as exc:
            # Refused by every API, even those that ignore a TTL that is no integer: upstream has
            # no answer worth keeping (its time.Duration wraps around past ~9.2e9 s, and it drops
            # a TTL past 64 bits), and the state stores' bound is the same.
            raise Problem(PubSubProblem.TTL_OUT_OF_RANGE, ttl=exc.shown, limit=exc.limit) from None
        except ValueError:
            # An API that does not check the TTL publishes without one, as upstream Layotto does.
            self._checks.refuse([Problem(PubSubProblem.BAD_TTL, ttl=repr(metadata.get(cloudevents.TTL_IN_SECONDS)))])
        return str(envelope.get("id") or uuid.uuid4().hex), cloudevents.encode(envelope)

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

    async def publish_bulk(
        self, name: str, topic: str, entries: Sequence[BulkEntry], metadata: Mapping[str, str], traceparent: str
    ) -> list[tuple[str, Problem]]:
        """Publish each entry on its own, as daprd does for components without bulk publish;
        the entries that failed, each with its problem. Every entry needs an id of its own,
        checked before anything is published."""
        component = self.pubsub(name, topic)
        seen: set[str] = set()
        for entry in entries:
            if not entry.entry_id or entry.entry_id in seen:
                raise Problem(PubSubProblem.BULK_ENTRY_ID_INVALID, name=name, topic=topic)
            seen.add(entry.entry_id)
        failed: list[tuple[str, Problem]] = []
        for entry in entries:
            merged = {**metadata, **entry.metadata}
            try:
                payload = self.payload(name, topic, entry.event, entry.content_type, merged, traceparent)
                await self.send(component, name, topic, payload, merged)
            except Problem as problem:
                failed.append((entry.entry_id, problem))
        return failed
