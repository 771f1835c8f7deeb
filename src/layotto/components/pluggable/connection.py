"""The gRPC channel of one pluggable component, and what the component's answers mean here.

A channel is a pluggable component's connection, as a client pool is a built-in component's:
grpc reconnects it by itself when the component process restarts on its socket, and until then
every call fails fast with UNAVAILABLE, which is a BackendUnavailableError here, so the APIs
answer UNAVAILABLE with this component's name and socket in the message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

import grpc
from google.protobuf.message import Message

from layotto.components.base import Metadata
from layotto.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    ComponentError,
    InvalidArgumentError,
    NotFoundError,
    UnsupportedError,
)

log = logging.getLogger("layotto.pluggable")

#: daprd's header naming the component a call is for: one component process may serve several
#: components of its type over one socket (dapr/dapr pkg/components/pluggable/grpc.go).
INSTANCE_HEADER = "x-component-instance"

#: Init and Features: the component reads its metadata and may connect to its own backend.
INIT_TIMEOUT = 10.0
PING_TIMEOUT = 2.0

_OPTIONS: list[tuple[str, Any]] = [
    # A component process that restarts is back at the next attempt, not after grpc's default
    # backoff (up to two minutes between attempts).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # The APIs bound what comes in; what goes to the component and back is the same data.
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
]

M = TypeVar("M", bound=Message)
#: Turns a status's details into the error a block gives that status (state: FAILED_PRECONDITION
#: is an etag mismatch).
ErrorOf = Callable[[str], ComponentError]


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def properties(metadata: Metadata) -> dict[str, str]:
    """The component's metadata as Dapr's MetadataRequest carries it (strings; other JSON values
    in their JSON text)."""
    return {key: metadata.get_str(key) for key in metadata}


def features_of(reported: Iterable[str], known: Mapping[str, Any], what: str) -> frozenset[Any]:
    """The block's features among those the component reports by Dapr's names; the others
    (Dapr's features this runtime has no use for) are left out."""
    found = set()
    for name in reported:
        feature = known.get(name.upper())
        if feature is None:
            log.debug("%s reports feature %r, which this block does not have", what, name)
        else:
            found.add(feature)
    return frozenset(found)


class Connection:
    """The channel to `socket`, opened for one component by `open(name)`."""

    def __init__(self, socket: str, block: str) -> None:
        self.socket = socket
        self.block = block
        self.name = ""
        self._channel: grpc.aio.Channel | None = None
        self._metadata: tuple[tuple[str, str], ...] = ()
        self._unary: dict[str, grpc.aio.UnaryUnaryMultiCallable[Message, Message]] = {}

    @property
    def what(self) -> str:
        """The component, as errors and logs name it."""
        return f"pluggable {self.block} component '{self.name}' ({self.socket})"

    def open(self, name: str) -> None:
        self.name = name
        self._channel = grpc.aio.insecure_channel(f"unix:{self.socket}", options=_OPTIONS)
        self._metadata = ((INSTANCE_HEADER, name),)

    @property
    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            raise ComponentError(f"pluggable {self.block} component of {self.socket} is not initialised")
        return self._channel

    async def unary(
        self,
        service: str,
        method: str,
        request: Message,
        reply: type[M],
        *,
        within: float | None = None,
        errors: Mapping[grpc.StatusCode, ErrorOf] | None = None,
    ) -> M:
        """Call `service`.`method` (with a deadline `within` seconds away); a failure is the
        ComponentError of its status (`errors` first, then `error`'s)."""
        path = f"/{service}/{method}"
        call = self._unary.get(path)
        if call is None:
            call = self.channel.unary_unary(path, request_serializer=_serialize, response_deserializer=reply.FromString)
            self._unary[path] = call
        try:
            answer = await call(request, timeout=within, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise self.failure(exc, method, errors) from None
        return cast(M, answer)

    def stream(self, service: str, method: str, reply: type[M]) -> grpc.aio.StreamStreamCall[Message, M]:
        """A bidirectional stream (`write`, `read`), for pulling messages and events."""
        path = f"/{service}/{method}"
        call = self.channel.stream_stream(path, request_serializer=_serialize, response_deserializer=reply.FromString)
        return cast("grpc.aio.StreamStreamCall[Message, M]", call(None, metadata=self._metadata))

    def failure(
        self, exc: grpc.aio.AioRpcError, method: str, errors: Mapping[grpc.StatusCode, ErrorOf] | None = None
    ) -> ComponentError:
        """The ComponentError of a failed call of `method`."""
        return self.error(exc.code(), exc.details(), method, errors)

    def error(
        self,
        code: grpc.StatusCode,
        details: str | None,
        method: str,
        errors: Mapping[grpc.StatusCode, ErrorOf] | None = None,
    ) -> ComponentError:
        """The ComponentError of status `code` with `details` from `method`."""
        details = details or code.name
        special = (errors or {}).get(code)
        if special is not None:
            return special(details)
        if code == grpc.StatusCode.UNAVAILABLE:
            return BackendUnavailableError(f"{self.what} is unavailable: {details}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return BackendTimeoutError(f"{self.what} did not answer {method} in time")
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return UnsupportedError(f"{self.what} does not implement {method}")
        if code == grpc.StatusCode.NOT_FOUND:
            return NotFoundError(details)
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return InvalidArgumentError(details)
        return ComponentError(details)

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        self._unary.clear()
        if channel is not None:
            await channel.close(None)
