"""Dapr Pub/Sub API: PublishEvent and BulkPublishEvent(Alpha1), with daprd's CloudEvent
envelope (source = the app id, type `com.dapr.event.sent`) and its codes and messages.
"""

from __future__ import annotations

import grpc
from dapr.proto.runtime.v1 import pubsub_pb2 as pb

from layotto.api.common import Answers, Ctx, answered, caller_traceparent, message_of
from layotto.api.dapr.base import code_of
from layotto.api.pubsub import PublishRpcs
from layotto.core.problems import Problem
from layotto.core.pubsub import PublishStyle
from layotto.core.pubsub import PubSubProblem as P

Code = grpc.StatusCode
DAPR_EVENT_TYPE = "com.dapr.event.sent"


class DaprPubSubApi(PublishRpcs):
    #: In daprd's order.
    ANSWERS: Answers = {
        P.NO_PUBSUBS: (Code.FAILED_PRECONDITION, "no pubsub is configured"),
        P.NAME_EMPTY: (Code.INVALID_ARGUMENT, "pubsub name is empty"),
        P.NOT_FOUND: (Code.INVALID_ARGUMENT, "pubsub {name} not found"),
        P.TOPIC_EMPTY: (Code.INVALID_ARGUMENT, "topic is empty in pubsub {name}"),
        P.BAD_CLOUDEVENT: (Code.INVALID_ARGUMENT, "cannot create cloudevent: {error}"),
        P.BAD_TTL: (Code.INVALID_ARGUMENT, "ttlInSeconds must be an integer: {ttl}"),
        P.PUBLISH_FAILED: (code_of, "error when publish to topic {topic} in pubsub {name}: {error}"),
        P.BULK_ENTRY_ID_INVALID: (Code.INVALID_ARGUMENT, "entryId is duplicated or not present for entry"),
    }

    @staticmethod
    def style(app_id: str) -> PublishStyle:
        return PublishStyle(source=app_id or "layotto", event_type=DAPR_EVENT_TYPE)


    @answered
    async def BulkPublishEvent(self, request: pb.BulkPublishRequest, context: Ctx) -> pb.BulkPublishResponse:
        """Each entry is published on its own; failed entries are listed, as daprd does for
        components without native bulk publish."""
        name, topic = request.pubsub_name, request.topic
        component = self.core.pubsub(name, topic)
        trace = caller_traceparent(context)
        common = dict(request.metadata)
        seen: set[str] = set()
        for entry in request.entries:
            if not entry.entry_id or entry.entry_id in seen:
                raise Problem(P.BULK_ENTRY_ID_INVALID)
            seen.add(entry.entry_id)
        reply = pb.BulkPublishResponse()
        for entry in request.entries:
            metadata = {**common, **dict(entry.metadata)}
            try:
                payload = self.core.payload(name, topic, entry.event, entry.content_type, metadata, trace)
                await self.core.send(component, name, topic, payload, metadata)
            except Problem as problem:
                # A failed publish is listed with the component's own error, as daprd does.
                failed = problem.cause if problem.kind is P.PUBLISH_FAILED else message_of(self.ANSWERS, problem)[1]
                reply.failedEntries.add(entry_id=entry.entry_id, error=str(failed))
        return reply

    async def BulkPublishEventAlpha1(self, request: pb.BulkPublishRequest, context: Ctx) -> pb.BulkPublishResponse:
        return await self.BulkPublishEvent(request, context)
