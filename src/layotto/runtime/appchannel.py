"""The sidecar's channel to its app: everything the runtime asks of the app, over one connection.

The runtime asks the app for the topics it subscribes to, delivers events to it and invokes its
methods. Which callback API the app serves on `grpc_callback_port` is chosen by
`app.callback_api`, among the channels the sidecar gives the runtime: "layotto"
(spec.proto.runtime.v1.AppCallback, here) and "dapr" (the Dapr API's); left empty, both are
asked and the one the app implements serves (`DetectingAppChannel`). With `app.http_port`,
invocations go over HTTP, as with upstream's HTTP channel, and so do events when the app has
no gRPC callback port: Dapr's HTTP app protocol (`GET /dapr/subscribe`, events POSTed to their
route).

The sidecar opens one channel (`open_app_channel`) and hands it to its users, event delivery and
the invocation engine, so they share one gRPC connection; the sidecar closes it once both are done.

Bulk subscriptions hand the app a batch of events in one callback (`deliver_bulk`): Dapr's
OnBulkTopicEvent (OnBulkTopicEventAlpha1 for older apps) or, over HTTP, Dapr's bulk body POSTed
to the route; the app answers a status per entry. Layotto's AppCallback has no bulk callback:
its apps get the batch's events one by one, all at once.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import grpc
from google.protobuf import any_pb2, empty_pb2

from layotto.components.state.base import SetRequest
from layotto.core.cloudevents import CLOUDEVENTS_CONTENT_TYPE, OCTET_STREAM, Event, encode
from layotto.core.gojson import stringify
from layotto.core.state import etag_of
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
from layotto.runtime.subscriptions import TopicSubscription, envelope_of, from_documents
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2_grpc as cb_grpc

if TYPE_CHECKING:  # aiohttp costs ~10 MB of RSS: imported only when an HTTP app channel is used
    import aiohttp

log = logging.getLogger("layotto.appchannel")


class Status(enum.IntEnum):
    """The app's verdict on an event (0-2 as the callback protos number them)."""

    SUCCESS = 0
    RETRY = 1
    DROP = 2
    #: The app has no handler for the event (gRPC UNIMPLEMENTED, HTTP 404): dropped, as by
    #: daprd, but not dead-lettered, since the app did not look at it. Never sent by an app.
    NOT_HANDLED = -1


_APP_STATUSES = frozenset({Status.SUCCESS, Status.RETRY, Status.DROP})


def status_of(value: int) -> Status:
    """The app's answer; an unknown value is RETRY (upstream: unknown status -> redelivery)."""
    if value in _APP_STATUSES:
        return Status(value)
    log.warning("unknown status %d returned by the app; the event will be redelivered", value)
    return Status.RETRY


@dataclass
class BindingReply:
    """The app's answer to an input binding's event (Dapr's BindingEventResponse, or the JSON
    body of an HTTP app's 2xx): save `states` to the state store `store_name`, and write `data`
    to the output bindings `to`, one after the other or all at once (`parallel`)."""

    to: list[str] = field(default_factory=list)
    data: bytes = b""
    parallel: bool = False
    store_name: str = ""
    #: Each with the app's key, as a SaveState request carries it.
    states: list[SetRequest] = field(default_factory=list)


class BindingEventError(Exception):
    """The app failed an input binding's event (a non-2xx answer, a callback API without input
    bindings); a gRPC error from the app is raised as it is."""


#: Dapr's `type` of a bulk delivery (contrib's DefaultBulkEventType).
BULK_EVENT_TYPE = "com.dapr.event.sent.bulk"
#: The metadata key of a bulk delivery that names its pubsub (daprd's MetadataKeyPubSub).
BULK_PUBSUB_KEY = "pubsubName"


@dataclass
class BulkEntry:
    """One event of a bulk delivery, under the id the app answers it by."""

    entry_id: str
    event: Event
    #: The message's headers as the backend gave them.
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass
class BulkDelivery:
    """One bulk callback: events of one subscription for one route of the app (Dapr's
    TopicEventBulkRequest, or the JSON body of the bulk HTTP route)."""

    id: str
    pubsub_name: str
    topic: str
    route: str
    entries: list[BulkEntry]
    #: The subscription takes raw payloads: every entry goes as bytes, none as a CloudEvent.
    raw_payload: bool = False

    @property
    def metadata(self) -> dict[str, str]:
        return {BULK_PUBSUB_KEY: self.pubsub_name}


