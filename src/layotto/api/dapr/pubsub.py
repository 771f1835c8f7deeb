"""Dapr Pub/Sub API: PublishEvent and BulkPublishEvent(Alpha1), with daprd's CloudEvent
envelope (source = the app id, type `com.dapr.event.sent`), and SubscribeTopicEventsAlpha1
(the Dapr SDKs' streaming `subscribe()`).
"""

from __future__ import annotations

from layotto.api.common import Ctx, answered, caller_traceparent, message_of
from layotto.api.dapr.appchannel import topic_event_request
from layotto.api.pubsub import PublishRpcs, SubscribeRpcs
from layotto.core.pubsub import BulkEntry, PublishStyle
from layotto.core.pubsub import PubSubProblem as P
from layotto_proto.dapr.proto.runtime.v1 import pubsub_pb2 as pb

DAPR_EVENT_TYPE = "com.dapr.event.sent"


class DaprPubSubApi(PublishRpcs):
    @staticmethod
    def style(app_id: str) -> PublishStyle:
        return PublishStyle(source=app_id or "layotto", event_type=DAPR_EVENT_TYPE)

    @answered
    async def BulkPublishEvent(self, request: pb.BulkPublishRequest, context: Ctx) -> pb.BulkPublishResponse:
        """Each entry is published on its own; failed entries are listed, as daprd does for
        components without native bulk publish."""
        entries = [BulkEntry(e.entry_id, e.event, e.content_type, dict(e.metadata)) for e in request.entries]
        failed = await self.core.publish_bulk(
            request.pubsub_name, request.topic, entries, dict(request.metadata), caller_traceparent(context)
        )
        reply = pb.BulkPublishResponse()
        for entry_id, problem in failed:
            # A failed publish is listed with the component's own error, as daprd does.
            error = problem.cause if problem.kind is P.PUBLISH_FAILED else message_of(self.answers, problem)[1]
            reply.failedEntries.add(entry_id=entry_id, error=str(error))
        return reply

    async def BulkPublishEventAlpha1(self, request: pb.BulkPublishRequest, context: Ctx) -> pb.BulkPublishResponse:
        return await self.BulkPublishEvent(request, context)


class DaprSubscribeApi(SubscribeRpcs):
    RESPONSE = pb.SubscribeTopicEventsResponseAlpha1
    INITIAL_RESPONSE = pb.SubscribeTopicEventsResponseInitialAlpha1
    event_message = staticmethod(topic_event_request)
    SubscribeTopicEventsAlpha1 = SubscribeRpcs.subscribe
