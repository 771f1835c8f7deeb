"""The sidecar's channel to its app: everything the runtime asks of the app, over one connection.

The runtime asks the app for the topics it subscribes to, delivers events to it and invokes its
methods. Which callback API the app serves on `grpc_callback_port` is chosen by
`app.callback_api`, among the channels the sidecar gives the runtime: "layotto"
(spec.proto.runtime.v1.AppCallback, here) and "dapr" (the Dapr API's). With `app.http_port`, invocations go over
HTTP instead, as with upstream's HTTP channel; events still go over gRPC.

The sidecar opens one channel (`open_app_channel`) and hands it to its users, event delivery and
the invocation engine, so they share one gRPC connection; the sidecar closes it once both are done.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import grpc
from google.protobuf import any_pb2, empty_pb2

from layotto.core.cloudevents import Event
from layotto.errors import ConfigError
from layotto.observability import tracing
from layotto.runtime.invoke import (
    GRPC_CHANNEL_OPTIONS,
    InvokeError,
    InvokeRequest,
    InvokeResponse,
    call_headers,
    joined,
    refused,
    short_reason,
    timeout_error,
)
from layotto.runtime.runtime import Runtime
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2_grpc as cb_grpc

if TYPE_CHECKING:  # aiohttp costs ~10 MB of RSS: imported only when an HTTP app channel is used
    import aiohttp

log = logging.getLogger("layotto.appchannel")


class Status(enum.IntEnum):
    """The app's verdict on an event."""

    SUCCESS = 0
    RETRY = 1
    DROP = 2


@dataclass(frozen=True)
class TopicSubscription:
    pubsub_name: str
    topic: str
    metadata: Mapping[str, str] = field(default_factory=dict)


def status_of(value: int) -> Status:
    """The app's answer; an unknown value is RETRY (upstream: unknown status -> redelivery)."""
    try:
        return Status(value)
    except ValueError:
        log.warning("unknown status %d returned by the app; the event will be redelivered", value)
        return Status.RETRY


class AppChannel(Protocol):
    """What the runtime asks of the app. `deliver` returns the app's verdict (it may raise:
    counted as RETRY); `invoke` raises InvokeError with the code to answer the caller."""

    async def list_subscriptions(self) -> list[TopicSubscription]: ...
    async def deliver(self, event: Event, time_limit: float) -> Status: ...
    async def invoke(self, request: InvokeRequest, budget: float) -> InvokeResponse: ...
    async def close(self) -> None: ...


#: Builds the channel of a callback API on the app's (shared) gRPC connection; the channel
#: owns the connection from then on and closes it in `close()`.
AppChannelFactory = Callable[[str, grpc.aio.Channel], AppChannel]


def event_headers(event: Event) -> list[tuple[str, str]]:
    """Metadata of an event's callback: the delivery span's trace when tracing is on, else the
    envelope's own `traceparent`, so the app continues the publisher's trace either way."""
    headers = tracing.inject([])
    if not headers and event.traceparent:
        headers = [(tracing.TRACEPARENT, event.traceparent)]
    return headers


class GrpcAppChannel:
    """The rules every gRPC callback API shares; subclasses build and read its messages.

    - ListTopicSubscriptions answered UNIMPLEMENTED: the app subscribes to nothing.
    - OnTopicEvent answered UNIMPLEMENTED: DROP (redelivering would not help); any other
      error: RETRY.
    - OnInvoke: a deadline is a timeout error, a refused connection is UNAVAILABLE and
      retriable (the call cannot have reached the app), anything else is the app's answer.
    """

    #: What to answer when the app does not implement OnInvoke; "" passes its status through.
    unimplemented_invoke = ""

    def __init__(self, target: str, connection: grpc.aio.Channel) -> None:
        self.target = target
        self.connection = connection

    async def _subscriptions(self) -> list[TopicSubscription]:
        raise NotImplementedError

    async def _on_topic_event(self, event: Event, time_limit: float, headers: list[tuple[str, str]]) -> int:
        raise NotImplementedError

    async def _on_invoke(self, request: InvokeRequest, budget: float) -> InvokeResponse:
        raise NotImplementedError

    async def list_subscriptions(self) -> list[TopicSubscription]:
        try:
            return await self._subscriptions()
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return []  # the app is up and subscribes to nothing
            raise

    async def deliver(self, event: Event, time_limit: float) -> Status:
        try:
            status = await self._on_topic_event(event, time_limit, event_headers(event))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                log.warning("non-retriable error from the app for event %s: %s", event.id, exc.details())
                return Status.DROP
            log.debug("error from the app for event %s: %s %s", event.id, exc.code().name, exc.details())
            return Status.RETRY
        return status_of(status)

    async def invoke(self, request: InvokeRequest, budget: float) -> InvokeResponse:
        try:
            return await self._on_invoke(request, budget)
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code(), exc.details() or ""
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise timeout_error(request, budget) from None
            if code == grpc.StatusCode.UNAVAILABLE and refused(details):
                raise InvokeError(
                    code,
                    f"app '{request.app_id}' at {self.target} is unreachable: {short_reason(details)}",
                    reached=False,
                ) from None
            if code == grpc.StatusCode.UNIMPLEMENTED and self.unimplemented_invoke:
                raise InvokeError(code, f"app '{request.app_id}' {self.unimplemented_invoke}") from None
            # The app's own answer reaches the caller as the app gave it.
            raise InvokeError(code, details) from None

    async def close(self) -> None:
        await self.connection.close(None)