def cloudevent_of(entry: BulkEntry, raw_payload: bool) -> dict[str, Any] | None:
    """The entry's CloudEvent envelope, or None when it goes as bytes (a raw payload, or a
    message that is no CloudEvent, delivered as it is rather than redelivered forever)."""
    if raw_payload:
        return None
    envelope = envelope_of(entry.event)
    return envelope if envelope.get("specversion") else None


class AppChannel(Protocol):
    """What the runtime asks of the app. `deliver` returns the app's verdict (it may raise:
    counted as RETRY); `invoke` raises InvokeError with the code to answer the caller.

    `deliver_bulk` returns the app's verdict on each entry it answered, by entry id; an entry
    left out is RETRY. It may raise: every entry is RETRY then.

    Input bindings: `list_input_bindings(routes)` is the names, among `routes` (binding name ->
    the HTTP path its events go to), that the app takes events of; `deliver_binding` hands one
    event to the app and returns its reply, or raises when the app failed the event."""

    async def list_subscriptions(self) -> list[TopicSubscription]: ...
    async def deliver(self, event: Event, time_limit: float) -> Status: ...
    async def deliver_bulk(self, bulk: BulkDelivery, time_limit: float) -> dict[str, Status]: ...
    async def healthy(self, path: str, time_limit: float) -> bool:
        """Whether the app passes a health probe (`path`: an HTTP app's probe route)."""
        ...

    async def invoke(self, request: InvokeRequest, budget: float) -> InvokeResponse: ...
    async def list_input_bindings(self, routes: Mapping[str, str]) -> set[str]: ...
    async def deliver_binding(
        self, name: str, data: bytes, metadata: Mapping[str, str], time_limit: float, *, route: str = ""
    ) -> BindingReply: ...
    async def close(self) -> None: ...


#: Builds the channel of a callback API on the app's (shared) gRPC connection; the channel
#: owns the connection from then on and closes it in `close()`.
AppChannelFactory = Callable[[str, grpc.aio.Channel], AppChannel]


def event_headers(event: Event) -> list[tuple[str, str]]:
    """Metadata of an event's callback: the delivery span's trace when tracing is on, else the
    envelope's own `traceparent`, so the app continues the publisher's trace either way."""
    return traced_headers(event.traceparent)


def traced_headers(traceparent: str) -> list[tuple[str, str]]:
    """The current span's trace headers, else `traceparent` (the event's own) when it has one."""
    headers = tracing.inject([])
    if not headers and traceparent:
        headers = [(tracing.TRACEPARENT, traceparent)]
    return headers


def bulk_headers(bulk: BulkDelivery) -> list[tuple[str, str]]:
    """A bulk callback's trace headers: the current span's, else the last traced event's (daprd
    hands the app the context of the last event's span)."""
    traced = [entry.event.traceparent for entry in bulk.entries if entry.event.traceparent]
    return traced_headers(traced[-1] if traced else "")


