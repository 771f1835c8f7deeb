"""The blocking client."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
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


class Client:
    """A blocking client of the Layotto runtime API.

    ::

        from layotto_sdk import Client

        with Client() as client:                      # 127.0.0.1:34904 unless configured
            client.save_state("redis", "greeting", "hello")
            print(client.get_state("redis", "greeting").text())

    ``address`` is ``host:port`` (or ``unix:/path``); without it the client reads
    ``LAYOTTO_ADDRESS``, then ``runtime_GRPC_HOST``/``runtime_GRPC_PORT`` (as Layotto's
    Node SDK does), then uses ``127.0.0.1:34904``.

    Every method accepts ``timeout`` (seconds; ``None`` waits for ever; by default the
    client's ``timeout``) and ``headers`` (gRPC metadata for this call, added to the
    client's ``headers``). Failures raise :class:`LayottoError` with the gRPC status code
    and the sidecar's message.

    ``max_message_length`` raises gRPC's 4 MiB limit for both directions; ``options`` are
    passed to the channel as they are. A ready ``channel`` may be given instead of an
    address. The client is thread-safe; close it (or use it as a context manager) to
    release the connection.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        timeout: float | None = 60.0,
        headers: Headers | None = None,
        max_message_length: int | None = None,
        options: Sequence[tuple[str, Any]] | None = None,
        channel: grpc.Channel | None = None,
    ) -> None:
        self.address = core.resolve_address(address)
        self.timeout = timeout
        self._headers = core.merge_headers((), headers)
        self._owns_channel = channel is None
        self._channel = channel or grpc.insecure_channel(
            self.address, options=core.channel_options(max_message_length, options)
        )

    # ---- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (only when the client created it)."""
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the sidecar accepts connections; ``LayottoError(UNAVAILABLE)`` after ``timeout``."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise core.not_ready(self.address, timeout) from None

    # ---- plumbing ----------------------------------------------------------------------------

    def _call_args(self, timeout: Timeout, headers: Headers | None) -> dict[str, Any]:
        return core.call_options(timeout, self.timeout, self._headers, headers)

    def _unary(self, call: core.Unary[Any, Any, R], timeout: Timeout, headers: Headers | None) -> R:
        method = self._channel.unary_unary(
            call.path, request_serializer=core.serialize, response_deserializer=call.reply_type.FromString
        )
        try:
            reply = method(call.request, **self._call_args(timeout, headers))
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        return call.parse(reply)

    # ---- hello ------------------------------------------------------------------------------

    def say_hello(
        self,
        service_name: str = "helloworld",
        name: str = "",
        data: bytes | None = None,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> HelloResponse:
        """Greet the hello component ``service_name``; ``data`` is echoed back."""
        return self._unary(core.say_hello(service_name, name, data), timeout, headers)

    # ---- state ------------------------------------------------------------------------------

    def get_state(
        self,
        store: str,
        key: str,
        *,
        consistency: Consistency | None = None,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> State | None:
        """Read ``key`` from state store ``store``.

        Returns a :class:`State` (``data``, ``etag``, ``.text()``, ``.json()``), or
        ``None`` when the key does not exist.
        """
        return self._unary(core.get_state(store, key, consistency, metadata), timeout, headers)

    def get_bulk_state(
        self,
        store: str,
        keys: Iterable[str],
        *,
        parallelism: int = 0,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> list[BulkStateItem]:
        """Read several keys at once; one :class:`BulkStateItem` per key (``found`` tells misses)."""
        return self._unary(core.get_bulk_state(store, keys, parallelism, metadata), timeout, headers)

    def save_state(
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
        """Write one key, or many in one call.

        One key: ``save_state(store, key, value, etag=..., ttl=...)``; ``value`` is bytes,
        str or a JSON-serialisable object. Many keys: ``save_state(store, [StateItem(...),
        ...])``, each item carrying its own options.

        With ``etag`` the write only succeeds while the stored etag is still that value
        (otherwise ``LayottoError`` with code ``ABORTED``); ``ttl`` expires the key after
        that many seconds on stores that support it.
        """
        items = core.state_items(key, value, etag, concurrency, consistency, metadata, ttl)
        self._unary(core.save_state(store, items), timeout, headers)

    def delete_state(
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
        self._unary(core.delete_state(store, key, etag, concurrency, consistency, metadata), timeout, headers)

    def delete_bulk_state(
        self,
        store: str,
        keys: Iterable[str | StateItem],
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> None:
        """Delete several keys (plain keys, or :class:`StateItem` to give etags/options)."""
        self._unary(core.delete_bulk_state(store, keys), timeout, headers)

    def execute_state_transaction(
        self,
        store: str,
        operations: Iterable[Upsert | Delete],
        *,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> None:
        """Apply :class:`Upsert` and :class:`Delete` operations atomically: all or none.

        ::

            client.execute_state_transaction("redis", [Upsert("a", b"1"), Delete("b", etag="3")])
        """
        self._unary(core.execute_state_transaction(store, operations, metadata), timeout, headers)

    # ---- lock -------------------------------------------------------------------------------

    def try_lock(
        self,
        store: str,
        resource: str,
        owner: str,
        expire: int,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> bool:
        """Try once to take lock ``resource`` for ``owner`` for ``expire`` seconds.

        Returns ``False`` (no error) when the lock is held, even by the same owner.
        """
        return self._unary(core.try_lock(store, resource, owner, expire), timeout, headers)

    def unlock(
        self,
        store: str,
        resource: str,
        owner: str,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> LockStatus:
        """Release the lock; :class:`LockStatus` tells whether it was ours to release."""
        return self._unary(core.unlock(store, resource, owner), timeout, headers)

    def lock_keep_alive(
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
        return self._unary(core.lock_keep_alive(store, resource, owner, expire), timeout, headers)

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
    ) -> LockContext:
        """Hold a distributed lock for the duration of a ``with`` block.

        ::

            with client.lock("redis", "orders/42", ttl=10, wait=5) as lease:
                ...  # only one holder at a time, across processes

        The lock is taken for ``ttl`` seconds by ``owner`` (a fresh UUID by default) and
        released when the block exits. If it is held, :class:`LockNotAcquired` is raised at
        once, or after retrying every ``retry_interval`` seconds for up to ``wait`` seconds.
        With ``keep_alive=True`` a background thread renews the lease every ``ttl/3``
        seconds, for holders that may outlive ``ttl``; ``lease.lost`` turns true if a
        renewal finds the lock gone.
        """
        return LockContext(self, store, resource, ttl, owner, wait, retry_interval, keep_alive, timeout, headers)

    # ---- sequencer --------------------------------------------------------------------------

    def get_next_id(
        self,
        store: str,
        key: str,
        *,
        strong: bool = False,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> int:
        """The next id of sequence ``key``: always increasing; gap-free only with ``strong=True``.

        The default (weak) mode lets the sidecar hand out ids from a cached segment, which
        is much faster but skips ids when a sidecar restarts.
        """
        return self._unary(core.get_next_id(store, key, strong, metadata), timeout, headers)

    # ---- pubsub -----------------------------------------------------------------------------

    def publish_event(
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
        """Publish ``data`` to ``topic`` of broker ``pubsub``.

        bytes are sent as ``application/octet-stream``, str as ``text/plain`` and anything
        else as JSON (``application/json``), unless ``content_type`` says otherwise.
        ``metadata`` goes to the broker (e.g. ``{"ttlInSeconds": "60"}``).
        """
        self._unary(core.publish_event(pubsub, topic, data, content_type, metadata), timeout, headers)

    def publish_events(
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
        return self._unary(core.publish_events(pubsub, topic, events, content_type, metadata), timeout, headers)

    def subscribe(
        self,
        pubsub: str,
        topic: str,
        *,
        metadata: Metadata | None = None,
        dead_letter_topic: str | None = None,
        timeout: float | None = None,
        headers: Headers | None = None,
    ) -> Subscription:
        """Receive the events of ``topic`` over a stream, without running a callback server.

        ::

            with client.subscribe("redis", "orders") as sub:
                for event in sub:
                    handle(event.json())
                    sub.success(event)          # or sub.retry(event) / sub.drop(event)

        Every event must be answered with :meth:`Subscription.success`,
        :meth:`~Subscription.retry` or :meth:`~Subscription.drop`. ``timeout`` bounds the
        whole stream (default: none).
        """
        initial = core.subscribe_initial(pubsub, topic, metadata, dead_letter_topic)
        return Subscription(self._channel, initial, timeout, core.merge_headers(self._headers, headers))

    # ---- the sidecar ----------------------------------------------------------------------------

    def get_metadata(self, *, timeout: Timeout = USE_CLIENT_DEFAULT, headers: Headers | None = None) -> SidecarMetadata:
        """The sidecar's app id, version, components, subscriptions and attributes."""
        return self._unary(core.get_metadata(), timeout, headers)

    def set_metadata(
        self, key: str, value: str, *, timeout: Timeout = USE_CLIENT_DEFAULT, headers: Headers | None = None
    ) -> None:
        """Set an attribute the sidecar reports in :meth:`get_metadata` (``extended``)."""
        self._unary(core.set_metadata(key, value), timeout, headers)

    def shutdown(self, *, timeout: Timeout = USE_CLIENT_DEFAULT, headers: Headers | None = None) -> None:
        """Ask the sidecar to stop: in-flight calls finish, then it closes its components."""
        self._unary(core.shutdown(), timeout, headers)

    # ---- configuration ------------------------------------------------------------------------

    def get_configuration(
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
        """Read configuration ``keys`` of ``app_id`` in ``group``/``label`` (store defaults when blank)."""
        call = core.get_configuration(store, keys, app_id, group, label, metadata, subscribe_update)
        return self._unary(call, timeout, headers)

    def save_configuration(
        self,
        store: str,
        items: Iterable[ConfigurationItem],
        *,
        app_id: str = "",
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> None:
        """Write configuration items (each with its own group, label and tags)."""
        self._unary(core.save_configuration(store, items, app_id, metadata), timeout, headers)

    def delete_configuration(
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
        """Delete configuration ``keys`` of ``app_id`` in ``group``/``label``."""
        self._unary(core.delete_configuration(store, keys, app_id, group, label, metadata), timeout, headers)

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
    ) -> ConfigurationSubscription:
        """Watch configuration ``keys``: iterate to get each batch of changed items.

        ::

            with client.subscribe_configuration("etcd", ["db-url"], app_id="shop") as changes:
                for items in changes:
                    for item in items:
                        print(item.key, item.content)
        """
        request = core.subscribe_configuration(store, keys, app_id, group, label, metadata)
        return ConfigurationSubscription(self._channel, request, timeout, core.merge_headers(self._headers, headers))

    # ---- invoke / bindings / secrets -----------------------------------------------------------

    def invoke_service(
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
        """Call ``method`` of application ``app_id`` through the sidecars.

        ``data`` is encoded as in :meth:`publish_event`; ``verb`` defaults to GET without
        data and POST with it. ``metadata`` is sent as request headers to the callee.
        """
        call = core.invoke_service(app_id, method, data, content_type, verb, querystring)
        return self._unary(call, timeout, core.invoke_headers(metadata, headers))

    def invoke_binding(
        self,
        name: str,
        operation: str,
        data: Any = b"",
        *,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> BindingResponse:
        """Run ``operation`` (e.g. ``"create"``, ``"get"``) on output binding ``name``."""
        return self._unary(core.invoke_binding(name, operation, data, metadata), timeout, headers)

    def get_secret(
        self,
        store: str,
        key: str,
        *,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> dict[str, str]:
        """The secret ``key`` of secret store ``store`` (a secret may hold several values)."""
        return self._unary(core.get_secret(store, key, metadata), timeout, headers)

    def get_bulk_secret(
        self,
        store: str,
        *,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> dict[str, dict[str, str]]:
        """Every secret of ``store``, by name."""
        return self._unary(core.get_bulk_secret(store, metadata), timeout, headers)

    # ---- file -------------------------------------------------------------------------------

    def get_file(
        self,
        store: str,
        name: str,
        *,
        metadata: Metadata | None = None,
        timeout: float | None = None,
        headers: Headers | None = None,
    ) -> Iterator[bytes]:
        """Stream the content of file ``name``, chunk by chunk::

        with open("copy", "wb") as out:
            for chunk in client.get_file("minio", "bucket/report.csv"):
                out.write(chunk)
        """
        method = self._channel.unary_stream(
            core.SERVICE + "GetFile",
            request_serializer=core.serialize,
            response_deserializer=pb.GetFileResponse.FromString,
        )
        replies: Any = method(
            core.get_file(store, name, metadata), timeout=timeout, metadata=core.merge_headers(self._headers, headers)
        )
        try:
            for reply in replies:
                yield reply.data
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        finally:
            replies.cancel()

    def read_file(
        self,
        store: str,
        name: str,
        *,
        metadata: Metadata | None = None,
        timeout: float | None = None,
        headers: Headers | None = None,
    ) -> bytes:
        """The whole content of file ``name`` (see :meth:`get_file` to stream it)."""
        return b"".join(self.get_file(store, name, metadata=metadata, timeout=timeout, headers=headers))

    def put_file(
        self,
        store: str,
        name: str,
        data: bytes | Iterable[bytes],
        *,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> None:
        """Upload ``data`` (bytes, or an iterable of chunks such as an open binary file) as ``name``."""
        method = self._channel.stream_unary(
            core.SERVICE + "PutFile",
            request_serializer=core.serialize,
            response_deserializer=empty_pb2.Empty.FromString,
        )
        try:
            requests = core.put_file_requests(store, name, core.file_chunks(data), metadata)
            method(requests, **self._call_args(timeout, headers))
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    def list_file(
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
        """One page of the files under ``name`` (a directory or bucket); continue with ``marker``."""
        return self._unary(core.list_file(store, name, page_size, marker, metadata), timeout, headers)

    def del_file(
        self,
        store: str,
        name: str,
        *,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> None:
        """Delete file ``name``."""
        self._unary(core.del_file(store, name, metadata), timeout, headers)

    def get_file_meta(
        self,
        store: str,
        name: str,
        *,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        headers: Headers | None = None,
    ) -> FileMeta:
        """Size, modification time and store-specific metadata of file ``name``."""
        return self._unary(core.get_file_meta(store, name, metadata), timeout, headers)


class LockContext:
    """What :meth:`Client.lock` returns: enter it to hold the lock.

    A shell over :class:`layotto_sdk._core.LockPolicy`: it sends the calls, sleeps and runs
    the keep-alive thread.
    """

    def __init__(
        self,
        client: Client,
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
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    def _send(self, call: core.Unary[Any, Any, R]) -> R:
        return self._client._unary(call, self._timeout, self._headers)

    def __enter__(self) -> Lease:
        policy = self._policy
        while True:
            delay = policy.after_attempt(self._send(policy.attempt()))
            if delay is None:
                break
            time.sleep(delay)  # held by someone else: poll until `wait` runs out
        if policy.keep_alive:
            name = f"layotto-lock-{policy.lease.resource}"
            self._keeper = threading.Thread(target=self._renew, name=name, daemon=True)
            self._keeper.start()
        return policy.lease

    def _renew(self) -> None:
        policy = self._policy
        while not self._stop.wait(policy.renew_every):
            status: LockStatus | None
            try:
                status = self._send(policy.renewal())
            except LayottoError:
                status = None
            if not policy.renewed(status):
                return

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join()
        try:
            status = self._send(self._policy.release())
        except LayottoError:
            if self._policy.release_error_propagates(exc):
                raise
            return
        self._policy.released(status)


class _Stream:
    """A bidirectional stream fed from a queue, so that callers can answer from any thread."""

    def __init__(
        self,
        channel: grpc.Channel,
        method: str,
        first: Any,
        reply_type: Any,
        timeout: float | None,
        headers: tuple[tuple[str, str | bytes], ...],
    ) -> None:
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._requests.put(first)
        self._closed = False
        callable_ = channel.stream_stream(
            core.SERVICE + method, request_serializer=core.serialize, response_deserializer=reply_type.FromString
        )
        self._replies: Any = callable_(iter(self._requests.get, None), timeout=timeout, metadata=headers)

    def send(self, request: Any) -> None:
        if self._closed:
            raise RuntimeError("the stream is closed")
        self._requests.put(request)

    def receive(self) -> Any | None:
        """The next reply, or None once the stream ended (or we closed it)."""
        try:
            return next(self._replies)
        except StopIteration:
            return None
        except grpc.RpcError as exc:
            if core.ended_by_close(self._closed, self._replies.code()):
                return None
            raise from_rpc_error(exc) from None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._requests.put(None)
            self._replies.cancel()


class Subscription:
    """A stream of events from one topic (see :meth:`Client.subscribe`).

    Iterate it to receive :class:`TopicEvent` objects; answer each one. Use it as a
    context manager, or call :meth:`close`, to stop.
    """

    def __init__(
        self,
        channel: grpc.Channel,
        initial: pb.SubscribeTopicEventsRequest,
        timeout: float | None,
        headers: tuple[tuple[str, str | bytes], ...],
    ) -> None:
        self._args = (channel, timeout, headers)
        self._events = core.TopicEvents(initial)
        self._stream: _Stream | None = None

    def start(self) -> Subscription:
        """Open the stream and wait until the sidecar confirmed the subscription.

        Raises :class:`LayottoError` if the sidecar refuses it (unknown pubsub, ...).
        Iterating or entering the ``with`` block starts it as well.
        """
        if self._stream is None:
            channel, timeout, headers = self._args
            self._stream = _Stream(
                channel, "SubscribeTopicEvents", self._events.open(), pb.SubscribeTopicEventsResponse, timeout, headers
            )
            self._events.confirmed(self._stream.receive())
        return self

    def __enter__(self) -> Subscription:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[TopicEvent]:
        return self

    def __next__(self) -> TopicEvent:
        stream = self.start()._stream
        assert stream is not None
        event = self._events.take()
        while event is None and not self._events.ended:
            event = self._events.feed(stream.receive())
        if event is None:
            raise StopIteration
        return event

    def respond(self, event: TopicEvent, status: TopicEventStatus) -> None:
        """Tell the broker what became of ``event``."""
        request = self._events.processed(event, status)
        assert self._stream is not None
        self._stream.send(request)

    def success(self, event: TopicEvent) -> None:
        """``event`` was processed: acknowledge it."""
        self.respond(event, TopicEventStatus.SUCCESS)

    def retry(self, event: TopicEvent) -> None:
        """``event`` was not processed: have it delivered again."""
        self.respond(event, TopicEventStatus.RETRY)

    def drop(self, event: TopicEvent) -> None:
        """``event`` can never be processed: discard it (or dead-letter it)."""
        self.respond(event, TopicEventStatus.DROP)

    def close(self) -> None:
        """End the subscription; events not answered yet will be delivered again."""
        if self._stream is not None:
            self._stream.close()


class ConfigurationSubscription:
    """Changes of watched configuration keys (see :meth:`Client.subscribe_configuration`).

    Each iteration yields the list of items that changed together.
    """

    def __init__(
        self,
        channel: grpc.Channel,
        request: pb.SubscribeConfigurationRequest,
        timeout: float | None,
        headers: tuple[tuple[str, str | bytes], ...],
    ) -> None:
        self._args = (channel, request, timeout, headers)
        self._stream: _Stream | None = None

    def start(self) -> ConfigurationSubscription:
        """Open the stream (iterating or entering the ``with`` block does it too)."""
        if self._stream is None:
            channel, request, timeout, headers = self._args
            self._stream = _Stream(
                channel, "SubscribeConfiguration", request, pb.SubscribeConfigurationResponse, timeout, headers
            )
        return self

    def __enter__(self) -> ConfigurationSubscription:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[list[ConfigurationItem]]:
        return self

    def __next__(self) -> list[ConfigurationItem]:
        stream = self.start()._stream
        assert stream is not None
        items = core.configuration_changes(stream.receive())
        if items is None:
            raise StopIteration
        return items

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
