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

Bulk subscriptions (`bulk_subscribe` in ListTopicSubscriptions, or declared) get their events in
batches through OnBulkTopicEvent, as daprd calls it: AppCallbackAlpha's OnBulkTopicEventAlpha1
when the app does not implement it (which one serves is remembered); UNIMPLEMENTED from both
drops the batch, as UNIMPLEMENTED drops one event.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf import any_pb2, empty_pb2, struct_pb2

from layotto.api.state import set_request
from layotto.config.model import BulkSubscribeSpec
from layotto.core.cloudevents import CLOUDEVENTS_CONTENT_TYPE, OCTET_STREAM, Event
from layotto.runtime.appchannel import (
    BULK_EVENT_TYPE,
    BindingReply,
    BulkDelivery,
    GrpcAppChannel,
    Status,
    bulk_headers,
    cloudevent_of,
    event_fields,
    status_of,
)
from layotto.runtime.invoke import InvokeRequest, InvokeResponse, call_headers
from layotto.runtime.subscriptions import Rule, TopicSubscription, envelope_of, with_dead_letter
from layotto_proto.dapr.proto.common.v1 import common_pb2
from layotto_proto.dapr.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_proto.dapr.proto.runtime.v1 import appcallback_pb2_grpc as cb_grpc

log = logging.getLogger("layotto.appchannel")

_STANDARD = frozenset({"id", "source", "type", "specversion", "datacontenttype", "data", "data_base64"})


def _extension_values(envelope: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in envelope.items() if k not in _STANDARD and isinstance(v, str | int | float | bool)}


def _extensions(envelope: Mapping[str, Any]) -> struct_pb2.Struct:
    extensions = struct_pb2.Struct()
    extensions.update(_extension_values(envelope))
    return extensions


def topic_event_request(event: Event) -> cb.TopicEventRequest:
    """Dapr's TopicEventRequest: the event, its route as `path`, its CloudEvent extensions."""
    return cb.TopicEventRequest(**event_fields(event), path=event.route, extensions=_extensions(envelope_of(event)))


def topic_event_bulk_request(bulk: BulkDelivery) -> cb.TopicEventBulkRequest:
    """Dapr's TopicEventBulkRequest: each entry a CloudEvent (its fields as OnTopicEvent has
    them), or the bytes of a raw payload."""
    request = cb.TopicEventBulkRequest(
        id=bulk.id,
        metadata=bulk.metadata,
        topic=bulk.topic,
        pubsub_name=bulk.pubsub_name,
        type=BULK_EVENT_TYPE,
        path=bulk.route,
    )
    add = request.entries.add
    # Filled in place, field by field: building each message and copying it in costs thrice.
    for entry in bulk.entries:
        event, envelope = entry.event, cloudevent_of(entry, bulk.raw_payload)
        item = add(entry_id=entry.entry_id)
        if entry.metadata:
            item.metadata.update(entry.metadata)
        if envelope is None:
            item.bytes = event.data
            item.content_type = OCTET_STREAM
            continue
        ce = item.cloud_event
        ce.id = event.id
        ce.source = event.source
        ce.type = event.type
        ce.spec_version = event.spec_version
        ce.data_content_type = event.data_content_type
        ce.data = event.data
        ce.extensions.update(_extension_values(envelope))
        item.content_type = CLOUDEVENTS_CONTENT_TYPE
    return request


def _bulk_settings(subscription: cb.TopicSubscription) -> BulkSubscribeSpec | None:
    if not subscription.HasField("bulk_subscribe"):
        return None
    bulk = subscription.bulk_subscribe
    return BulkSubscribeSpec(bulk.enabled, max(0, bulk.max_messages_count), max(0, bulk.max_await_duration_ms))


class DaprAppChannel(GrpcAppChannel):
    """Dapr's AppCallback: subscriptions with their routes and dead-letter topic, events with
    their route's path and CloudEvent extensions, invocations with OnInvoke."""

    def __init__(self, target: str, connection: grpc.aio.Channel) -> None:
        super().__init__(target, connection)
        self._stub = cb_grpc.AppCallbackStub(connection)  # type: ignore[no-untyped-call]
        self._alpha = cb_grpc.AppCallbackAlphaStub(connection)  # type: ignore[no-untyped-call]
        #: The bulk callback the app answered last (None: OnBulkTopicEvent is tried first).
        self._bulk_call: Any = None

    async def _subscriptions(self) -> list[TopicSubscription]:
        reply = await self._stub.ListTopicSubscriptions(empty_pb2.Empty(), timeout=5.0)
        return [
            TopicSubscription(
                s.pubsub_name,
                s.topic,
                with_dead_letter(s.metadata, s.dead_letter_topic),
                tuple(Rule(r.match, r.path) for r in s.routes.rules),
                s.routes.default,
                _bulk_settings(s),
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

    async def deliver_bulk(self, bulk: BulkDelivery, time_limit: float) -> dict[str, Status]:
        request = topic_event_bulk_request(bulk)
        headers = bulk_headers(bulk)
        calls = [self._bulk_call] if self._bulk_call is not None else []
        calls += [c for c in (self._stub.OnBulkTopicEvent, self._alpha.OnBulkTopicEventAlpha1) if c not in calls]
        for call in calls:
            try:
                reply = await call(request, metadata=headers, timeout=time_limit)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    continue
                log.debug("error from the app for bulk event %s: %s %s", bulk.id, exc.code().name, exc.details())
                return {}
            self._bulk_call = call
            return {answer.entry_id: status_of(answer.status) for answer in reply.statuses}
        log.warning("the app implements neither OnBulkTopicEvent nor OnBulkTopicEventAlpha1: bulk event %s", bulk.id)
        return {entry.entry_id: Status.NOT_HANDLED for entry in bulk.entries}

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