async def deliver_each(channel: AppChannel, bulk: BulkDelivery, time_limit: float) -> dict[str, Status]:
    """A bulk delivery to an app whose callback API takes one event per call: all of them at
    once, each with its own verdict."""
    answers = await asyncio.gather(
        *(channel.deliver(entry.event, time_limit) for entry in bulk.entries), return_exceptions=True
    )
    out: dict[str, Status] = {}
    for entry, answer in zip(bulk.entries, answers, strict=True):
        if isinstance(answer, asyncio.CancelledError):
            raise answer
        if isinstance(answer, BaseException):
            log.debug("delivering event %s failed: %r", entry.event.id, answer)
            continue  # left out: RETRY
        out[entry.entry_id] = answer
    return out


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

    async def healthy(self, path: str, time_limit: float) -> bool:
        """The standard gRPC health service (grpc.health.v1), as a Layotto app would serve it."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        reply = await health_pb2_grpc.HealthStub(self.connection).Check(
            health_pb2.HealthCheckRequest(), timeout=time_limit
        )
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def _input_bindings(self) -> list[str]:
        """The app's input bindings; a callback API without them (Layotto's) has none."""
        return []

    async def _on_binding_event(
        self, name: str, data: bytes, metadata: Mapping[str, str], time_limit: float, headers: list[tuple[str, str]]
    ) -> BindingReply:
        raise BindingEventError(f"{type(self).__name__}: the callback API has no input bindings")

    async def list_input_bindings(self, routes: Mapping[str, str]) -> set[str]:
        try:
            listed = await self._input_bindings()
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return set()  # the app is up and takes no input binding events
            raise
        return {name for name in listed if name in routes}

    async def deliver_binding(
        self, name: str, data: bytes, metadata: Mapping[str, str], time_limit: float, *, route: str = ""
    ) -> BindingReply:
        headers = traced_headers(metadata.get(tracing.TRACEPARENT, ""))
        return await self._on_binding_event(name, data, metadata, time_limit, headers)

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
                return Status.NOT_HANDLED
            log.debug("error from the app for event %s: %s %s", event.id, exc.code().name, exc.details())
            return Status.RETRY
        return status_of(status)

    async def deliver_bulk(self, bulk: BulkDelivery, time_limit: float) -> dict[str, Status]:
        """The callback APIs without a bulk callback (Layotto's) take the events one by one."""
        return await deliver_each(self, bulk, time_limit)

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


class DetectingAppChannel:
    """An app whose callback API is not configured: each candidate (Layotto's AppCallback
    first, then Dapr's, on one connection) is asked in turn, and the first that the app
    implements serves from then on: upstream Layotto with its Dapr API on asks both."""

    def __init__(self, candidates: list[GrpcAppChannel]) -> None:
        self.candidates = candidates
        self.chosen: GrpcAppChannel | None = None
        #: The candidate that listed input bindings: it gets their events.
        self.inputs: GrpcAppChannel | None = None

    async def list_subscriptions(self) -> list[TopicSubscription]:
        for channel in self._in_turn():
            try:
                found = await channel._subscriptions()
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    continue
                raise
            self.chosen = channel
            return found
        return []  # the app is up and implements no subscription listing: it subscribes to nothing

    async def deliver(self, event: Event, time_limit: float) -> Status:
        return await (self.chosen or self.candidates[0]).deliver(event, time_limit)

    async def deliver_bulk(self, bulk: BulkDelivery, time_limit: float) -> dict[str, Status]:
        return await (self.chosen or self.candidates[0]).deliver_bulk(bulk, time_limit)

    async def list_input_bindings(self, routes: Mapping[str, str]) -> set[str]:
        for channel in self._in_turn():
            listed = await channel.list_input_bindings(routes)
            if listed:
                self.inputs = channel
                return listed
        return set()

    async def deliver_binding(
        self, name: str, data: bytes, metadata: Mapping[str, str], time_limit: float, *, route: str = ""
    ) -> BindingReply:
        channel = self.inputs or self.chosen or self.candidates[0]
        return await channel.deliver_binding(name, data, metadata, time_limit, route=route)

    async def invoke(self, request: InvokeRequest, budget: float) -> InvokeResponse:
        last: InvokeError | None = None
        for channel in self._in_turn():
            try:
                reply = await channel.invoke(request, budget)
            except InvokeError as exc:
                if exc.code == grpc.StatusCode.UNIMPLEMENTED:
                    last = exc
                    continue
                raise
            self.chosen = channel
            return reply
        assert last is not None
        raise last

    async def healthy(self, path: str, time_limit: float) -> bool:
        for channel in self._in_turn():
            try:
                return await channel.healthy(path, time_limit)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
        return False

    def _in_turn(self) -> list[GrpcAppChannel]:
        return [self.chosen] if self.chosen is not None else self.candidates

    async def close(self) -> None:
        # The candidates share one connection: closing one closes it.
        await self.candidates[0].close()


#: The content type of an event POSTed to an HTTP app, as daprd sends it.
CLOUDEVENT_JSON = "application/cloudevents+json"
#: The app's answer to an event in the body of a 2xx reply; none (or not JSON) means SUCCESS.
_HTTP_STATUSES = {"": Status.SUCCESS, "SUCCESS": Status.SUCCESS, "RETRY": Status.RETRY, "DROP": Status.DROP}
#: An entry's status in the app's answer to a bulk delivery, as daprd compares them (exactly);
#: an empty or unknown one is RETRY.
_BULK_HTTP_STATUSES = {"SUCCESS": Status.SUCCESS, "RETRY": Status.RETRY, "DROP": Status.DROP}


class HttpAppChannel:
    """Invocations over HTTP to the app's `http_port`, as upstream's MOSN http channel builds
    the request: method = verb (GET without an http_extension), path = method, query =
    querystring, body = data, headers = call metadata plus `id`. Anything but 200 is an error.

    Subscriptions and events go to `events`, the app's gRPC channel, when it has one; else over
    HTTP as daprd does it: `GET /dapr/subscribe` lists them, each event is POSTed to its route
    as a CloudEvent, and the answer is the body's `{"status": ...}` on a 2xx, DROP on a 404,
    RETRY otherwise. A bulk delivery is one POST of Dapr's bulk body to the route, answered by
    `{"statuses": [{"entryId", "status"}]}` (a 404: every entry dropped; any other failure,
    or a 2xx body that is not that: every entry retried)."""

    def __init__(self, rt: Runtime, events: AppChannel | None) -> None:
        app = rt.config.app
        self.base = f"http://{app.grpc_callback_host}:{app.http_port}"
        self.events = events
        self._session: aiohttp.ClientSession | None = None

    async def list_subscriptions(self) -> list[TopicSubscription]:
        if self.events is not None:
            return await self.events.list_subscriptions()
        import aiohttp

        url = f"{self.base}/dapr/subscribe"
        async with self._session_now().get(url, timeout=aiohttp.ClientTimeout(total=5.0)) as reply:
            if reply.status == 404:
                return []  # the app is up and has no subscription route: it subscribes to nothing
            if reply.status != 200:
                raise RuntimeError(f"GET {url} answered {reply.status}")
            documents = await reply.json(content_type=None)
        return from_documents(documents, f"GET {url}")

    async def healthy(self, path: str, time_limit: float) -> bool:
        import aiohttp

        url = f"{self.base}/{path.lstrip('/')}"
        async with self._session_now().get(url, timeout=aiohttp.ClientTimeout(total=time_limit)) as reply:
            return 200 <= reply.status <= 299

    async def deliver(self, event: Event, time_limit: float) -> Status:
        if self.events is not None:
            return await self.events.deliver(event, time_limit)
        headers = {"Content-Type": CLOUDEVENT_JSON, "pubsubname": event.pubsub_name}
        headers.update(event_headers(event))
        route, what = event.route or event.topic, f"event {event.id}"
        status, body = await self._post_event(route, _cloudevent_body(event), headers, time_limit, what)
        if 200 <= status <= 299:
            return _http_verdict(event, body)
        return Status.NOT_HANDLED if status == 404 else Status.RETRY

    async def deliver_bulk(self, bulk: BulkDelivery, time_limit: float) -> dict[str, Status]:
        if self.events is not None:
            return await self.events.deliver_bulk(bulk, time_limit)
        headers = {"Content-Type": "application/json", "pubsubname": bulk.pubsub_name}
        headers.update(bulk_headers(bulk))
        route, what = bulk.route or bulk.topic, f"bulk event {bulk.id}"
        status, body = await self._post_event(route, bulk_http_body(bulk), headers, time_limit, what)
        if 200 <= status <= 299:
            return bulk_http_verdicts(bulk, body)
        if status == 404:
            return {entry.entry_id: Status.NOT_HANDLED for entry in bulk.entries}
        return {}

    async def _post_event(
        self, route: str, data: bytes, headers: dict[str, str], time_limit: float, what: str
    ) -> tuple[int, bytes]:
        """POST an event (or a bulk of them: `what`, for the log) to the app's `route`: the
        answer's status and body."""
        import aiohttp

        async with self._session_now().post(
            f"{self.base}/{quote(route.lstrip('/'), safe='/')}",
            data=data,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=time_limit),
        ) as reply:
            status, body = reply.status, await reply.read()
        # daprd's reading of an answer that is not 2xx: 404 is final, anything else is retried.
        if status == 404:
            log.warning("non-retriable error from the app for %s: 404 %s", what, body[:200])
        elif not 200 <= status <= 299:
            log.warning("retriable error from the app for %s: %d %s", what, status, body[:200])
        return status, body

    async def list_input_bindings(self, routes: Mapping[str, str]) -> set[str]:
        """As daprd: the app takes a binding's events when `OPTIONS /<route>` answers 2xx or
        405 (the route exists for other methods)."""
        if self.events is not None:
            return await self.events.list_input_bindings(routes)
        import aiohttp

        found = set()
        for name, route in routes.items():
            url = self._route_url(route or name)
            async with self._session_now().options(url, timeout=aiohttp.ClientTimeout(total=5.0)) as reply:
                if 200 <= reply.status <= 299 or reply.status == 405:
                    found.add(name)
        return found

    async def deliver_binding(
        self, name: str, data: bytes, metadata: Mapping[str, str], time_limit: float, *, route: str = ""
    ) -> BindingReply:
        """POST the data to the binding's route, its metadata as headers, as daprd does; a 2xx
        takes the event (its JSON body may be a reply), anything else fails it."""
        if self.events is not None:
            return await self.events.deliver_binding(name, data, metadata, time_limit, route=route)
        import aiohttp

        headers = {k: v for k, v in metadata.items() if _header_safe(k) and _header_safe(v)}
        headers["Content-Type"] = "application/json"
        headers.update(traced_headers(metadata.get(tracing.TRACEPARENT, "")))
        async with self._session_now().post(
            self._route_url(route or name), data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=time_limit)
        ) as reply:
            body = await reply.read()
            if not 200 <= reply.status <= 299:
                raise BindingEventError(
                    f"fails to send binding event to http app channel, status code: {reply.status}"
                    f" body: {body[:200].decode(errors='replace')}"
                )
        return http_binding_reply(body)

    def _route_url(self, route: str) -> str:
        return f"{self.base}/{quote(route.lstrip('/'), safe='/')}"

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