def event_fields(event: Event) -> dict[str, Any]:
    """The fields Layotto's and Dapr's TopicEventRequest both have, from `event`."""
    return {
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "spec_version": event.spec_version,
        "data_content_type": event.data_content_type,
        "topic": event.topic,
        "data": event.data,
        "pubsub_name": event.pubsub_name,
    }


def topic_event_request(event: Event) -> cb.TopicEventRequest:
    return cb.TopicEventRequest(**event_fields(event), metadata=event.metadata)


class LayottoAppChannel(GrpcAppChannel):
    """spec.proto.runtime.v1.AppCallback."""

    unimplemented_invoke = "does not implement spec.proto.runtime.v1.AppCallback/OnInvoke"

    def __init__(self, target: str, connection: grpc.aio.Channel) -> None:
        super().__init__(target, connection)
        self._stub = cb_grpc.AppCallbackStub(connection)

    async def _subscriptions(self) -> list[TopicSubscription]:
        reply = await self._stub.ListTopicSubscriptions(empty_pb2.Empty(), timeout=5.0)
        return [TopicSubscription(s.pubsub_name, s.topic, dict(s.metadata)) for s in reply.subscriptions]

    async def _on_topic_event(self, event: Event, time_limit: float, headers: list[tuple[str, str]]) -> int:
        reply = await self._stub.OnTopicEvent(topic_event_request(event), metadata=headers, timeout=time_limit)
        return int(reply.status)

    async def _on_invoke(self, request: InvokeRequest, budget: float) -> InvokeResponse:
        message = cb.AppInvokeRequest(
            method=request.method,
            data=any_pb2.Any(value=request.data),
            content_type=request.content_type,
            http_verb=request.verb,
            querystring=request.querystring,
            metadata=joined(request.headers),
        )
        reply = await self._stub.OnInvoke(message, timeout=budget)
        return InvokeResponse(
            data=reply.data.value, content_type=reply.content_type, headers=call_headers(reply.metadata.items())
        )


class HttpAppChannel:
    """Invocations over HTTP to the app's `http_port`, as upstream's MOSN http channel builds
    the request: method = verb (GET without an http_extension), path = method, query =
    querystring, body = data, headers = call metadata plus `id`. Anything but 200 is an error.
    Subscriptions and events go to `events`, the app's gRPC channel (if it has one)."""

    def __init__(self, rt: Runtime, events: AppChannel | None) -> None:
        app = rt.config.app
        self.base = f"http://{app.grpc_callback_host}:{app.http_port}"
        self.events = events
        self._session: aiohttp.ClientSession | None = None

    async def list_subscriptions(self) -> list[TopicSubscription]:
        return await self.events.list_subscriptions() if self.events is not None else []

    async def deliver(self, event: Event, time_limit: float) -> Status:
        if self.events is None:
            raise RuntimeError("the app has no gRPC callback port to deliver events to")
        return await self.events.deliver(event, time_limit)

    def _session_now(self) -> aiohttp.ClientSession:
        import aiohttp

        # Made on first use: a session must be created inside the running loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256), auto_decompress=False)
        return self._session

    async def invoke(self, request: InvokeRequest, budget: float) -> InvokeResponse:
        import aiohttp
        from yarl import URL

        path = quote(request.method.lstrip("/"), safe="/:@!$&'()*+,;=-._~%")
        url = f"{self.base}/{path}"
        if request.querystring:
            url += "?" + quote(request.querystring, safe="=&;:@!$'()*+,/?-._~%")
        headers = joined(request.headers)
        headers["id"] = request.app_id
        if request.content_type:
            headers["Content-Type"] = request.content_type
        verb = request.verb or "GET"
        try:
            async with self._session_now().request(
                verb,
                URL(url, encoded=True),
                data=request.data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=budget),
            ) as reply:
                body = await reply.read()
                status = reply.status
                content_type = reply.headers.get("Content-Type", "")
                reply_headers = call_headers(reply.headers.items())
        except aiohttp.ClientConnectorError as exc:
            raise InvokeError(
                grpc.StatusCode.UNAVAILABLE,
                f"app '{request.app_id}' at {self.base} is unreachable: {exc.strerror or exc}",
                reached=False,
            ) from None
        except TimeoutError:
            raise timeout_error(request, budget) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise InvokeError(grpc.StatusCode.UNAVAILABLE, f"app '{request.app_id}' at {self.base}: {exc}") from None
        if status != 200:
            raise InvokeError(
                grpc.StatusCode.UNAVAILABLE, f"http response code {status}, body: {body.decode(errors='replace')}"
            )
        return InvokeResponse(data=body, content_type=content_type, headers=reply_headers)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.events is not None:
            await self.events.close()


def open_app_channel(rt: Runtime) -> AppChannel | None:
    """A new channel to the app, or None when the app has neither callback port."""
    app = rt.config.app
    events: AppChannel | None = None
    if app.grpc_callback_port:
        callback_api = app.callback_api or "layotto"
        factory = rt.app_channels.get(callback_api)
        if factory is None:
            known = ", ".join(sorted(rt.app_channels))
            raise ConfigError(f"unknown app callback_api '{callback_api}' (known: {known})", rt.config.source)
        target = f"{app.grpc_callback_host}:{app.grpc_callback_port}"
        # Non-blocking dial: the channel connects (and reconnects) in the background.
        events = factory(target, grpc.aio.insecure_channel(target, options=GRPC_CHANNEL_OPTIONS))
    if app.http_port:
        return HttpAppChannel(rt, events)
    return events
