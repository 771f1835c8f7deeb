"""Pub/Sub API: PublishEvent and SubscribeTopicEvents with the Layotto proto's messages."""

from __future__ import annotations

from layotto.api.pubsub import PublishRpcs, SubscribeRpcs
from layotto.core.pubsub import PublishStyle
from layotto.runtime.appchannel import topic_event_request
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb


class PubSubApi(PublishRpcs):
    STYLE = PublishStyle()


class SubscribeApi(SubscribeRpcs):
    RESPONSE = pb.SubscribeTopicEventsResponse
    INITIAL_RESPONSE = pb.SubscribeTopicEventsResponseInitial
    event_message = staticmethod(topic_event_request)
    SubscribeTopicEvents = SubscribeRpcs.subscribe
