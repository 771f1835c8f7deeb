"""Everything the sync and async clients share, with no I/O: the sans-IO core of the SDK.

Each RPC is described once here as a :class:`Unary` (method path, request, reply type,
parser); the two clients only differ in how they send it. The policies that span several
calls are written here once as well, as objects that take replies and hand out the next
request or decision:

* :class:`LockPolicy`: how ``lock()`` acquires (polling within ``wait``), keeps alive and
  releases a lease, and when the lease counts as lost;
* :class:`TopicEvents`: the client side of a ``SubscribeTopicEvents`` stream (the opening
  handshake, which replies carry events, the end of the stream, the answers);
* :func:`handler_status`: what an :class:`~layotto_sdk.app.App` subscriber's outcome tells
  the broker (SUCCESS, RETRY or DROP).

``Client`` and ``AsyncClient`` are thin shells over this module: they own the channel,
the threads or tasks and the sleeping, and nothing else.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import grpc
from google.protobuf import empty_pb2
from google.protobuf.message import Message

from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_sdk import _dapr as dapr
from layotto_sdk._errors import Drop, LayottoError, LockNotAcquired
from layotto_sdk._models import (
    ActiveSubscription,
    BindingResponse,
    BulkPublishFailure,
    BulkStateItem,
    Concurrency,
    ConfigurationItem,
    Consistency,
    Delete,
    FileInfo,
    FileList,
    FileMeta,
    HelloResponse,
    HttpVerb,
    InvokeResponse,
    Lease,
    LockStatus,
    RegisteredComponent,
    SidecarMetadata,
    State,
    StateItem,
    TopicEvent,
    TopicEventStatus,
    Upsert,
)

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = "34904"
#: Size of the chunks :meth:`Client.put_file` cuts a ``bytes`` payload into.
FILE_CHUNK_SIZE: Final = 100 * 1024

SERVICE: Final = "/spec.proto.runtime.v1.Runtime/"

Headers = Sequence[tuple[str, str | bytes]] | Mapping[str, str | bytes]
Metadata = Mapping[str, str]


class UseClientDefault:
    """Marker for "use the timeout configured on the client"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"


USE_CLIENT_DEFAULT: Final = UseClientDefault()
Timeout = float | None | UseClientDefault


def resolve_address(address: str | None) -> str:
    """The sidecar address: the argument, else ``LAYOTTO_ADDRESS``, else ``runtime_GRPC_HOST``/``_PORT``.

    ``runtime_GRPC_HOST``/``runtime_GRPC_PORT`` are the variables Layotto's Node SDK
    reads; as there, a host starting with ``unix://`` is a Unix socket.
    """
    if address:
        return address
    from_env = os.environ.get("LAYOTTO_ADDRESS")
    if from_env:
        return from_env
    host = os.environ.get("runtime_GRPC_HOST") or DEFAULT_HOST
    if host.startswith("unix:"):
        return host
    port = os.environ.get("runtime_GRPC_PORT") or DEFAULT_PORT
    return f"{host}:{port}"


def channel_options(max_message_length: int | None, options: Sequence[tuple[str, Any]] | None) -> list[tuple[str, Any]]:
    merged: list[tuple[str, Any]] = []
    if max_message_length is not None:
        merged += [
            ("grpc.max_send_message_length", max_message_length),
            ("grpc.max_receive_message_length", max_message_length),
        ]
    merged += list(options or ())
    return merged


def merge_headers(
    base: tuple[tuple[str, str | bytes], ...], extra: Headers | None
) -> tuple[tuple[str, str | bytes], ...]:
    """Client-wide headers followed by per-call ones; gRPC wants lower-case keys."""
    if not extra:
        return base
    items = extra.items() if isinstance(extra, Mapping) else extra
    return base + tuple((k.lower(), v) for k, v in items)


def effective_timeout(timeout: Timeout, default: float | None) -> float | None:
    return default if isinstance(timeout, UseClientDefault) else timeout


def call_options(
    timeout: Timeout, default: float | None, base: tuple[tuple[str, str | bytes], ...], headers: Headers | None
) -> dict[str, Any]:
    """The ``timeout``/``metadata`` keywords of one call: its own deadline and headers over the client's."""
    return {"timeout": effective_timeout(timeout, default), "metadata": merge_headers(base, headers)}


