"""Lifecycle.ApplyConfiguration: new metadata for a running component, of any block.

As upstream: the request names the component by its config key (`hellos`, `state`, `pub_subs`,
`config_store`, `secret_store`, ..., `custom_component.<kind>`; the block names of Dapr's
manifests, `pubsub`, `secretstores`, ..., are taken too) and its name, and reaches it when it
applies new metadata (`components.dynamic.DynamicComponent`); for any other it answers
"component not found". Calls to one component are applied one at a time.
"""

from __future__ import annotations

import asyncio

import grpc

from layotto.api.layotto.base import Ctx, abort
from layotto.components.base import Component
from layotto.components.dynamic import DynamicComponent
from layotto.config.layotto_json import BLOCK_KEYS, CUSTOM_KEY
from layotto.config.model import BLOCKS
from layotto.errors import ConfigError, LayottoError
from layotto.runtime.runtime import Runtime
from layotto_proto.spec.proto.runtime.v1 import lifecycle_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import lifecycle_pb2_grpc


class LifecycleService(lifecycle_pb2_grpc.LifecycleServicer):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def _find(self, kind: str, name: str) -> tuple[tuple[str, str], Component | None]:
        """The component `kind` (a config key or a block) and `name` denote, if any."""
        prefix, dot, custom_kind = kind.partition(".")
        if prefix == CUSTOM_KEY and dot:
            found = self.rt.custom(custom_kind).get(name)
            return ("custom", name), found
        block = BLOCK_KEYS.get(kind, kind if kind in BLOCKS and kind != "custom" else "")
        return (block, name), self.rt.get(block, name) if block else None

    async def ApplyConfiguration(self, request: pb.DynamicConfiguration, context: Ctx) -> pb.ApplyConfigurationResponse:
        config = request.component_config
        for field in ("kind", "name", "metadata"):
            if not getattr(config, field):
                await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"field {field} is not configured")
        key, component = self._find(config.kind, config.name)
        if not isinstance(component, DynamicComponent):
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"component not found. kind: {config.kind} , name: {config.name}",
            )
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                await component.apply_configuration(dict(config.metadata))
        except ConfigError as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except LayottoError as exc:
            await abort(context, grpc.StatusCode.UNKNOWN, str(exc))
        return pb.ApplyConfigurationResponse()

    async def start_api(self) -> None:
        pass

    async def stop_api(self) -> None:
        pass


def register(server: grpc.aio.Server, rt: Runtime) -> LifecycleService:
    service = LifecycleService(rt)
    lifecycle_pb2_grpc.add_LifecycleServicer_to_server(service, server)
    return service
