"""Configuration API: upstream Layotto's codes and messages, and a bidi subscribe stream whose
subscriptions live exactly as long as the stream (upstream stops every subscription of the
store when any stream ends; we clean up only that stream's)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable

import grpc
from google.protobuf import empty_pb2

from layotto.api.common import failure_code
from layotto.api.layotto.base import ApiBase, Ctx, abort
from layotto.components.configuration.base import (
    ChangeEvent,
    ConfigItem,
    ConfigurationStore,
    GetRequest,
    SetRequest,
    Subscription,
)
from layotto.errors import ComponentError
from layotto.proto.spec.proto.runtime.v1 import runtime_pb2 as pb

log = logging.getLogger("layotto.api.configuration")

_EMPTY = empty_pb2.Empty()


def _blank(text: str) -> bool:
    # Upstream strips spaces only, so " " and "  " mean "use the default".
    return not text.replace(" ", "")


def _to_pb(item: ConfigItem) -> pb.ConfigurationItem:
    return pb.ConfigurationItem(
        key=item.key, content=item.content, group=item.group, label=item.label, tags=item.tags, metadata=item.metadata
    )


def _code(exc: ComponentError) -> grpc.StatusCode:
    return failure_code(exc, grpc.StatusCode.UNKNOWN)


class ConfigurationApi(ApiBase):
    _config_stores: dict[str, ConfigurationStore]

    async def start_api(self) -> None:
        self._config_stores = {
            name: c for name, c in self.rt.components("configuration").items() if isinstance(c, ConfigurationStore)
        }

    def _config_store(self, name: str) -> ConfigurationStore | None:
        stores: dict[str, ConfigurationStore] = getattr(self, "_config_stores", {})
        return stores.get(name)

    async def _need_store(self, name: str, context: Ctx) -> ConfigurationStore:
        store = self._config_store(name)
        if store is None:
            await abort(context, grpc.StatusCode.UNKNOWN, f"configure store [{name}] don't support now")
        return store

    def _scoped(
        self,
        store: ConfigurationStore,
        app_id: str,
        group: str,
        label: str,
        keys: Iterable[str],
        metadata: dict[str, str],
    ) -> GetRequest:
        return GetRequest(
            app_id=app_id or self.rt.app_id,
            group=store.default_group if _blank(group) else group,
            label=store.default_label if _blank(label) else label,
            keys=list(keys),
            metadata=metadata,
        )

    async def GetConfiguration(self, request: pb.GetConfigurationRequest, context: Ctx) -> pb.GetConfigurationResponse:
        store = await self._need_store(request.store_name, context)
        scoped = self._scoped(store, request.app_id, request.group, request.label, request.keys, dict(request.metadata))
        try:
            items = await store.get(scoped)
        except ComponentError as exc:
            await abort(context, _code(exc), f"get configuration failed with error: {exc}")
        return pb.GetConfigurationResponse(items=[_to_pb(i) for i in items])

    async def SaveConfiguration(self, request: pb.SaveConfigurationRequest, context: Ctx) -> empty_pb2.Empty:
        store = await self._need_store(request.store_name, context)
        items = [
            ConfigItem(
                key=i.key,
                content=i.content,
                group=store.default_group if _blank(i.group) else i.group,
                label=store.default_label if _blank(i.label) else i.label,
                tags=dict(i.tags),
                metadata=dict(i.metadata),
            )
            for i in request.items
        ]
        try:
            await store.set(SetRequest(request.app_id or self.rt.app_id, items, dict(request.metadata)))
        except ComponentError as exc:
            # Upstream returns the component's error as it is: code Unknown with its text.
            await abort(context, _code(exc), str(exc))
        return _EMPTY

    async def DeleteConfiguration(self, request: pb.DeleteConfigurationRequest, context: Ctx) -> empty_pb2.Empty:
        store = await self._need_store(request.store_name, context)
        scoped = self._scoped(store, request.app_id, request.group, request.label, request.keys, dict(request.metadata))
        try:
            await store.delete(scoped)
        except ComponentError as exc:
            await abort(context, _code(exc), str(exc))
        return _EMPTY

    async def SubscribeConfiguration(
        self, request_iterator: AsyncIterator[pb.SubscribeConfigurationRequest], context: Ctx
    ) -> None:
        outbox: asyncio.Queue[ChangeEvent | tuple[grpc.StatusCode, str]] = asyncio.Queue()
        subscriptions: list[Subscription] = []
        pumps: set[asyncio.Task[None]] = set()

        async def pump(sub: Subscription) -> None:
            try:
                async for event in sub:
                    await outbox.put(event)
            except ComponentError as exc:
                await outbox.put((_code(exc), f"subscribe configuration failed with error: {exc}"))

        async def read_requests() -> None:
            async for req in request_iterator:
                store = self._config_store(req.store_name)
                if store is None:
                    await outbox.put((grpc.StatusCode.UNKNOWN, f"configure store [{req.store_name}] don't support now"))
                    return
                scoped = self._scoped(store, req.app_id, req.group, req.label, req.keys, dict(req.metadata))
                try:
                    sub = await store.subscribe(scoped)
                except ComponentError as exc:
                    await outbox.put((_code(exc), f"subscribe configuration failed with error: {exc}"))
                    return
                subscriptions.append(sub)
                task = asyncio.create_task(pump(sub))
                pumps.add(task)
                task.add_done_callback(pumps.discard)
            # The client half-closed: no more subscriptions, but pushes go on until it cancels.

        reader = asyncio.create_task(read_requests())
        try:
            while True:
                message = await outbox.get()
                if isinstance(message, tuple):
                    await abort(context, *message)
                await context.write(
                    pb.SubscribeConfigurationResponse(
                        store_name=message.store_name,
                        app_id=message.app_id,
                        items=[_to_pb(i) for i in message.items],
                    )
                )
        finally:
            reader.cancel()
            for sub in subscriptions:
                sub.close()
            for task in list(pumps):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            log.debug("subscribe stream ended; closed %d subscriptions", len(subscriptions))