def invoke_headers(metadata: Metadata | None, headers: Headers | None) -> tuple[tuple[str, str | bytes], ...]:
    """A service invocation's ``metadata`` travels as request headers, before the call's own ``headers``."""
    return merge_headers(merge_headers((), metadata), headers)


def not_ready(address: str, timeout: float) -> LayottoError:
    return LayottoError(grpc.StatusCode.UNAVAILABLE, f"sidecar at {address} not ready after {timeout}s")


def encode(value: Any) -> bytes:
    """bytes as they are, str as UTF-8, anything else as JSON."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":")).encode()


def encode_with_type(value: Any, content_type: str | None) -> tuple[bytes, str]:
    """The payload and the content type that describes it (unless the caller chose one)."""
    if isinstance(value, bytes | bytearray | memoryview):
        guessed = "application/octet-stream"
    elif isinstance(value, str):
        guessed = "text/plain"
    else:
        guessed = "application/json"
    return encode(value), content_type or guessed


RequestT = TypeVar("RequestT", bound=Message)
ReplyT = TypeVar("ReplyT", bound=Message)
ResultT = TypeVar("ResultT")


@dataclass(frozen=True, slots=True)
class Unary(Generic[RequestT, ReplyT, ResultT]):
    """One unary RPC, ready to send: where, what, and how to read the reply."""

    method: str
    request: RequestT
    reply_type: type[ReplyT]
    parse: Callable[[ReplyT], ResultT]
    #: The gRPC service: the Layotto API, or Dapr's (served on the same port) where the
    #: Layotto API has no such RPC.
    service: str = SERVICE

    @property
    def path(self) -> str:
        return self.service + self.method


def serialize(message: Message) -> bytes:
    return message.SerializeToString()


def _none(_: Message) -> None:
    return None


def _map(metadata: Metadata | None) -> dict[str, str]:
    return dict(metadata) if metadata else {}


# ---- hello ----------------------------------------------------------------------------------


def say_hello(service_name: str, name: str, data: bytes | None) -> Unary[Any, pb.SayHelloResponse, HelloResponse]:
    request = pb.SayHelloRequest(service_name=service_name, name=name)
    if data is not None:
        request.data.value = data

    def parse(reply: pb.SayHelloResponse) -> HelloResponse:
        return HelloResponse(reply.hello, reply.data.value if reply.HasField("data") else None)

    return Unary("SayHello", request, pb.SayHelloResponse, parse)


# ---- state ----------------------------------------------------------------------------------


def _options(concurrency: Concurrency | None, consistency: Consistency | None) -> pb.StateOptions | None:
    if concurrency is None and consistency is None:
        return None
    return pb.StateOptions(concurrency=int(concurrency or 0), consistency=int(consistency or 0))  # type: ignore[arg-type]


def _item_metadata(metadata: Metadata | None, ttl: int | None) -> dict[str, str]:
    merged = _map(metadata)
    if ttl is not None:
        merged["ttlInSeconds"] = str(int(ttl))
    return merged


def state_items(
    key: str | Iterable[StateItem],
    value: Any,
    etag: str | None,
    concurrency: Concurrency | None,
    consistency: Consistency | None,
    metadata: Metadata | None,
    ttl: int | None,
) -> list[StateItem]:
    """The items of ``save_state(store, key, value, ...)`` or ``save_state(store, [StateItem, ...])``."""
    if isinstance(key, str):
        if value is None:
            raise TypeError("save_state(store, key, value): value is missing")
        return [StateItem(key, value, etag, metadata, concurrency, consistency, ttl)]
    if value is not None or etag is not None or metadata is not None or ttl is not None:
        raise TypeError("save_state(store, items): set value, etag, metadata and ttl on each StateItem")
    return list(key)


def state_item(item: StateItem | Upsert) -> pb.StateItem:
    out = pb.StateItem(key=item.key, value=encode(item.value), metadata=_item_metadata(item.metadata, item.ttl))
    if item.etag is not None:
        out.etag.value = item.etag
    options = _options(item.concurrency, item.consistency)
    if options is not None:
        out.options.CopyFrom(options)
    return out


def get_state(
    store: str, key: str, consistency: Consistency | None, metadata: Metadata | None
) -> Unary[Any, pb.GetStateResponse, State | None]:
    request = pb.GetStateRequest(store_name=store, key=key, consistency=int(consistency or 0), metadata=_map(metadata))  # type: ignore[arg-type]

    def parse(reply: pb.GetStateResponse) -> State | None:
        # As Layotto's JS SDK: a missing key reads back as nothing at all.
        if not reply.data and not reply.etag:
            return None
        return State(key, reply.data, reply.etag, dict(reply.metadata))

    return Unary("GetState", request, pb.GetStateResponse, parse)


def get_bulk_state(
    store: str, keys: Iterable[str], parallelism: int, metadata: Metadata | None
) -> Unary[Any, pb.GetBulkStateResponse, list[BulkStateItem]]:
    request = pb.GetBulkStateRequest(
        store_name=store, keys=list(keys), parallelism=parallelism, metadata=_map(metadata)
    )

    def parse(reply: pb.GetBulkStateResponse) -> list[BulkStateItem]:
        return [BulkStateItem(i.key, i.data, i.etag, i.error, dict(i.metadata)) for i in reply.items]

    return Unary("GetBulkState", request, pb.GetBulkStateResponse, parse)


def save_state(store: str, items: Iterable[StateItem]) -> Unary[Any, empty_pb2.Empty, None]:
    request = pb.SaveStateRequest(store_name=store, states=[state_item(i) for i in items])
    return Unary("SaveState", request, empty_pb2.Empty, _none)


def delete_state(
    store: str,
    key: str,
    etag: str | None,
    concurrency: Concurrency | None,
    consistency: Consistency | None,
    metadata: Metadata | None,
) -> Unary[Any, empty_pb2.Empty, None]:
    request = pb.DeleteStateRequest(store_name=store, key=key, metadata=_map(metadata))
    if etag is not None:
        request.etag.value = etag
    options = _options(concurrency, consistency)
    if options is not None:
        request.options.CopyFrom(options)
    return Unary("DeleteState", request, empty_pb2.Empty, _none)


def delete_bulk_state(store: str, items: Iterable[str | StateItem]) -> Unary[Any, empty_pb2.Empty, None]:
    states = [pb.StateItem(key=i) if isinstance(i, str) else state_item(i) for i in items]
    return Unary("DeleteBulkState", pb.DeleteBulkStateRequest(store_name=store, states=states), empty_pb2.Empty, _none)


def execute_state_transaction(
    store: str, operations: Iterable[Upsert | Delete], metadata: Metadata | None
) -> Unary[Any, empty_pb2.Empty, None]:
    request = pb.ExecuteStateTransactionRequest(storeName=store, metadata=_map(metadata))
    for op in operations:
        if isinstance(op, Upsert):
            request.operations.add(operationType="upsert", request=state_item(op))
        elif isinstance(op, Delete):
            item = pb.StateItem(key=op.key, metadata=_map(op.metadata))
            if op.etag is not None:
                item.etag.value = op.etag
            options = _options(op.concurrency, op.consistency)
            if options is not None:
                item.options.CopyFrom(options)
            request.operations.add(operationType="delete", request=item)
        else:
            raise TypeError(f"a transaction operation is an Upsert or a Delete, not {type(op).__name__}")
    return Unary("ExecuteStateTransaction", request, empty_pb2.Empty, _none)


# ---- lock -----------------------------------------------------------------------------------


def new_owner() -> str:
    return str(uuid.uuid4())


def try_lock(store: str, resource: str, owner: str, expire: int) -> Unary[Any, pb.TryLockResponse, bool]:
    request = pb.TryLockRequest(store_name=store, resource_id=resource, lock_owner=owner, expire=int(expire))

    def parse(reply: pb.TryLockResponse) -> bool:
        return reply.success

    return Unary("TryLock", request, pb.TryLockResponse, parse)


def unlock(store: str, resource: str, owner: str) -> Unary[Any, pb.UnlockResponse, LockStatus]:
    request = pb.UnlockRequest(store_name=store, resource_id=resource, lock_owner=owner)

    def parse(reply: pb.UnlockResponse) -> LockStatus:
        return LockStatus(reply.status)

    return Unary("Unlock", request, pb.UnlockResponse, parse)


def lock_keep_alive(
    store: str, resource: str, owner: str, expire: int
) -> Unary[Any, pb.LockKeepAliveResponse, LockStatus]:
    request = pb.LockKeepAliveRequest(store_name=store, resource_id=resource, lock_owner=owner, expire=int(expire))

    def parse(reply: pb.LockKeepAliveResponse) -> LockStatus:
        return LockStatus(reply.status)

    return Unary("LockKeepAlive", request, pb.LockKeepAliveResponse, parse)


def keep_alive_interval(ttl: int) -> float:
    """Renew at a third of the lease, so two renewals can fail before the lease runs out."""
    return max(0.2, ttl / 3)


class LockPolicy:
    """What ``lock()`` does with a lease, as decisions without I/O.

    The lock contexts of both clients drive it the same way, only sending the calls it hands
    out and sleeping when it says so::

        while (delay := policy.after_attempt(send(policy.attempt()))) is not None:
            sleep(delay)                                   # held by someone else: poll
        # (the shells spell this loop out, with a break, for the linters)
        # with policy.keep_alive, every policy.renew_every seconds:
        #     keep going while policy.renewed(send(policy.renewal())), passing None on a LayottoError
        # on exit: policy.released(send(policy.release())), or on a LayottoError
        #     raise it only if policy.release_error_propagates(the block's exception)

    ``clock`` (seconds, monotonic) is there for tests.
    """

    def __init__(
        self,
        store: str,
        resource: str,
        ttl: int,
        owner: str | None,
        wait: float | None,
        retry_interval: float,
        keep_alive: bool,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be a positive number of seconds")
        self.lease = Lease(store, resource, owner or new_owner(), int(ttl))
        self.keep_alive = keep_alive
        self._wait = wait
        self._retry_interval = retry_interval
        self._clock = clock
        self._started: float | None = None

    # ---- acquiring ----

    def attempt(self) -> Unary[Any, pb.TryLockResponse, bool]:
        """The next TryLock; the ``wait`` starts with the first one."""
        if self._started is None:
            self._started = self._clock()
        lease = self.lease
        return try_lock(lease.store, lease.resource, lease.owner, lease.ttl)

    def after_attempt(self, acquired: bool) -> float | None:
        """``None`` once the lock is ours, else how long to sleep before the next attempt.

        Raises :class:`LockNotAcquired` when ``wait`` is used up: at once without ``wait``.
        """
        if acquired:
            return None
        if self._started is None:
            raise RuntimeError("after_attempt() comes after attempt()")
        now = self._clock()
        left = self._started + (self._wait or 0) - now
        if left <= 0:
            lease = self.lease
            raise LockNotAcquired(lease.store, lease.resource, now - self._started if self._wait else 0)
        # Polling is the only way: the lock API has no "wait for release".
        return min(self._retry_interval, left)

    # ---- keeping alive ----

    @property
    def renew_every(self) -> float:
        return keep_alive_interval(self.lease.ttl)

    def renewal(self) -> Unary[Any, pb.LockKeepAliveResponse, LockStatus]:
        lease = self.lease
        return lock_keep_alive(lease.store, lease.resource, lease.owner, lease.ttl)

    def renewed(self, status: LockStatus | None) -> bool:
        """Whether to keep renewing after a renewal (``None``: the call itself failed).

        A failed call counts as transient: the next tick tries again while the lease lasts.
        A renewal the sidecar refuses means the lock is gone, and the lease is marked lost.
        """
        if status is None or status == LockStatus.SUCCESS:
            return True
        self.lease.lost = True
        return False

    # ---- releasing ----

    def release(self) -> Unary[Any, pb.UnlockResponse, LockStatus]:
        lease = self.lease
        return unlock(lease.store, lease.resource, lease.owner)

    def released(self, status: LockStatus) -> None:
        """An unlock the sidecar refused: the lease had already been lost (expired or taken)."""
        if status != LockStatus.SUCCESS:
            self.lease.lost = True

    @staticmethod
    def release_error_propagates(block_error: BaseException | None) -> bool:
        """Whether a failed unlock raises: not over the block's own exception, which matters more
        (the lease expires by itself)."""
        return block_error is None


# ---- sequencer ------------------------------------------------------------------------------


def get_next_id(store: str, key: str, strong: bool, metadata: Metadata | None) -> Unary[Any, pb.GetNextIdResponse, int]:
    increment = pb.SequencerOptions.STRONG if strong else pb.SequencerOptions.WEAK
    request = pb.GetNextIdRequest(
        store_name=store, key=key, options=pb.SequencerOptions(increment=increment), metadata=_map(metadata)
    )

    def parse(reply: pb.GetNextIdResponse) -> int:
        return int(reply.next_id)

    return Unary("GetNextId", request, pb.GetNextIdResponse, parse)


# ---- pubsub ---------------------------------------------------------------------------------


def publish_event(
    pubsub: str, topic: str, data: Any, content_type: str | None, metadata: Metadata | None
) -> Unary[Any, empty_pb2.Empty, None]:
    payload, data_content_type = encode_with_type(data, content_type)
    request = pb.PublishEventRequest(
        pubsub_name=pubsub, topic=topic, data=payload, data_content_type=data_content_type, metadata=_map(metadata)
    )
    return Unary("PublishEvent", request, empty_pb2.Empty, _none)


def publish_events(
    pubsub: str, topic: str, events: Sequence[Any], content_type: str | None, metadata: Metadata | None
) -> Unary[Any, Any, list[BulkPublishFailure]]:
    """Dapr's bulk publish: each event encoded as publish_event encodes one, its index its id."""
    request = dapr.MESSAGES["BulkPublishRequest"](pubsub_name=pubsub, topic=topic, metadata=_map(metadata))
    for index, event in enumerate(events):
        payload, event_type = encode_with_type(event, content_type)
        request.entries.add(entry_id=str(index), event=payload, content_type=event_type)

    def failures(reply: Any) -> list[BulkPublishFailure]:
        return [BulkPublishFailure(f.entry_id, f.error) for f in reply.failedEntries]

    return Unary("BulkPublishEventAlpha1", request, dapr.MESSAGES["BulkPublishResponse"], failures, dapr.SERVICE)


