"""PublishEvent of both gRPC APIs over `layotto.core.pubsub` (same request fields in both)."""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2

from layotto.api.common import Answering, Ctx, answered, caller_traceparent
from layotto.core.pubsub import PubSubCore

__all__ = ["PublishRpcs"]

_EMPTY = empty_pb2.Empty()


class PublishRpcs(Answering[PubSubCore]):
    @answered
    async def PublishEvent(self, request: Any, context: Ctx) -> empty_pb2.Empty:
        await self.core.publish(
            request.pubsub_name,
            request.topic,
            request.data,
            request.data_content_type,
            dict(request.metadata),
            caller_traceparent(context),
        )
        return _EMPTY
