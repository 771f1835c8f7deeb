"""Dapr Pub/Sub API: PublishEvent and BulkPublishEvent(Alpha1), with daprd's CloudEvent
envelope (source = the app id, type `com.dapr.event.sent`).
"""

from __future__ import annotations

from dapr.proto.runtime.v1 import pubsub_pb2 as pb

from layotto.api.common import Ctx, answered, caller_traceparent, message_of
from layotto.api.pubsub import PublishRpcs
from layotto.core.problems import Problem
from layotto.core.pubsub import PublishStyle
from layotto.core.pubsub import PubSubProblem as P

DAPR_EVENT_TYPE = "com.dapr.event.sent"


class DaprPubSubApi(PublishRpcs):
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
                failed = problem.cause if problem.kind is P.PUBLISH_FAILED else message_of(self.answers, problem)[1]
                reply.failedEntries.add(entry_id=entry.entry_id, error=str(failed))
        return reply

    async def BulkPublishEventAlpha1(self, request: pb.BulkPublishRequest, context: Ctx) -> pb.BulkPublishResponse:
        return await self.BulkPublishEvent(request, context)
