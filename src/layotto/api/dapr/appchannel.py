"""Calls to apps that serve Dapr's AppCallback (dapr.proto.runtime.v1.AppCallback).

Chosen when `app.callback_api == "dapr"` (`--app-protocol grpc` with `--app-port`) and
registered with the runtime's app channels: pub/sub delivery (ListTopicSubscriptions,
OnTopicEvent), input bindings (ListInputBindings, OnBindingEvent) and service invocation
(OnInvoke) share one connection, and the rules on the
app's answers (ack, retry, drop, unreachable, timeout) are those of runtime/appchannel.py, the
same as for Layotto apps.

Topic routing: Dapr apps may route a topic's events to several handlers (`routes.rules`, each
a CEL `match` and a `path`); the subscription picks the event's route
(`layotto.runtime.subscriptions`) and it is sent as the event's `path`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf import any_pb2, empty_pb2, struct_pb2

from layotto.api.state import set_request
from layotto.core.cloudevents import Event
from layotto.runtime.appchannel import BindingReply, GrpcAppChannel, event_fields
from layotto.runtime.invoke import InvokeRequest, InvokeResponse, call_headers
from layotto.runtime.subscriptions import Rule, TopicSubscription, envelope_of, with_dead_letter
from layotto_proto.dapr.proto.common.v1 import common_pb2
from layotto_proto.dapr.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_proto.dapr.proto.runtime.v1 import appcallback_pb2_grpc as cb_grpc

_STANDARD = frozenset({"id", "source", "type", "specversion", "datacontenttype", "data", "data_base64"})


def topic_event_request(event: Event) -> cb.TopicEventRequest:
    """Dapr's TopicEventRequest: the event, its route as `path`, its CloudEvent extensions."""
    extensions = struct_pb2.Struct()
    for key, value in envelope_of(event).items():
        if key not in _STANDARD and isinstance(value, str | int | float | bool):
            extensions[key] = value
    return cb.TopicEventRequest(**event_fields(event), path=event.route, extensions=extensions)


class DaprAppChannel(GrpcAppChannel):
    """Dapr's AppCallback: subscriptions with their routes and dead-letter topic, events with
    their route's path and CloudEvent extensions, invocations with OnInvoke."""

    def __init__(self, target: str, connection: grpc.aio.Channel) -> None:
        super().__init__(target, connection)
        self._stub = cb_grpc.AppCallbackStub(connection)  # type: ignore[no-untyped-call]

    async def _subscriptions(self) -> list[TopicSubscription]:
        reply = await self._stub.ListTopicSubscriptions(empty_pb2.Empty(), timeout=5.0)
        return [
            TopicSubscription(
                s.pubsub_name,
                s.topic,
                with_dead_letter(s.metadata, s.dead_letter_topic),
                tuple(Rule(r.match, r.path) for r in s.routes.rules),
                s.routes.default,
            )
            for s in reply.subscriptions
        ]

    async def healthy(self, path: str, time_limit: float) -> bool:
        stub = cb_grpc.AppCallbackHealthCheckStub(self.connection)  # type: ignore[no-untyped-call]
        await stub.HealthCheck(empty_pb2.Empty(), timeout=time_limit)
        return True

    async def _input_bindings(self) -> list[str]:
        reply = await self._stub.ListInputBindings(empty_pb2.Empty(), timeout=5.0)
        return list(reply.bindings)

    async def _on_binding_event(
        self, name: str, data: bytes, metadata: Mapping[str, str], time_limit: float, headers: list[tuple[str, str]]
    ) -> BindingReply:
        request = cb.BindingEventRequest(name=name, data=data, metadata=dict(metadata))
        reply = await self._stub.OnBindingEvent(request, metadata=headers, timeout=time_limit)
        return BindingReply(
            to=list(reply.to),
            data=reply.data,
            parallel=reply.concurrency == cb.BindingEventResponse.PARALLEL,
            store_name=reply.store_name,
            # Read as SaveState reads its items, so that a reply stores what SaveState would.
            states=[set_request(item) for item in reply.states],
        )

    async def _on_topic_event(self, event: Event, time_limit: float, headers: list[tuple[str, str]]) -> int:
        reply = await self._stub.OnTopicEvent(topic_event_request(event), metadata=headers, timeout=time_limit)
        return int(reply.status)

    async def _on_invoke(self, request: InvokeRequest, budget: float) -> InvokeResponse:
        message = common_pb2.InvokeRequest(
            method=request.method, data=any_pb2.Any(value=request.data), content_type=request.content_type
        )
        if request.verb:
            message.http_extension.verb = common_pb2.HTTPExtension.Verb.Value(request.verb)
            message.http_extension.querystring = request.querystring
        call: Any = self._stub.OnInvoke(message, metadata=tuple(request.headers), timeout=budget)
        reply = await call
        headers = await call.initial_metadata()
        return InvokeResponse(
            data=reply.data.value, content_type=reply.content_type, headers=call_headers(headers or ())
        )
