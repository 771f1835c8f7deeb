"""DelayQueue: PublishDelayMessage over `layotto.core.delay_queue`."""

from __future__ import annotations

from layotto.api.common import Answering, Ctx, answered
from layotto.core.delay_queue import DelayQueueCore
from layotto_proto.spec.proto.extension.v1.delay_queue import delay_queue_pb2 as pb


class DelayQueueApi(Answering[DelayQueueCore]):
    @answered
    async def PublishDelayMessage(self, request: pb.DelayMessageRequest, context: Ctx) -> pb.DelayMessageResponse:
        message_id = await self.core.publish(
            request.component_name,
            request.topic,
            request.data,
            request.data_content_type,
            dict(request.metadata),
            request.delay_in_seconds,
        )
        return pb.DelayMessageResponse(message_id=message_id)
