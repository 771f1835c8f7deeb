# ruff: noqa: ASYNC109 - `timeout` is the gRPC deadline of the call, as in the sync client
"""The asyncio client: the same API as :class:`Client`, with coroutines and async iterators."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_sdk import _core as core
from layotto_sdk._core import USE_CLIENT_DEFAULT, Headers, Metadata, Timeout
from layotto_sdk._errors import LayottoError, from_rpc_error
from layotto_sdk._models import (
    BindingResponse,
    BulkPublishFailure,
    BulkStateItem,
    Concurrency,
    ConfigurationItem,
    Consistency,
    Delete,
    FileList,
    FileMeta,
    HelloResponse,
    HttpVerb,
    InvokeResponse,
    Lease,
    LockStatus,
    SidecarMetadata,
    State,
    StateItem,
    TopicEvent,
    TopicEventStatus,
    Upsert,
)

R = TypeVar("R")
_Headers = tuple[tuple[str, str | bytes], ...]
#: What a finished stream's read() returns (missing from the type stubs).
_EOF: Any = getattr(grpc.aio, "EOF")  # noqa: B009


class AsyncClient:
    """An asyncio client of the Layotto runtime API.

    ::

        from layotto_sdk import AsyncClient

        async with AsyncClient() as client:
            await client.save_state("redis", "greeting", "hello")
            state = await client.get_state("redis", "greeting")

    Takes the same arguments as :class:`Client` and offers the same methods, as
    coroutines; streams (:meth:`subscribe`, :meth:`subscribe_configuration`,
    :meth:`get_file`) are async iterators. The connection is opened on first use, inside
    the running event loop; close it with ``await client.close()`` or ``async with``.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        timeout: float | None = 60.0,
        headers: Headers | None = None,
        max_message_length: int | None = None,
        options: Sequence[tuple[str, Any]] | None = None,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        self.address = core.resolve_address(address)
        self.timeout = timeout
        self._headers = core.merge_headers((), headers)
        self._options = core.channel_options(max_message_length, options)
        self._owns_channel = channel is None
        self._channel_ = channel

    @property
    def _channel(self) -> grpc.aio.Channel:
        # grpc.aio binds a channel to the loop it is created in: create it where it is used.
        if self._channel_ is None:
            self._channel_ = grpc.aio.insecure_channel(self.address, options=self._options)
        return self._channel_

    # ---- lifecycle ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the connection (only when the client created it)."""
        if self._owns_channel and self._channel_ is not None:
            await self._channel_.close(None)
            self._channel_ = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the sidecar accepts connections; ``LayottoError(UNAVAILABLE)`` after ``timeout``."""
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout)
        except TimeoutError:
            raise core.not_ready(self.address, timeout) from None

    # ---- plumbing ----------------------------------------------------------------------------

    def _call_args(self, timeout: Timeout, headers: Headers | None) -> dict[str, Any]:
        return core.call_options(timeout, self.timeout, self._headers, headers)

    async def _unary(self, call: core.Unary[Any, Any, R], timeout: Timeout, headers: Headers | None) -> R:
        method = self._channel.unary_unary(
            call.path, request_serializer=core.serialize, response_deserializer=call.reply_type.FromString
        )
        try:
            reply = await method(call.request, **self._call_args(timeout, headers))
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        return call.parse(reply)

    # ---- hello ------------------------------------------------------------------------------

    async def say_hello(
        self,
        service_name: str = "helloworld",
        name: str = "",
        data: bytes | None = None,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> HelloResponse:
        """Greet the hello component ``service_name``; ``data`` is echoed back."""
        return await self._unary(core.say_hello(service_name, name, data), timeout, headers)

    # ---- state ------------------------------------------------------------------------------

    async def get_state(
        self,
        store: str,
        key: str,
        *,
        consistency: Consistency | None = None,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> State | None:
        """Read ``key``: a :class:`State`, or ``None`` when it does not exist."""
        return await self._unary(core.get_state(store, key, consistency, metadata), timeout, headers)

    async def get_bulk_state(
        self,
        store: str,
        keys: Iterable[str],
        *,
        parallelism: int = 0,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> list[BulkStateItem]:
        """Read several keys at once; one :class:`BulkStateItem` per key."""
        return await self._unary(core.get_bulk_state(store, keys, parallelism, metadata), timeout, headers)

    async def save_state(
        self,
        store: str,
        key: str | Iterable[StateItem],
        value: Any = None,
        *,
        etag: str | None = None,
        concurrency: Concurrency | None = None,
        consistency: Consistency | None = None,
        metadata: Metadata | None = None,
        ttl: int | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> None:
        """Write one key (``key, value``) or many (a list of :class:`StateItem`); see :meth:`Client.save_state`."""
        items = core.state_items(key, value, etag, concurrency, consistency, metadata, ttl)
        await self._unary(core.save_state(store, items), timeout, headers)

    async def delete_state(
        self,
        store: str,
        key: str,
        *,
        etag: str | None = None,
        concurrency: Concurrency | None = None,
        consistency: Consistency | None = None,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> None:
        """Delete ``key``; with ``etag``, only while the stored etag is still that value."""
        await self._unary(core.delete_state(store, key, etag, concurrency, consistency, metadata), timeout, headers)

    async def delete_bulk_state(
        self,
        store: str,
        keys: Iterable[str | StateItem],
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> None:
        """Delete several keys (plain keys, or :class:`StateItem` to give etags/options)."""
        await self._unary(core.delete_bulk_state(store, keys), timeout, headers)

    async def execute_state_transaction(
        self,
        store: str,
        operations: Iterable[Upsert | Delete],
        *,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> None:
        """Apply :class:`Upsert` and :class:`Delete` operations atomically: all or none."""
        await self._unary(core.execute_state_transaction(store, operations, metadata), timeout, headers)

    # ---- lock -------------------------------------------------------------------------------

    async def try_lock(
        self,
        store: str,
        resource: str,
        owner: str,
        expire: int,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> bool:
        """Try once to take lock ``resource`` for ``expire`` seconds; ``False`` when it is held."""
        return await self._unary(core.try_lock(store, resource, owner, expire), timeout, headers)

    async def unlock(
        self,
        store: str,
        resource: str,
        owner: str,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> LockStatus:
        """Release the lock; :class:`LockStatus` tells whether it was ours to release."""
        return await self._unary(core.unlock(store, resource, owner), timeout, headers)

    async def lock_keep_alive(
        self,
        store: str,
        resource: str,
        owner: str,
        expire: int,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> LockStatus:
        """Extend a held lock to ``expire`` seconds from now."""
        return await self._unary(core.lock_keep_alive(store, resource, owner, expire), timeout, headers)

    def lock(
        self,
        store: str,
        resource: str,
        *,
        ttl: int,
        owner: str | None = None,
        wait: float | None = None,
        retry_interval: float = 0.1,
        keep_alive: bool = False,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> AsyncLockContext:
        """Hold a distributed lock for the duration of an ``async with`` block.

        ::

            async with client.lock("redis", "orders/42", ttl=10, wait=5) as lease:
                ...

        Same options as :meth:`Client.lock`; the keep-alive runs as an asyncio task.
        """
        return AsyncLockContext(self, store, resource, ttl, owner, wait, retry_interval, keep_alive, timeout, headers)

    # ---- sequencer --------------------------------------------------------------------------

    async def get_next_id(
        self,
        store: str,
        key: str,
        *,
        strong: bool = False,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> int:
        """The next id of sequence ``key`` (see :meth:`Client.get_next_id`)."""
        return await self._unary(core.get_next_id(store, key, strong, metadata), timeout, headers)

    # ---- pubsub -----------------------------------------------------------------------------

    async def publish_event(
        self,
        pubsub: str,
        topic: str,
        data: Any,
        *,
        content_type: str | None = None,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> None:
        """Publish ``data`` (bytes, str or JSON-able) to ``topic`` of broker ``pubsub``."""
        await self._unary(core.publish_event(pubsub, topic, data, content_type, metadata), timeout, headers)

    async def publish_events(
        self,
        pubsub: str,
        topic: str,
        events: Sequence[Any],
        *,
        content_type: str | None = None,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> list[BulkPublishFailure]:
        """Publish several events at once (Dapr's bulk publish); returns those that failed
        (``entry_id`` is the event's index), an empty list when all were published."""
        return await self._unary(core.publish_events(pubsub, topic, events, content_type, metadata), timeout, headers)

    def subscribe(
        self,
        pubsub: str,
        topic: str,
        *,
        metadata: Metadata | None = None,
        dead_letter_topic: str | None = None,
        timeout: float | None = None,
        headers: Headers | None = None,
    ) -> AsyncSubscription:
        """Receive the events of ``topic`` over a stream.

        ::

            async with client.subscribe("redis", "orders") as sub:
                async for event in sub:
                    await handle(event.json())
                    await sub.success(event)      # or sub.retry(event) / sub.drop(event)
        """
        initial = core.subscribe_initial(pubsub, topic, metadata, dead_letter_topic)
        return AsyncSubscription(self, initial, timeout, core.merge_headers(self._headers, headers))

    # ---- the sidecar ----------------------------------------------------------------------------

    async def get_metadata(
        self, *, timeout: Timeout = USE_CLIENT_DEFAULT, headers: Headers | None = None
    ) -> SidecarMetadata:
        """The sidecar's app id, version, components, subscriptions and attributes."""
        return await self._unary(core.get_metadata(), timeout, headers)

    async def set_metadata(
        self, key: str, value: str, *, timeout: Timeout = USE_CLIENT_DEFAULT, headers: Headers | None = None
    ) -> None:
        """Set an attribute the sidecar reports in :meth:`get_metadata` (``extended``)."""
        await self._unary(core.set_metadata(key, value), timeout, headers)

    async def shutdown(self, *, timeout: Timeout = USE_CLIENT_DEFAULT, headers: Headers | None = None) -> None:
        """Ask the sidecar to stop: in-flight calls finish, then it closes its components."""
        await self._unary(core.shutdown(), timeout, headers)

    # ---- configuration ------------------------------------------------------------------------

    async def get_configuration(
        self,
        store: str,
        keys: Iterable[str],
        *,
        app_id: str = "",
        group: str = "",
        label: str = "",
        metadata: Metadata | None = None,
        subscribe_update: bool = False,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> list[ConfigurationItem]:
        """Read configuration ``keys`` of ``app_id`` in ``group``/``label``."""
        call = core.get_configuration(store, keys, app_id, group, label, metadata, subscribe_update)
        return await self._unary(call, timeout, headers)

    async def save_configuration(
        self,
        store: str,
        items: Iterable[ConfigurationItem],
        *,
        app_id: str = "",
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> None:
        """Write configuration items."""
        await self._unary(core.save_configuration(store, items, app_id, metadata), timeout, headers)

    async def delete_configuration(
        self,
        store: str,
        keys: Iterable[str],
        *,
        app_id: str = "",
        group: str = "",
        label: str = "",
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> None:
        """Delete configuration ``keys``."""
        await self._unary(core.delete_configuration(store, keys, app_id, group, label, metadata), timeout, headers)

    def subscribe_configuration(
        self,
        store: str,
        keys: Iterable[str],
        *,
        app_id: str = "",
        group: str = "",
        label: str = "",
        metadata: Metadata | None = None,
        timeout: float | None = None,
        headers: Headers | None = None,
    ) -> AsyncConfigurationSubscription:
        """Watch configuration ``keys``: ``async for items in ...`` yields each batch of changes."""
        request = core.subscribe_configuration(store, keys, app_id, group, label, metadata)
        return AsyncConfigurationSubscription(self, request, timeout, core.merge_headers(self._headers, headers))

    # ---- invoke / bindings / secrets -----------------------------------------------------------

    async def invoke_service(
        self,
        app_id: str,
        method: str,
        data: Any = None,
        *,
        content_type: str | None = None,
        verb: HttpVerb | str | None = None,
        querystring: str = "",
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> InvokeResponse:
        """Call ``method`` of application ``app_id`` (see :meth:`Client.invoke_service`)."""
        call = core.invoke_service(app_id, method, data, content_type, verb, querystring)
        return await self._unary(call, timeout, core.invoke_headers(metadata, headers))

    async def invoke_binding(
        self,
        name: str,
        operation: str,
        data: Any = b"",
        *,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> BindingResponse:
        """Run ``operation`` on output binding ``name``."""
        return await self._unary(core.invoke_binding(name, operation, data, metadata), timeout, headers)

    async def get_secret(
        self,
        store: str,
        key: str,
        *,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> dict[str, str]:
        """The secret ``key`` of secret store ``store``."""
        return await self._unary(core.get_secret(store, key, metadata), timeout, headers)

    async def get_bulk_secret(
        self,
        store: str,
        *,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> dict[str, dict[str, str]]:
        """Every secret of ``store``, by name."""
        return await self._unary(core.get_bulk_secret(store, metadata), timeout, headers)

    # ---- file -------------------------------------------------------------------------------

    async def get_file(
        self,
        store: str,
        name: str,
        *,
        metadata: Metadata | None = None,
        timeout: float | None = None,
        headers: Headers | None = None,
    ) -> AsyncIterator[bytes]:
        """Stream the content of file ``name``: ``async for chunk in client.get_file(...)``."""
        method = self._channel.unary_stream(
            core.SERVICE + "GetFile",
            request_serializer=core.serialize,
            response_deserializer=pb.GetFileResponse.FromString,
        )
        call: Any = method(
            core.get_file(store, name, metadata), timeout=timeout, metadata=core.merge_headers(self._headers, headers)
        )
        try:
            async for reply in call:
                yield reply.data
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        finally:
            call.cancel()

    async def read_file(
        self,
        store: str,
        name: str,
        *,
        metadata: Metadata | None = None,
        timeout: float | None = None,
        headers: Headers | None = None,
    ) -> bytes:
        """The whole content of file ``name``."""
        return b"".join(
            [c async for c in self.get_file(store, name, metadata=metadata, timeout=timeout, headers=headers)]
        )

    async def put_file(
        self,
        store: str,
        name: str,
        data: bytes | Iterable[bytes] | AsyncIterable[bytes],
        *,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> None:
        """Upload ``data`` (bytes, or a sync or async iterable of chunks) as ``name``."""
        method = self._channel.stream_unary(
            core.SERVICE + "PutFile",
            request_serializer=core.serialize,
            response_deserializer=empty_pb2.Empty.FromString,
        )
        requests: Any
        if isinstance(data, AsyncIterable):
            requests = _aput_file_requests(store, name, data, metadata)
        else:
            requests = core.put_file_requests(store, name, core.file_chunks(data), metadata)
        try:
            await method(requests, **self._call_args(timeout, headers))
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    async def list_file(
        self,
        store: str,
        name: str,
        *,
        page_size: int = 0,
        marker: str = "",
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> FileList:
        """One page of the files under ``name``; continue with ``marker``."""
        return await self._unary(core.list_file(store, name, page_size, marker, metadata), timeout, headers)

    async def del_file(
        self,
        store: str,
        name: str,
        *,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> None:
        """Delete file ``name``."""
        await self._unary(core.del_file(store, name, metadata), timeout, headers)

    async def get_file_meta(
        self,
        store: str,
        name: str,
        *,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> FileMeta:
        """Size, modification time and store-specific metadata of file ``name``."""
        return await self._unary(core.get_file_meta(store, name, metadata), timeout, headers)


async def _aput_file_requests(
    store: str, name: str, chunks: AsyncIterable[bytes], metadata: Metadata | None
) -> AsyncIterator[pb.PutFileRequest]:
    requests = core.PutFileRequests(store, name, metadata)
    async for chunk in chunks:
        yield requests.chunk(chunk)
    last = requests.end()
    if last is not None:
        yield last


class AsyncLockContext:
    """What :meth:`AsyncClient.lock` returns: ``async with`` it to hold the lock.

    A shell over :class:`layotto_sdk._core.LockPolicy`: it sends the calls, sleeps and runs
    the keep-alive task.
    """

    def __init__(
        self,
        client: AsyncClient,
        store: str,
        resource: str,
        ttl: int,
        owner: str | None,
        wait: float | None,
        retry_interval: float,
        keep_alive: bool,
        timeout: Timeout,
        headers: Headers | None,
    ) -> None:
        self._policy = core.LockPolicy(store, resource, ttl, owner, wait, retry_interval, keep_alive)
        self._client = client
        self._timeout = timeout
        self._headers = headers
        self._keeper: asyncio.Task[None] | None = None

    async def _send(self, call: core.Unary[Any, Any, R]) -> R:
        return await self._client._unary(call, self._timeout, self._headers)

    async def __aenter__(self) -> Lease:
        policy = self._policy
        while True:
            delay = policy.after_attempt(await self._send(policy.attempt()))
            if delay is None:
                break
            await asyncio.sleep(delay)  # held by someone else: poll until `wait` runs out
        if policy.keep_alive:
            self._keeper = asyncio.create_task(self._renew(), name=f"layotto-lock-{policy.lease.resource}")
        return policy.lease

    async def _renew(self) -> None:
        policy = self._policy
        while True:
            await asyncio.sleep(policy.renew_every)
            status: LockStatus | None
            try:
                status = await self._send(policy.renewal())
            except LayottoError:
                status = None
            if not policy.renewed(status):
                return

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        try:
            status = await self._send(self._policy.release())
        except LayottoError:
            if self._policy.release_error_propagates(exc):
                raise
            return
        self._policy.released(status)


class _AsyncStream:
    """One bidirectional call; writes are serialised because grpc.aio forbids concurrent ones."""

    def __init__(
        self, client: AsyncClient, method: str, reply_type: Any, timeout: float | None, headers: _Headers
    ) -> None:
        callable_: Any = client._channel.stream_stream(
            core.SERVICE + method, request_serializer=core.serialize, response_deserializer=reply_type.FromString
        )
        self._call: Any = callable_(timeout=timeout, metadata=headers)
        self._write_lock = asyncio.Lock()
        self._closed = False

    async def send(self, request: Any) -> None:
        if self._closed:
            raise RuntimeError("the stream is closed")
        async with self._write_lock:
            try:
                await self._call.write(request)
            except grpc.RpcError as exc:
                raise from_rpc_error(exc) from None
            except asyncio.InvalidStateError:
                # The call already ended; reading it reports why.
                await self.receive()
                raise LayottoError(grpc.StatusCode.CANCELLED, "the stream has ended") from None

    async def receive(self) -> Any | None:
        """The next reply, or None once the stream ended (or we closed it)."""
        try:
            reply = await self._call.read()
        except asyncio.CancelledError:
            if self._closed:
                return None
            raise
        except grpc.RpcError as exc:
            if core.ended_by_close(self._closed, exc.code()):
                return None
            raise from_rpc_error(exc) from None
        if reply is _EOF:
            return None
        return reply

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._call.cancel()


class AsyncSubscription:
    """A stream of events from one topic (see :meth:`AsyncClient.subscribe`)."""

    def __init__(
        self, client: AsyncClient, initial: pb.SubscribeTopicEventsRequest, timeout: float | None, headers: _Headers
    ) -> None:
        self._client = client
        self._events = core.TopicEvents(initial)
        self._timeout = timeout
        self._headers = headers
        self._stream: _AsyncStream | None = None

    async def start(self) -> AsyncSubscription:
        """Open the stream and wait until the sidecar confirmed the subscription.

        Raises :class:`LayottoError` if the sidecar refuses it. ``async with`` and
        ``async for`` start it as well.
        """
        if self._stream is None:
            self._stream = _AsyncStream(
                self._client, "SubscribeTopicEvents", pb.SubscribeTopicEventsResponse, self._timeout, self._headers
            )
            await self._stream.send(self._events.open())
            self._events.confirmed(await self._stream.receive())
        return self

    async def __aenter__(self) -> AsyncSubscription:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[TopicEvent]:
        return self

    async def __anext__(self) -> TopicEvent:
        stream = (await self.start())._stream
        assert stream is not None
        event = self._events.take()
        while event is None and not self._events.ended:
            event = self._events.feed(await stream.receive())
        if event is None:
            raise StopAsyncIteration
        return event

    async def respond(self, event: TopicEvent, status: TopicEventStatus) -> None:
        """Tell the broker what became of ``event``."""
        request = self._events.processed(event, status)
        assert self._stream is not None
        await self._stream.send(request)

    async def success(self, event: TopicEvent) -> None:
        """``event`` was processed: acknowledge it."""
        await self.respond(event, TopicEventStatus.SUCCESS)

    async def retry(self, event: TopicEvent) -> None:
        """``event`` was not processed: have it delivered again."""
        await self.respond(event, TopicEventStatus.RETRY)

    async def drop(self, event: TopicEvent) -> None:
        """``event`` can never be processed: discard it (or dead-letter it)."""
        await self.respond(event, TopicEventStatus.DROP)

    async def close(self) -> None:
        """End the subscription; events not answered yet will be delivered again."""
        if self._stream is not None:
            self._stream.close()


class AsyncConfigurationSubscription:
    """Changes of watched configuration keys; each ``async for`` step yields one batch."""

    def __init__(
        self, client: AsyncClient, request: pb.SubscribeConfigurationRequest, timeout: float | None, headers: _Headers
    ) -> None:
        self._client = client
        self._request = request
        self._timeout = timeout
        self._headers = headers
        self._stream: _AsyncStream | None = None

    async def start(self) -> AsyncConfigurationSubscription:
        """Open the stream (``async with`` and ``async for`` do it too)."""
        if self._stream is None:
            self._stream = _AsyncStream(
                self._client, "SubscribeConfiguration", pb.SubscribeConfigurationResponse, self._timeout, self._headers
            )
            await self._stream.send(self._request)
        return self

    async def __aenter__(self) -> AsyncConfigurationSubscription:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[list[ConfigurationItem]]:
        return self

    async def __anext__(self) -> list[ConfigurationItem]:
        await self.start()
        assert self._stream is not None
        items = core.configuration_changes(await self._stream.receive())
        if items is None:
            raise StopAsyncIteration
        return items

    async def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