def _cloudevent_body(event: Event) -> bytes:
    """The event as the app receives it over HTTP: its envelope as published, or a raw payload
    wrapped as daprd wraps one (`data_base64`)."""
    if envelope_of(event).get("specversion"):
        return event.raw
    return encode(
        {
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "specversion": event.spec_version,
            "datacontenttype": event.data_content_type,
            "data_base64": base64.b64encode(event.data).decode(),
            "topic": event.topic,
            "pubsubname": event.pubsub_name,
        }
    )


def bulk_http_body(bulk: BulkDelivery) -> bytes:
    """Dapr's bulk body (NewBulkSubscribeEnvelope, keys in the order Go writes a map): each
    entry's `event` is its CloudEvent as published (the bytes read from the backend, which are
    JSON), else its data in base64."""
    entries = []
    for entry in bulk.entries:
        envelope = cloudevent_of(entry, bulk.raw_payload)
        raw = entry.event.raw
        if envelope is None:
            event, content_type = _json(base64.b64encode(entry.event.data).decode()), OCTET_STREAM
        elif raw.lstrip()[:1] == b"{":  # UTF-8 JSON: spliced in as it is
            event, content_type = raw, CLOUDEVENTS_CONTENT_TYPE
        else:
            event, content_type = encode(envelope), CLOUDEVENTS_CONTENT_TYPE
        entries.append(
            b'{"entryId":%s,"event":%s,"metadata":%s,"contentType":%s}'
            % (_json(entry.entry_id), event, encode(dict(entry.metadata)), _json(content_type))
        )
    rest = {
        "id": bulk.id,
        "metadata": bulk.metadata,
        "pubsubname": bulk.pubsub_name,
        "topic": bulk.topic,
        "type": BULK_EVENT_TYPE,
    }
    return b'{"entries":[' + b",".join(entries) + b"]," + encode(rest)[1:]


