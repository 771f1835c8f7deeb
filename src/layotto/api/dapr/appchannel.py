"""Calls to apps that serve Dapr's AppCallback (dapr.proto.runtime.v1.AppCallback).

Chosen when `app.callback_api == "dapr"` (`--app-protocol grpc` with `--app-port`), and
plugged into the runtime's engines through their channel factories: pub/sub delivery
(ListTopicSubscriptions, OnTopicEvent; the outcome rules, ack, retry, drop, dead letter, are
the same as for Layotto apps) and service invocation (OnInvoke).

Topic routing: Dapr apps may route a topic's events to several handlers (`routes.rules`,
each a CEL `match` and a `path`). We evaluate the common form `event.<attr> == "<value>"`
(joined by `&&`); a rule we cannot evaluate never matches, and the default route is used.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import grpc
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import appcallback_pb2 as cb
from dapr.proto.runtime.v1 import appcallback_pb2_grpc as cb_grpc
from google.protobuf import any_pb2, empty_pb2, struct_pb2

from layotto.api.dapr import base as _base  # noqa: F401  (dapr import without its legacy warning)
from layotto.runtime import invoke
from layotto.runtime.cloudevents import Event
from layotto.runtime.delivery import Status, TopicSubscription, status_of
from layotto.runtime.runtime import Runtime

log = logging.getLogger("layotto.api.dapr.appchannel")

#: Subscription metadata keys we add to carry Dapr's extra subscription fields.
DEAD_LETTER_KEY = "deadLetterTopic"
_CLAUSE = re.compile(r"""^\s*event\.([A-Za-z_][A-Za-z0-9_]*)\s*==\s*(?:"([^"]*)"|'([^']*)')\s*$""")
_STANDARD = frozenset({"id", "source", "type", "specversion", "datacontenttype", "data", "data_base64"})


def _rule_matches(match: str, attributes: Mapping[str, Any]) -> bool:
    if not match.strip():
        return True
    for clause in match.split("&&"):
        found = _CLAUSE.match(clause)
        if found is None:
            return False
        expected = found.group(2) if found.group(2) is not None else found.group(3)
        if str(attributes.get(found.group(1), "")) != expected:
            return False
    return True


def _envelope(event: Event) -> dict[str, Any]:
    try:
        value = json.loads(event.raw) if event.raw else None
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class DaprAppChannel:
    """Dapr's AppCallback on grpc_callback_host:grpc_callback_port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = f"{host}:{port}"
        # Non-blocking dial: the channel connects (and reconnects) in the background.
        self._channel = grpc.aio.insecure_channel(self.target)
        self._stub = cb_grpc.AppCallbackStub(self._channel)  # type: ignore[no-untyped-call]
        #: (pubsub, topic) -> (rules [(match, path)], default path)
        self._routes: dict[tuple[str, str], tuple[list[tuple[str, str]], str]] = {}

    @property
    def stub(self) -> cb_grpc.AppCallbackStub:
        return self._stub

    async def list_subscriptions(self) -> list[TopicSubscription]:
        reply = await self._stub.ListTopicSubscriptions(empty_pb2.Empty(), timeout=5.0)
        out = []
        for s in reply.subscriptions:
            metadata = dict(s.metadata)
            if s.dead_letter_topic:
                metadata[DEAD_LETTER_KEY] = s.dead_letter_topic
            self._routes[(s.pubsub_name, s.topic)] = (
                [(r.match, r.path) for r in s.routes.rules],
                s.routes.default,
            )
            out.append(TopicSubscription(s.pubsub_name, s.topic, metadata))
        return out

    def _path(self, event: Event, envelope: Mapping[str, Any]) -> str:
        rules, default = self._routes.get((event.pubsub_name, event.topic), ([], ""))
        if rules:
            attributes = {
                **envelope,
                "id": event.id,
                "source": event.source,
                "type": event.type,
                "specversion": event.spec_version,
                "datacontenttype": event.data_content_type,
            }
            for match, path in rules:
                if _rule_matches(match, attributes):
                    return path
        return default

    def request(self, event: Event) -> cb.TopicEventRequest:
        envelope = _envelope(event)
        extensions = struct_pb2.Struct()
        for key, value in envelope.items():
            if key not in _STANDARD and isinstance(value, str | int | float | bool):
                extensions[key] = value
        return cb.TopicEventRequest(
            id=event.id,
            source=event.source,
            type=event.type,
            spec_version=event.spec_version,
            data_content_type=event.data_content_type,
            data=event.data,
            topic=event.topic,
            pubsub_name=event.pubsub_name,
            path=self._path(event, envelope),
            extensions=extensions,
        )

    async def deliver(self, event: Event, timeout: float) -> Status:  # noqa: ASYNC109  (the Protocol)
        try:
            reply = await self._stub.OnTopicEvent(self.request(event), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                # As daprd: the app has no handler for it, redelivering would not help.
                log.warning("non-retriable error from the app for event %s: %s", event.id, exc.details())
                return Status.DROP
            log.debug("error from the app for event %s: %s %s", event.id, exc.code().name, exc.details())
            return Status.RETRY
        return status_of(reply.status)

    async def close(self) -> None:
        await self._channel.close(None)


_REFUSED = ("failed to connect to all addresses", "connection refused", "connections to all backends failing")


class DaprInvokeChannel:
    """Service invocation delivered with Dapr's AppCallback/OnInvoke."""

    def __init__(self, rt: Runtime) -> None:
        app = rt.config.app
        self.target = f"{app.grpc_callback_host}:{app.grpc_callback_port}"
        self._channel = grpc.aio.insecure_channel(self.target)
        self._stub = cb_grpc.AppCallbackStub(self._channel)  # type: ignore[no-untyped-call]

    async def invoke(self, request: invoke.InvokeRequest, budget: float) -> invoke.InvokeResponse:
        message = common_pb2.InvokeRequest(
            method=request.method, data=any_pb2.Any(value=request.data), content_type=request.content_type
        )
        if request.verb:
            message.http_extension.verb = common_pb2.HTTPExtension.Verb.Value(request.verb)
            message.http_extension.querystring = request.querystring
        call: Any = self._stub.OnInvoke(message, metadata=tuple(request.headers), timeout=budget)
        try:
            reply = await call
            headers = await call.initial_metadata()
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code(), exc.details() or ""
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise invoke.timeout_error(request, budget) from None
            if code == grpc.StatusCode.UNAVAILABLE and any(s in details.lower() for s in _REFUSED):
                raise invoke.InvokeError(
                    code, f"app '{request.app_id}' at {self.target} is unreachable: {details}", reached=False
                ) from None
            # The app's own answer reaches the caller as the app gave it.
            raise invoke.InvokeError(code, details) from None
        return invoke.InvokeResponse(
            data=reply.data.value, content_type=reply.content_type, headers=invoke.call_headers(headers or ())
        )

    async def close(self) -> None:
        await self._channel.close(None)


def dapr_channel(rt: Runtime) -> DaprAppChannel:
    return DaprAppChannel(rt.config.app.grpc_callback_host, rt.config.app.grpc_callback_port)


def install() -> None:
    """Register the Dapr channels with the runtime's delivery and invocation factories."""
    from layotto.runtime import delivery

    delivery.register_app_channel("dapr", dapr_channel)
    invoke.register_app_channel("dapr", DaprInvokeChannel)