def subscribe_initial(
    pubsub: str, topic: str, metadata: Metadata | None, dead_letter_topic: str | None
) -> pb.SubscribeTopicEventsRequest:
    initial = pb.SubscribeTopicEventsRequestInitial(pubsub_name=pubsub, topic=topic, metadata=_map(metadata))
    if dead_letter_topic is not None:
        initial.dead_letter_topic = dead_letter_topic
    return pb.SubscribeTopicEventsRequest(initial_request=initial)


def event_processed(event_id: str, status: TopicEventStatus) -> pb.SubscribeTopicEventsRequest:
    processed = pb.SubscribeTopicEventsRequestProcessed(
        id=event_id,
        status=cb.TopicEventResponse(status=int(status)),  # type: ignore[arg-type]
    )
    return pb.SubscribeTopicEventsRequest(event_processed=processed)


def topic_event(message: cb.TopicEventRequest) -> TopicEvent:
    """The SDK's view of an event, as a subscription stream or the app's OnTopicEvent gets it."""
    return TopicEvent(
        id=message.id,
        topic=message.topic,
        pubsub_name=message.pubsub_name,
        data=message.data,
        data_content_type=message.data_content_type,
        source=message.source,
        type=message.type,
        spec_version=message.spec_version,
        metadata=dict(message.metadata),
    )


