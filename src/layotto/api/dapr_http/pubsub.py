"""daprd's publish endpoints over `layotto.core.pubsub`, with daprd's CloudEvent envelope
(source = the app id, type `com.dapr.event.sent`; the style Dapr's gRPC API publishes with).

The event's content type is the request's Content-Type; `metadata.*` query parameters are the
publish metadata (`rawPayload`, `ttlInSeconds`, `cloudevent.*`, ...). A bulk publish's events
are JSON values turned into bytes by their `contentType`, as daprd does.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from aiohttp import web

from layotto.api.dapr_http import common
from layotto.api.dapr_http.answers import RequestProblem, answer
from layotto.core import cloudevents
from layotto.core.problems import Problem
from layotto.core.pubsub import BulkEntry, PubSubCore, PubSubProblem

__all__ = ["PubSubApi"]

_TOPIC = "{topic:.+}"


def event_bytes(event: Any, content_type: str) -> bytes:
    """A bulk entry's event as daprd turns it into bytes (pkg/api/http ConvertEventToBytes)."""
    if cloudevents.is_binary_type(content_type):
        if not isinstance(event, str):
            raise common.BodyError("error: mismatch between contentType and event")
        try:
            return base64.b64decode(event, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise common.BodyError(f"error: unable to decode base64 application/octect-stream data: {exc}") from None
    if cloudevents.is_string_type(content_type):
        if not isinstance(event, str):
            raise common.BodyError("error: mismatch between contentType and event")
        return event.encode()
    if cloudevents.is_json_type(content_type) or cloudevents.is_cloudevent_type(content_type):
        return common.go_json(event, decoded=True).encode()
    raise common.BodyError("error: mismatch between contentType and event")


class PubSubApi(common.Part[PubSubCore]):
    def routes(self) -> list[common.Route]:
        bulk = ("POST", "PUT"), self.bulk_publish
        return [
            # Before the single publish: "bulk" would read as a pubsub name there.
            common.Route(bulk[0], "/v1.0-alpha1/publish/bulk/{pubsub}/" + _TOPIC, bulk[1]),
            common.Route(bulk[0], "/v1.0/publish/bulk/{pubsub}/" + _TOPIC, bulk[1]),
            common.Route(("POST", "PUT"), "/v1.0/publish/{pubsub}/" + _TOPIC, self.publish),
        ]

    @common.answered
    async def publish(self, request: web.Request) -> web.StreamResponse:
        name, topic = request.match_info["pubsub"], request.match_info["topic"]
        self.core.pubsub(name, topic)
        await self.core.publish(
            name,
            topic,
            await request.read(),
            request.headers.get("Content-Type", ""),
            common.query_metadata(request),
            request.headers.get("traceparent", ""),
        )
        return common.no_content()

    @common.answered
    async def bulk_publish(self, request: web.Request) -> web.StreamResponse:
        name, topic = request.match_info["pubsub"], request.match_info["topic"]
        self.core.pubsub(name, topic)
        body = await common.read_json(request, RequestProblem.BULK_EVENTS_MALFORMED, name=name, topic=topic)
        try:
            raw_entries = common.want_list(body, "[]http.bulkPublishMessageEntry")
            entries = []
            for raw in raw_entries:
                entry = common.want_object(raw, "http.bulkPublishMessageEntry")
                content_type = common.text_field(entry, "contentType", "bulkPublishMessageEntry")
                metadata = common.map_field(entry, "metadata", "bulkPublishMessageEntry")
                entry_id = common.text_field(entry, "entryId", "bulkPublishMessageEntry")
                try:
                    event = event_bytes(common.field(entry, "event"), content_type)
                except common.BodyError as exc:
                    raise Problem(RequestProblem.BULK_EVENT_MISMATCH, exc, name=name, topic=topic) from None
                entries.append(BulkEntry(entry_id, event, content_type, metadata))
        except common.BodyError as exc:
            raise Problem(RequestProblem.BULK_EVENTS_MALFORMED, exc, name=name, topic=topic) from None
        failed = await self.core.publish_bulk(
            name, topic, entries, common.query_metadata(request), request.headers.get("traceparent", "")
        )
        if not failed:
            return common.no_content()
        listed = []
        for entry_id, problem in failed:
            # A failed publish is listed with the component's own error, as daprd does.
            error = problem.cause if problem.kind is PubSubProblem.PUBLISH_FAILED else answer(self.answers, problem)[2]
            listed.append({"entryId": entry_id, "error": str(error)})
        status, code, _ = answer(
            self.answers, Problem(PubSubProblem.PUBLISH_FAILED, failed[0][1].cause, name=name, topic=topic)
        )
        return common.raw_reply(status, common.go_json({"failedEntries": listed, "errorCode": code}).encode())