_JSON_TEXT = json.JSONEncoder(ensure_ascii=False)


def _json(text: str) -> bytes:
    return _JSON_TEXT.encode(text).encode()


def bulk_http_verdicts(bulk: BulkDelivery, body: bytes) -> dict[str, Status]:
    """The app's `{"statuses": [{"entryId", "status"}]}` (names in any case, as Go decodes
    them); a body that is not one answers nothing (every entry RETRY), as daprd."""
    try:
        answer = json.loads(body)
    except ValueError:
        log.warning("the app's answer to bulk event %s is not JSON: %.200r; every entry is retried", bulk.id, body)
        return {}
    statuses = _folded(answer, "statuses") if isinstance(answer, dict) else None
    if not isinstance(statuses, list):
        if statuses is not None or not isinstance(answer, dict):
            log.warning("the app's answer to bulk event %s has no statuses list: %.200r", bulk.id, body)
        return {}
    out: dict[str, Status] = {}
    for item in statuses:
        entry_id = _folded(item, "entryId") if isinstance(item, dict) else None
        status = _folded(item, "status") if isinstance(item, dict) else None
        if not isinstance(entry_id, str):
            log.warning("the app's answer to bulk event %s holds an entry without an id: %.200r", bulk.id, item)
            continue
        verdict = _BULK_HTTP_STATUSES.get(status) if isinstance(status, str) else None
        if verdict is None:
            if status:
                log.warning("unknown status %r from the app for entry %s; it will be redelivered", status, entry_id)
            verdict = Status.RETRY
        out[entry_id] = verdict
    return out