def ended_by_close(closed_by_us: bool, code: grpc.StatusCode | None) -> bool:
    """Whether a stream's error is just its end: CANCELLED once we closed it ourselves."""
    return closed_by_us and code == grpc.StatusCode.CANCELLED


class TopicEvents:
    """The client side of one ``SubscribeTopicEvents`` stream, without I/O.

    Both clients' subscriptions drive it the same way::

        stream = open_stream(events.open())        # the first request subscribes
        events.confirmed(receive())                # raises if the sidecar refuses or hangs up
        # next event:
        event = events.take()
        while event is None and not events.ended:
            event = events.feed(receive())         # None: a reply without an event
        # answer it:
        send(events.processed(event, TopicEventStatus.SUCCESS))
    """

    def __init__(self, initial: pb.SubscribeTopicEventsRequest) -> None:
        self._initial = initial
        self._pending: TopicEvent | None = None
        #: open() was called: the stream exists and may be answered on.
        self.opened = False
        #: The stream ended (the sidecar finished it, or we closed it).
        self.ended = False

    def open(self) -> pb.SubscribeTopicEventsRequest:
        """The stream's first request: the subscription itself."""
        self.opened = True
        return self._initial

    def confirmed(self, reply: pb.SubscribeTopicEventsResponse | None) -> None:
        """The sidecar's first reply confirms the subscription; an event in it waits for :meth:`take`."""
        if reply is None:
            raise LayottoError(grpc.StatusCode.UNAVAILABLE, "the sidecar closed the subscription at once")
        self._pending = self.feed(reply)

    def take(self) -> TopicEvent | None:
        """The event that came with the confirmation, once."""
        event, self._pending = self._pending, None
        return event

    def feed(self, reply: pb.SubscribeTopicEventsResponse | None) -> TopicEvent | None:
        """The event a reply delivers; ``None`` for other replies and at the end (then :attr:`ended`)."""
        if reply is None:
            self.ended = True
            return None
        if reply.HasField("event_message"):
            return topic_event(reply.event_message)
        return None

    def processed(self, event: TopicEvent, status: TopicEventStatus) -> pb.SubscribeTopicEventsRequest:
        """The answer telling the broker what became of ``event``."""
        if not self.opened:
            raise RuntimeError("the subscription is not started")
        return event_processed(event.id, status)


