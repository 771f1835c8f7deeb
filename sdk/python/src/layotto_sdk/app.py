"""Serve the callbacks a Layotto sidecar makes to the application.

::

    from layotto_sdk.app import App, Drop

    app = App()

    @app.subscribe("redis", "orders")
    async def on_order(event):
        order = event.json()
        if not order.get("id"):
            raise Drop()               # never deliverable: drop it
        await save(order)              # returning normally acknowledges the event

    @app.method("ping")
    def ping(request):
        return {"pong": request.text()}

    app.run(9999)                      # the port configured as app.grpc_callback_port

The app serves ``spec.proto.runtime.v1.AppCallback`` with ``grpc.aio``:
``ListTopicSubscriptions`` (the topics registered with :meth:`App.subscribe`),
``OnTopicEvent`` (delivers each event to its handler) and ``OnInvoke`` (service
invocations, dispatched by method name to :meth:`App.method` handlers).

Handlers may be plain functions (run in a worker thread, so they may block) or
coroutines (run on the event loop). A subscriber's outcome decides what the broker does:

* returns ``None`` (or anything else not listed below): **SUCCESS**, the event is acknowledged;
* raises any exception, or returns ``False`` or ``TopicEventStatus.RETRY``: **RETRY**, delivered again;
* raises :class:`Drop`, or returns ``Drop``/``Drop()``/``TopicEventStatus.DROP``: **DROP**, discarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import grpc
from google.protobuf import empty_pb2

from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_sdk import _core as core
from layotto_sdk._errors import Drop, LayottoError
from layotto_sdk._models import TopicEvent, _Payload

__all__ = ["App", "Drop", "InvokeRequest", "Response"]

log = logging.getLogger("layotto_sdk.app")

SERVICE: Final = "spec.proto.runtime.v1.AppCallback"
DEFAULT_PORT: Final = 9999

SubscriptionHandler = Callable[[TopicEvent], Any]
MethodHandler = Callable[["InvokeRequest"], Any]
H = TypeVar("H", bound=Callable[..., Any])
_Ctx = grpc.aio.ServicerContext[Any, Any]


@dataclass(frozen=True, slots=True)
class InvokeRequest(_Payload):
    """A service invocation addressed to this app (see :meth:`App.method`)."""

    method: str
    data: bytes
    content_type: str = ""
    http_verb: str = ""
    querystring: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Response:
    """What a method handler returns when it needs to set the content type or metadata.

    ``data`` is bytes, str or a JSON-serialisable object, encoded as in
    :meth:`Client.publish_event`. Returning bare data is the same as ``Response(data)``.
    """

    data: Any = b""
    content_type: str | None = None
    metadata: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class _Subscription:
    pubsub: str
    topic: str
    metadata: Mapping[str, str]
    handler: SubscriptionHandler


async def _call(handler: Callable[..., Any], argument: Any) -> Any:
    if inspect.iscoroutinefunction(handler):
        return await handler(argument)
    result = await asyncio.to_thread(handler, argument)
    if inspect.isawaitable(result):
        return await result
    return result


class App:
    """An application's callback server: register handlers, then :meth:`run` or :meth:`start`."""

    def __init__(self) -> None:
        self._subscriptions: dict[tuple[str, str], _Subscription] = {}
        self._methods: dict[str, MethodHandler] = {}
        self._server: grpc.aio.Server | None = None

    # ---- registration ---------------------------------------------------------------------

    def subscribe(self, pubsub: str, topic: str, *, metadata: Mapping[str, str] | None = None) -> Callable[[H], H]:
        """Decorator: deliver the events of ``topic`` on broker ``pubsub`` to the function.

        ``metadata`` is passed to the broker with the subscription (e.g. ``{"consumerID":
        "billing"}``). A topic has at most one handler.
        """

        def register(handler: H) -> H:
            self.add_subscription(pubsub, topic, handler, metadata=metadata)
            return handler

        return register

    def add_subscription(
        self, pubsub: str, topic: str, handler: SubscriptionHandler, *, metadata: Mapping[str, str] | None = None
    ) -> None:
        """The non-decorator form of :meth:`subscribe`."""
        if (pubsub, topic) in self._subscriptions:
            raise ValueError(f"topic {topic!r} of pubsub {pubsub!r} already has a handler")
        self._subscriptions[(pubsub, topic)] = _Subscription(pubsub, topic, dict(metadata or {}), handler)

    def method(self, name: str) -> Callable[[H], H]:
        """Decorator: answer service invocations of method ``name``.

        The handler gets an :class:`InvokeRequest` and returns the reply data (bytes, str,
        a JSON-serialisable object, ``None`` for an empty reply, or a :class:`Response`).
        Raising :class:`LayottoError` answers with its code and message; any other
        exception answers INTERNAL.
        """

        def register(handler: H) -> H:
            self.add_method(name, handler)
            return handler

        return register

    def add_method(self, name: str, handler: MethodHandler) -> None:
        """The non-decorator form of :meth:`method`."""
        if name in self._methods:
            raise ValueError(f"method {name!r} already has a handler")
        self._methods[name] = handler

    # ---- AppCallback ------------------------------------------------------------------------

    async def _list_topic_subscriptions(
        self, request: empty_pb2.Empty, context: _Ctx
    ) -> cb.ListTopicSubscriptionsResponse:
        return cb.ListTopicSubscriptionsResponse(
            subscriptions=[
                cb.TopicSubscription(pubsub_name=s.pubsub, topic=s.topic, metadata=dict(s.metadata))
                for s in self._subscriptions.values()
            ]
        )

    async def _on_topic_event(self, request: cb.TopicEventRequest, context: _Ctx) -> cb.TopicEventResponse:
        subscription = self._subscriptions.get((request.pubsub_name, request.topic))
        if subscription is None:
            # As Layotto's Node SDK: an event nobody handles is dropped rather than redelivered for ever.
            log.warning(
                "no handler for topic %s of pubsub %s: dropping event %s",
                request.topic,
                request.pubsub_name,
                request.id,
            )
            return cb.TopicEventResponse(status=int(core.UNHANDLED_STATUS))  # type: ignore[arg-type]
        try:
            status = core.handler_status(await _call(subscription.handler, core.topic_event(request)))
        except Exception as exc:
            status = core.handler_status(error=exc)
            if not isinstance(exc, Drop):
                log.exception(
                    "handler of topic %s failed on event %s; it will be redelivered", request.topic, request.id
                )
        return cb.TopicEventResponse(status=int(status))  # type: ignore[arg-type]

    async def _on_invoke(self, request: cb.AppInvokeRequest, context: _Ctx) -> cb.AppInvokeResponse:
        handler = self._methods.get(request.method)
        if handler is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"method {request.method} is not served by this app")
            raise AssertionError("unreachable")
        invocation = InvokeRequest(
            method=request.method,
            data=request.data.value,
            content_type=request.content_type,
            http_verb=request.http_verb,
            querystring=request.querystring,
            metadata=dict(request.metadata),
        )
        try:
            result = await _call(handler, invocation)
        except LayottoError as exc:
            await context.abort(exc.code, exc.message)
            raise AssertionError("unreachable") from None
        except Exception as exc:
            log.exception("method %s failed", request.method)
            await context.abort(grpc.StatusCode.INTERNAL, f"method {request.method} failed: {exc}")
            raise AssertionError("unreachable") from None
        reply = result if isinstance(result, Response) else Response(b"" if result is None else result)
        data, content_type = core.encode_with_type(reply.data, reply.content_type)
        response = cb.AppInvokeResponse(content_type=content_type, metadata=dict(reply.metadata or {}))
        response.data.value = data
        return response

    def _handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        def unary(fn: Callable[[Any, _Ctx], Awaitable[Any]], request_type: Any) -> grpc.RpcMethodHandler[Any, Any]:
            return grpc.unary_unary_rpc_method_handler(
                fn,
                request_deserializer=request_type.FromString,
                response_serializer=lambda m: m.SerializeToString(),
            )

        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ListTopicSubscriptions": unary(self._list_topic_subscriptions, empty_pb2.Empty),
                "OnTopicEvent": unary(self._on_topic_event, cb.TopicEventRequest),
                "OnInvoke": unary(self._on_invoke, cb.AppInvokeRequest),
            },
        )

    # ---- serving ------------------------------------------------------------------------------

    async def start(self, port: int | None = None, host: str = "127.0.0.1") -> int:
        """Start serving on ``host:port`` and return the bound port.

        ``port`` defaults to ``appcallback_GRPC_PORT`` (as Layotto's Node SDK) or 9999;
        ``0`` picks a free port. The sidecar only asks for the subscriptions when it starts,
        so start the app first.
        """
        if self._server is not None:
            raise RuntimeError("the app is already serving")
        if port is None:
            port = int(os.environ.get("appcallback_GRPC_PORT") or DEFAULT_PORT)
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((self._handler(),))
        bound = server.add_insecure_port(f"{host}:{port}")
        await server.start()
        self._server = server
        log.info("app callback server listening on %s:%d", host, bound)
        return bound

    async def stop(self, grace: float | None = 5.0) -> None:
        """Stop serving; calls in flight get ``grace`` seconds to finish."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)

    async def wait_for_termination(self) -> None:
        """Wait until the server stops."""
        if self._server is not None:
            await self._server.wait_for_termination()

    async def __aenter__(self) -> App:
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def run(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        """Serve until interrupted (SIGINT/SIGTERM): the blocking way to run an app."""
        asyncio.run(self._run(port, host))

    async def _run(self, port: int | None, host: str) -> None:
        await self.start(port, host)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await self.stop()
