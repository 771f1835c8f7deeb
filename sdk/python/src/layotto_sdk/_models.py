"""The values the SDK takes and returns: plain dataclasses and enums, no protobuf."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Concurrency(enum.IntEnum):
    """How a write treats a concurrent writer (``StateOptions.concurrency``)."""

    UNSPECIFIED = 0
    #: The write fails unless the given etag matches (or, without an etag, the key is new).
    FIRST_WRITE = 1
    #: The write always wins; the etag is ignored.
    LAST_WRITE = 2


class Consistency(enum.IntEnum):
    """Read/write consistency asked of the store (``StateOptions.consistency``)."""

    UNSPECIFIED = 0
    EVENTUAL = 1
    STRONG = 2


class LockStatus(enum.IntEnum):
    """Result of :meth:`Client.unlock` and :meth:`Client.lock_keep_alive`."""

    SUCCESS = 0
    #: The lock does not exist (never taken, released, or expired).
    LOCK_UNEXIST = 1
    #: Someone else owns the lock.
    LOCK_BELONG_TO_OTHERS = 2
    INTERNAL_ERROR = 3


class TopicEventStatus(enum.IntEnum):
    """What a subscriber tells the broker about one event."""

    #: Processed: acknowledge it.
    SUCCESS = 0
    #: Not processed: deliver it again later.
    RETRY = 1
    #: Cannot be processed: acknowledge it without processing (dead-letter it where supported).
    DROP = 2


class HttpVerb(enum.IntEnum):
    """HTTP verb of a service invocation (``HTTPExtension.Verb``)."""

    NONE = 0
    GET = 1
    HEAD = 2
    POST = 3
    PUT = 4
    DELETE = 5
    CONNECT = 6
    OPTIONS = 7
    TRACE = 8
    PATCH = 9


class _Payload:
    """Decoding helpers for anything that carries a ``data: bytes`` payload."""

    __slots__ = ()
    data: bytes

    def text(self, encoding: str = "utf-8") -> str:
        """The payload decoded as text."""
        return self.data.decode(encoding)

    def json(self) -> Any:
        """The payload parsed as JSON."""
        return json.loads(self.data)


# ---- hello -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HelloResponse:
    """Reply of :meth:`Client.say_hello`: the greeting and the echoed ``data``."""

    hello: str
    data: bytes | None = None


# ---- state --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateItem:
    """One key to save, or to delete in :meth:`Client.delete_bulk_state`.

    ``value`` may be ``bytes``, ``str`` (sent as UTF-8) or any JSON-serialisable object
    (sent as JSON). ``etag`` makes the write conditional: it only succeeds while the
    stored etag is still the given one. ``ttl`` (seconds) sets the ``ttlInSeconds``
    metadata understood by stores that expire keys.
    """

    key: str
    value: Any = b""
    etag: str | None = None
    metadata: Mapping[str, str] | None = None
    concurrency: Concurrency | None = None
    consistency: Consistency | None = None
    ttl: int | None = None


@dataclass(frozen=True, slots=True)
class Upsert:
    """A transaction operation that writes ``key`` (see :class:`StateItem` for the fields)."""

    key: str
    value: Any
    etag: str | None = None
    metadata: Mapping[str, str] | None = None
    concurrency: Concurrency | None = None
    consistency: Consistency | None = None
    ttl: int | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """A transaction operation that deletes ``key`` (conditionally, with ``etag``)."""

    key: str
    etag: str | None = None
    metadata: Mapping[str, str] | None = None
    concurrency: Concurrency | None = None
    consistency: Consistency | None = None


@dataclass(frozen=True, slots=True)
class State(_Payload):
    """A stored value, as returned by :meth:`Client.get_state`."""

    key: str
    data: bytes
    etag: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BulkStateItem(_Payload):
    """One entry of :meth:`Client.get_bulk_state`.

    A key that does not exist comes back with empty ``data`` and ``etag`` (``found`` is
    false); a key the store failed to read has ``error`` set.
    """

    key: str
    data: bytes
    etag: str
    error: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return bool(self.data or self.etag)


# ---- lock ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Lease:
    """A held lock, yielded by ``with client.lock(...) as lease``.

    ``lost`` turns true when a background keep-alive found that the lock was no
    longer ours (it expired and someone else took it); the work done under the lock
    should then be considered unprotected.
    """

    store: str
    resource: str
    owner: str
    ttl: int
    lost: bool = False


# ---- pubsub --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopicEvent(_Payload):
    """One event delivered to a subscriber (a CloudEvent's attributes and its payload)."""

    id: str
    topic: str
    pubsub_name: str
    data: bytes
    data_content_type: str = ""
    source: str = ""
    type: str = ""
    spec_version: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


# ---- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigurationItem:
    """A configuration entry: ``content`` under ``key`` in ``group``/``label``."""

    key: str
    content: str = ""
    group: str = ""
    label: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)


# ---- invoke / bindings -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InvokeResponse(_Payload):
    """The callee's reply to :meth:`Client.invoke_service`."""

    data: bytes
    content_type: str = ""


@dataclass(frozen=True, slots=True)
class BindingResponse(_Payload):
    """The reply of an output binding (:meth:`Client.invoke_binding`)."""

    data: bytes
    metadata: dict[str, str] = field(default_factory=dict)


# ---- file ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileInfo:
    """One entry of :meth:`Client.list_file`."""

    name: str
    size: int
    last_modified: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FileList:
    """A page of :meth:`Client.list_file`; pass ``marker`` back to get the next page."""

    files: list[FileInfo]
    marker: str = ""
    is_truncated: bool = False


@dataclass(frozen=True, slots=True)
class FileMeta:
    """What :meth:`Client.get_file_meta` knows about a file."""

    size: int
    last_modified: str
    metadata: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class RegisteredComponent:
    """A component the sidecar loaded (:meth:`Client.get_metadata`)."""

    name: str
    type: str
    version: str
    capabilities: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ActiveSubscription:
    """A topic the sidecar delivers to the app (:meth:`Client.get_metadata`)."""

    pubsub: str
    topic: str
    metadata: dict[str, str] = field(default_factory=dict)
    dead_letter_topic: str = ""


@dataclass(frozen=True)
class SidecarMetadata:
    """What the sidecar reports about itself: Dapr's GetMetadata."""

    app_id: str
    runtime_version: str
    components: list[RegisteredComponent]
    subscriptions: list[ActiveSubscription]
    #: Attributes set with :meth:`Client.set_metadata` (and the sidecar's own).
    extended: dict[str, str]
    enabled_features: list[str]


@dataclass(frozen=True)
class BulkPublishFailure:
    """An event of :meth:`Client.publish_events` that was not published: its index (as a
    string) and why."""

    entry_id: str
    error: str