#: An event no handler of the app subscribes to: dropped rather than redelivered for ever
#: (as Layotto's Node SDK does).
UNHANDLED_STATUS: Final = TopicEventStatus.DROP


def handler_status(result: Any = None, error: BaseException | None = None) -> TopicEventStatus:
    """What an app subscriber's outcome tells the broker.

    * it raised :class:`~layotto_sdk.app.Drop`, or returned ``Drop``/``Drop()``/``DROP``: DROP;
    * it raised anything else, or returned ``False`` or ``RETRY``: RETRY (delivered again);
    * it returned anything else (``None``, ``SUCCESS``, ...): SUCCESS.
    """
    if error is not None:
        return TopicEventStatus.DROP if isinstance(error, Drop) else TopicEventStatus.RETRY
    if isinstance(result, TopicEventStatus):
        return result
    if result is Drop or isinstance(result, Drop):
        return TopicEventStatus.DROP
    if result is False:
        return TopicEventStatus.RETRY
    return TopicEventStatus.SUCCESS


# ---- configuration --------------------------------------------------------------------------


def configuration_items(items: Iterable[pb.ConfigurationItem]) -> list[ConfigurationItem]:
    return [ConfigurationItem(i.key, i.content, i.group, i.label, dict(i.tags), dict(i.metadata)) for i in items]


