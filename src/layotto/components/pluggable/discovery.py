"""Finding pluggable components: every Unix socket in the socket folders is asked, with gRPC
server reflection, which services it serves; each block it serves a service of becomes a
component type of that block named after the socket file (`my-store.sock`: type `my-store`),
as daprd (pkg/components/pluggable/discovery.go) and Layotto (pkg/runtime/pluggable) do.

Unlike daprd, which refuses to start, a socket that does not answer (its process is gone and
left the file, or it hangs) is a warning naming it: the sidecar starts without that type.
"""

from __future__ import annotations

import asyncio
import functools
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import grpc
from grpc_reflection.v1alpha import reflection_pb2

from layotto.components.base import Component

#: daprd's folder and its default; Layotto's (mosn/layotto pkg/runtime/pluggable/discover.go).
DAPR_FOLDER_ENV = "DAPR_COMPONENTS_SOCKETS_FOLDER"
DAPR_DEFAULT_FOLDER = "/tmp/dapr-components-sockets"
LAYOTTO_FOLDER_ENV = "LAYOTTO_COMPONENTS_SOCKETS_FOLDER"
LAYOTTO_DEFAULT_FOLDER = "/tmp/runtime/component-sockets"

#: How long one socket has to list its services.
TIMEOUT = 3.0

STATE = "dapr.proto.components.v1.StateStore"
TRANSACTIONAL_STATE = "dapr.proto.components.v1.TransactionalStateStore"
QUERIABLE_STATE = "dapr.proto.components.v1.QueriableStateStore"
PUBSUB = "dapr.proto.components.v1.PubSub"
INPUT_BINDING = "dapr.proto.components.v1.InputBinding"
OUTPUT_BINDING = "dapr.proto.components.v1.OutputBinding"
SECRET_STORE = "dapr.proto.components.v1.SecretStore"
HELLO = "spec.proto.pluggable.v1.hello.Hello"

#: The services that make a socket a component of a block (the state store's transactional and
#: query services add to a StateStore, they make none).
BLOCK_OF: Mapping[str, str] = {
    STATE: "state",
    PUBSUB: "pubsub",
    INPUT_BINDING: "bindings",
    OUTPUT_BINDING: "bindings",
    SECRET_STORE: "secretstores",
    HELLO: "hello",
}

_REFLECTION = ("grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection")


def default_folders(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """daprd's socket folder and Layotto's, from their variables, else their defaults."""
    env = os.environ if environ is None else environ
    folders = (env.get(DAPR_FOLDER_ENV) or DAPR_DEFAULT_FOLDER, env.get(LAYOTTO_FOLDER_ENV) or LAYOTTO_DEFAULT_FOLDER)
    return tuple(dict.fromkeys(folders))


@dataclass(frozen=True)
class PluggableType:
    """A block's component type served on `socket`."""

    block: str
    name: str
    socket: str
    #: Every service the socket serves (a state store's TransactionalStateStore, ...).
    services: frozenset[str]

    def create(self) -> Component:
        """A component of this type (not initialised: its `init` opens the channel)."""
        adapter = _adapters()[self.block]
        return adapter(self.socket, self.name, self.services)


@dataclass
class Discovery:
    types: list[PluggableType] = field(default_factory=list)
    #: One line per socket left out, naming it and why.
    warnings: list[str] = field(default_factory=list)


#: An adapter class: made with (socket, type name, services).
Adapter = Callable[[str, str, frozenset[str]], Component]


@functools.cache
def _adapters() -> dict[str, Adapter]:
    from layotto.components.pluggable.bindings import PluggableBinding
    from layotto.components.pluggable.hello import PluggableHello
    from layotto.components.pluggable.pubsub import PluggablePubSub
    from layotto.components.pluggable.secretstores import PluggableSecretStore
    from layotto.components.pluggable.state import PluggableStateStore

    return {
        "state": PluggableStateStore,
        "pubsub": PluggablePubSub,
        "bindings": PluggableBinding,
        "secretstores": PluggableSecretStore,
        "hello": PluggableHello,
    }


def _sockets(folder: str, warnings: list[str]) -> list[str]:
    """The sockets in `folder` (none when it does not exist, as daprd)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    except OSError as exc:
        warnings.append(f"pluggable components: cannot list the socket folder {folder}: {exc.strerror or exc}")
        return []
    found = []
    for entry in entries:
        try:
            mode = entry.stat().st_mode
        except OSError:  # removed while listed
            continue
        if stat.S_ISSOCK(mode):
            found.append(entry.path)
        elif not stat.S_ISDIR(mode):
            warnings.append(f"pluggable components: {entry.path} is not a Unix socket; skipped")
    return found


async def list_services(socket: str, within: float = TIMEOUT) -> list[str]:
    """The services `socket` serves, by gRPC server reflection (v1alpha, as daprd asks, else v1).
    Raises grpc.aio.AioRpcError when the socket does not answer."""
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async with grpc.aio.insecure_channel(f"unix:{socket}") as channel:
        for index, service in enumerate(_REFLECTION):
            method = channel.stream_stream(
                f"/{service}/ServerReflectionInfo",
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
            )
            try:
                call = method(iter([request]), timeout=within)
                async for reply in call:
                    if reply.HasField("error_response"):
                        raise ValueError(reply.error_response.error_message)
                    return [s.name for s in reply.list_services_response.service]
                return []
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED or index == len(_REFLECTION) - 1:
                    raise
    return []


async def _ask(socket: str, within: float) -> tuple[list[str], str]:
    """(services, "") or ([], why the socket is left out)."""
    try:
        return await list_services(socket, within), ""
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            return [], "it does not serve gRPC server reflection, through which the sidecar asks what it serves"
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return [], f"it did not answer within {within:g}s"
        why = exc.details() or exc.code().name
        return [], f"nothing answers on it ({why}); remove it if its component has stopped"
    except ValueError as exc:
        return [], f"its reflection service failed: {exc}"


async def discover(folders: Iterable[str], within: float = TIMEOUT) -> Discovery:
    """The component types served in `folders`, asked concurrently. A name served twice for one
    block (the same file name in two folders) is the first folder's."""
    found = Discovery()
    sockets = [s for folder in dict.fromkeys(folders) for s in _sockets(folder, found.warnings)]
    answers = await asyncio.gather(*(_ask(socket, within) for socket in sockets))
    taken: dict[tuple[str, str], str] = {}
    for socket, (services, problem) in zip(sockets, answers, strict=True):
        if problem:
            found.warnings.append(f"pluggable component socket {socket} is left out: {problem}")
            continue
        name = os.path.splitext(os.path.basename(socket))[0]
        blocks = sorted({BLOCK_OF[s] for s in services if s in BLOCK_OF})
        if not blocks:
            listed = ", ".join(s for s in services if not s.startswith("grpc.")) or "nothing else"
            found.warnings.append(
                f"pluggable component socket {socket} serves no component service ({listed}); skipped"
            )
            continue
        for block in blocks:
            first = taken.setdefault((block, name), socket)
            if first != socket:
                found.warnings.append(
                    f"pluggable component socket {socket} is left out: {first} serves the {block} type '{name}'"
                )
                continue
            found.types.append(PluggableType(block, name, socket, frozenset(services)))
    return found