def _folded(values: Mapping[str, Any], name: str) -> Any:
    lowered = name.lower()
    for key, value in values.items():
        if isinstance(key, str) and key.lower() == lowered:
            return value
    return None


def _http_verdict(event: Event, body: bytes) -> Status:
    try:
        answer = json.loads(body) if body.strip() else {}
    except ValueError:
        return Status.SUCCESS  # as daprd: a 2xx whose body is not a status is a success
    status = answer.get("status", "") if isinstance(answer, dict) else ""
    verdict = _HTTP_STATUSES.get(str(status).upper())
    if verdict is None:
        log.warning("unknown status %r returned by the app for event %s; it will be redelivered", status, event.id)
        return Status.RETRY
    return verdict


def _header_safe(text: str) -> bool:
    return bool(text) and all(" " <= ch <= "~" for ch in text)


def http_binding_reply(body: bytes) -> BindingReply:
    """An HTTP app's reply to an input binding's event: a JSON object with `to`, `data`,
    `concurrency`, `storeName`, `state`, each optional; any other body is no reply."""
    try:
        answer = json.loads(body) if body.strip() else {}
    except ValueError:
        return BindingReply()
    if not isinstance(answer, dict):
        return BindingReply()
    to = answer.get("to") or []
    states = answer.get("state") or []
    return BindingReply(
        to=[str(name) for name in to] if isinstance(to, list) else [],
        data=json.dumps(answer["data"], separators=(",", ":")).encode() if "data" in answer else b"",
        parallel=str(answer.get("concurrency", "")).lower() == "parallel",
        store_name=str(answer.get("storeName") or ""),
        states=[r for r in map(_reply_state, states if isinstance(states, list) else []) if r is not None],
    )


def _texts(values: Iterable[Any]) -> bool:
    """Whether each of `values` is a string or absent, as Go's decoder wants a string field."""
    return all(v is None or isinstance(v, str) for v in values)


def _reply_state(item: Any) -> SetRequest | None:
    """One item of a reply's `state` (daprd's state.SetRequest: key, value, etag, metadata,
    options), read as the Dapr HTTP API reads a saved item, so that both store the same bytes
    (`stringify`) and check the same etag; an item that is not one is left out, logged."""
    if not isinstance(item, dict) or not isinstance(item.get("key"), str):
        log.warning("the app's reply to an input binding holds a state item without a key: %.200r", item)
        return None
    options = item.get("options") or {}
    metadata = item.get("metadata") or {}
    etag = item.get("etag")
    if not (
        isinstance(options, dict)
        and _texts(options.get(k) for k in ("concurrency", "consistency"))
        and isinstance(metadata, dict)
        and _texts(metadata.values())
        and _texts([etag])
    ):
        log.warning("the app's reply to an input binding holds a malformed state item %r", item["key"])
        return None
    concurrency, consistency = options.get("concurrency") or "", options.get("consistency") or ""
    try:
        value = stringify(item.get("value"))
    except ValueError:  # NaN or Infinity: JSON Go would not have read
        log.warning("the app's reply to an input binding holds a state item %r of no JSON value", item["key"])
        return None
    return SetRequest(
        key=item["key"],
        value=value,
        etag=etag_of(etag is not None, etag or "", concurrency),
        metadata={str(k): v or "" for k, v in metadata.items()},
        concurrency=concurrency,
        consistency=consistency,
    )


def open_app_channel(rt: Runtime) -> AppChannel | None:
    """A new channel to the app, or None when the app has neither callback port."""
    app = rt.config.app
    events: AppChannel | None = None
    if app.grpc_callback_port:
        target = f"{app.grpc_callback_host}:{app.grpc_callback_port}"
        # Non-blocking dial: the channel connects (and reconnects) in the background.
        connection = grpc.aio.insecure_channel(target, options=GRPC_CHANNEL_OPTIONS)
        if not app.callback_api:
            candidates = [factory(target, connection) for factory in rt.app_channels.values()]
            events = DetectingAppChannel([c for c in candidates if isinstance(c, GrpcAppChannel)])
        else:
            factory = rt.app_channels.get(app.callback_api)
            if factory is None:
                known = ", ".join(sorted(rt.app_channels))
                raise ConfigError(f"unknown app callback_api '{app.callback_api}' (known: {known})", rt.config.source)
            events = factory(target, connection)
    if app.http_port:
        return HttpAppChannel(rt, events)
    return events