def configuration_changes(reply: pb.SubscribeConfigurationResponse | None) -> list[ConfigurationItem] | None:
    """The items that changed together in one reply of a watch; ``None`` once the stream ended."""
    return None if reply is None else configuration_items(reply.items)


def get_configuration(
    store: str,
    keys: Iterable[str],
    app_id: str,
    group: str,
    label: str,
    metadata: Metadata | None,
    subscribe_update: bool,
) -> Unary[Any, pb.GetConfigurationResponse, list[ConfigurationItem]]:
    request = pb.GetConfigurationRequest(
        store_name=store,
        app_id=app_id,
        group=group,
        label=label,
        keys=list(keys),
        metadata=_map(metadata),
        subscribe_update=subscribe_update,
    )

    def parse(reply: pb.GetConfigurationResponse) -> list[ConfigurationItem]:
        return configuration_items(reply.items)

    return Unary("GetConfiguration", request, pb.GetConfigurationResponse, parse)


def save_configuration(
    store: str, items: Iterable[ConfigurationItem], app_id: str, metadata: Metadata | None
) -> Unary[Any, empty_pb2.Empty, None]:
    request = pb.SaveConfigurationRequest(store_name=store, app_id=app_id, metadata=_map(metadata))
    for i in items:
        request.items.add(
            key=i.key, content=i.content, group=i.group, label=i.label, tags=dict(i.tags), metadata=dict(i.metadata)
        )
    return Unary("SaveConfiguration", request, empty_pb2.Empty, _none)


def delete_configuration(
    store: str, keys: Iterable[str], app_id: str, group: str, label: str, metadata: Metadata | None
) -> Unary[Any, empty_pb2.Empty, None]:
    request = pb.DeleteConfigurationRequest(
        store_name=store, app_id=app_id, group=group, label=label, keys=list(keys), metadata=_map(metadata)
    )
    return Unary("DeleteConfiguration", request, empty_pb2.Empty, _none)


def subscribe_configuration(
    store: str, keys: Iterable[str], app_id: str, group: str, label: str, metadata: Metadata | None
) -> pb.SubscribeConfigurationRequest:
    return pb.SubscribeConfigurationRequest(
        store_name=store, app_id=app_id, group=group, label=label, keys=list(keys), metadata=_map(metadata)
    )


# ---- invoke / bindings / secrets --------------------------------------------------------------


def invoke_service(
    app_id: str,
    method: str,
    data: Any,
    content_type: str | None,
    verb: HttpVerb | str | None,
    querystring: str,
) -> Unary[Any, pb.InvokeResponse, InvokeResponse]:
    if isinstance(verb, str):
        verb = HttpVerb[verb.upper()]
    if verb is None:
        verb = HttpVerb.GET if data is None else HttpVerb.POST
    message = pb.CommonInvokeRequest(
        method=method,
        http_extension=pb.HTTPExtension(verb=int(verb), querystring=querystring),  # type: ignore[arg-type]
    )
    if data is not None:
        payload, message.content_type = encode_with_type(data, content_type)
        message.data.value = payload
    elif content_type:
        message.content_type = content_type
    request = pb.InvokeServiceRequest(id=app_id, message=message)

    def parse(reply: pb.InvokeResponse) -> InvokeResponse:
        return InvokeResponse(reply.data.value, reply.content_type)

    return Unary("InvokeService", request, pb.InvokeResponse, parse)


def invoke_binding(
    name: str, operation: str, data: Any, metadata: Metadata | None
) -> Unary[Any, pb.InvokeBindingResponse, BindingResponse]:
    request = pb.InvokeBindingRequest(name=name, operation=operation, data=encode(data), metadata=_map(metadata))

    def parse(reply: pb.InvokeBindingResponse) -> BindingResponse:
        return BindingResponse(reply.data, dict(reply.metadata))

    return Unary("InvokeBinding", request, pb.InvokeBindingResponse, parse)


def get_secret(store: str, key: str, metadata: Metadata | None) -> Unary[Any, pb.GetSecretResponse, dict[str, str]]:
    request = pb.GetSecretRequest(store_name=store, key=key, metadata=_map(metadata))

    def parse(reply: pb.GetSecretResponse) -> dict[str, str]:
        return dict(reply.data)

    return Unary("GetSecret", request, pb.GetSecretResponse, parse)


def get_bulk_secret(
    store: str, metadata: Metadata | None
) -> Unary[Any, pb.GetBulkSecretResponse, dict[str, dict[str, str]]]:
    request = pb.GetBulkSecretRequest(store_name=store, metadata=_map(metadata))

    def parse(reply: pb.GetBulkSecretResponse) -> dict[str, dict[str, str]]:
        return {name: dict(secret.secrets) for name, secret in reply.data.items()}

    return Unary("GetBulkSecret", request, pb.GetBulkSecretResponse, parse)


# ---- file -----------------------------------------------------------------------------------


def get_file(store: str, name: str, metadata: Metadata | None) -> pb.GetFileRequest:
    return pb.GetFileRequest(store_name=store, name=name, metadata=_map(metadata))


class PutFileRequests:
    """The PutFile requests of one upload, chunk by chunk, for sync and async sources alike.

    Every chunk repeats store, name and metadata, as Layotto's JS SDK does (the sidecar reads
    them from the first one); an empty file is sent as one empty chunk.
    """

    def __init__(self, store: str, name: str, metadata: Metadata | None) -> None:
        self._store = store
        self._name = name
        self._metadata = _map(metadata)
        self._sent = False

    def chunk(self, data: bytes) -> pb.PutFileRequest:
        self._sent = True
        return pb.PutFileRequest(store_name=self._store, name=self._name, data=data, metadata=self._metadata)

    def end(self) -> pb.PutFileRequest | None:
        """The request still owed once the chunks ran out: one empty chunk if there were none."""
        return None if self._sent else self.chunk(b"")


def put_file_requests(
    store: str, name: str, chunks: Iterable[bytes], metadata: Metadata | None
) -> Iterator[pb.PutFileRequest]:
    requests = PutFileRequests(store, name, metadata)
    for chunk in chunks:
        yield requests.chunk(chunk)
    last = requests.end()
    if last is not None:
        yield last


def chunks_of(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), FILE_CHUNK_SIZE):
        yield data[start : start + FILE_CHUNK_SIZE]


def file_chunks(data: bytes | bytearray | Iterable[bytes]) -> Iterable[bytes]:
    """``put_file``'s data as chunks: bytes cut into :data:`FILE_CHUNK_SIZE` pieces, an iterable as it is."""
    return chunks_of(bytes(data)) if isinstance(data, bytes | bytearray) else data


def _file_request(store: str, name: str, metadata: Metadata | None) -> pb.FileRequest:
    return pb.FileRequest(store_name=store, name=name, metadata=_map(metadata))


def list_file(
    store: str, name: str, page_size: int, marker: str, metadata: Metadata | None
) -> Unary[Any, pb.ListFileResp, FileList]:
    request = pb.ListFileRequest(request=_file_request(store, name, metadata), page_size=page_size, marker=marker)

    def parse(reply: pb.ListFileResp) -> FileList:
        files = [FileInfo(f.file_name, f.size, f.last_modified, dict(f.metadata)) for f in reply.files]
        return FileList(files, reply.marker, reply.is_truncated)

    return Unary("ListFile", request, pb.ListFileResp, parse)


def del_file(store: str, name: str, metadata: Metadata | None) -> Unary[Any, empty_pb2.Empty, None]:
    request = pb.DelFileRequest(request=_file_request(store, name, metadata))
    return Unary("DelFile", request, empty_pb2.Empty, _none)


def get_file_meta(store: str, name: str, metadata: Metadata | None) -> Unary[Any, pb.GetFileMetaResponse, FileMeta]:
    request = pb.GetFileMetaRequest(request=_file_request(store, name, metadata))

    def parse(reply: pb.GetFileMetaResponse) -> FileMeta:
        meta = {k: list(v.value) for k, v in reply.response.metadata.items()}
        return FileMeta(reply.size, reply.last_modified, meta)

    return Unary("GetFileMeta", request, pb.GetFileMetaResponse, parse)


# ---- the sidecar (Dapr's API) -----------------------------------------------------------------


def _sidecar_metadata(reply: Any) -> SidecarMetadata:
    return SidecarMetadata(
        app_id=reply.id,
        runtime_version=reply.runtime_version,
        components=[
            RegisteredComponent(c.name, c.type, c.version, list(c.capabilities)) for c in reply.registered_components
        ],
        subscriptions=[
            ActiveSubscription(s.pubsub_name, s.topic, dict(s.metadata), s.dead_letter_topic)
            for s in reply.subscriptions
        ],
        extended=dict(reply.extended_metadata),
        enabled_features=list(reply.enabled_features),
    )


def get_metadata() -> Unary[Any, Any, SidecarMetadata]:
    request = dapr.MESSAGES["GetMetadataRequest"]()
    return Unary("GetMetadata", request, dapr.MESSAGES["GetMetadataResponse"], _sidecar_metadata, dapr.SERVICE)


def set_metadata(key: str, value: str) -> Unary[Any, Any, None]:
    request = dapr.MESSAGES["SetMetadataRequest"](key=key, value=value)
    return Unary("SetMetadata", request, dapr.MESSAGES["Empty"], _none, dapr.SERVICE)


def shutdown() -> Unary[Any, Any, None]:
    return Unary("Shutdown", dapr.MESSAGES["ShutdownRequest"](), dapr.MESSAGES["Empty"], _none, dapr.SERVICE)
