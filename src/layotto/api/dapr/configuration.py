"""Dapr's Configuration API on the configuration components.

Dapr has no group/label: keys are read for this sidecar's app id under the store's default
group and label (request metadata `group` / `label` pick others), which is where the Layotto
API stores items saved without a group or label.

SubscribeConfiguration is a server stream whose first message carries only the subscription
id (the SDKs read it to learn the id); each later message carries changed items.
"""

from __future__ import annotations

import asyncio
import logging

from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import configuration_pb2 as pb

from layotto.api.common import find
from layotto.api.dapr.base import ApiBase, Ctx, abort, code_of
from layotto.components.configuration.base import ConfigItem, ConfigurationStore, GetRequest, Subscription
from layotto.errors import ComponentError

log = logging.getLogger("layotto.api.dapr")

VERSION_KEY = "version"


def _item(item: ConfigItem) -> common_pb2.ConfigurationItem:
    return common_pb2.ConfigurationItem(
        value=item.content, version=item.metadata.get(VERSION_KEY, ""), metadata=item.metadata
    )


class DaprConfigurationApi(ApiBase):
    _dapr_configs: dict[str, ConfigurationStore]
    #: Open subscription streams by id, with the store each belongs to.
    _dapr_config_streams: dict[str, tuple[str, Subscription]]

    async def start_api(self) -> None:
        self._dapr_configs = {
            n: c for n, c in self.rt.components("configuration").items() if isinstance(c, ConfigurationStore)
        }
        self._dapr_config_streams = {}

    async def stop_api(self) -> None:
        for _, sub in list(getattr(self, "_dapr_config_streams", {}).values()):
            sub.close()

    async def _config_store(self, name: str, context: Ctx) -> ConfigurationStore:
        stores: dict[str, ConfigurationStore] = getattr(self, "_dapr_configs", {})
        return await find(
            stores,
            name,
            context,
            none_configured="configuration stores not configured",
            not_found=f"configuration store {name} not found",
        )

    def _request(self, store: ConfigurationStore, keys: list[str], metadata: dict[str, str]) -> GetRequest:
        return GetRequest(
            app_id=self.rt.app_id,
            group=metadata.get("group") or store.default_group,
            label=metadata.get("label") or store.default_label,
            keys=keys,
            metadata=metadata,
        )

    async def GetConfiguration(self, request: pb.GetConfigurationRequest, context: Ctx) -> pb.GetConfigurationResponse:
        store = await self._config_store(request.store_name, context)
        keys = list(request.keys)
        try:
            items = await store.get(self._request(store, keys, dict(request.metadata)))
        except ComponentError as exc:
            await abort(
                context,
                code_of(exc),
                f"failed to get {keys} from Configuration store {request.store_name}: {exc}",
            )
        return pb.GetConfigurationResponse(items={i.key: _item(i) for i in items})

    async def GetConfigurationAlpha1(
        self, request: pb.GetConfigurationRequest, context: Ctx
    ) -> pb.GetConfigurationResponse:
        return await self.GetConfiguration(request, context)

    async def SubscribeConfiguration(self, request: pb.SubscribeConfigurationRequest, context: Ctx) -> None:
        store = await self._config_store(request.store_name, context)
        keys = list(request.keys)
        try:
            sub = await store.subscribe(self._request(store, keys, dict(request.metadata)))
        except ComponentError as exc:
            await abort(
                context,
                code_of(exc),
                f"failed to subscribe {keys} from Configuration store {request.store_name}: {exc}",
            )
        streams = self._dapr_config_streams
        streams[sub.id] = (request.store_name, sub)
        try:
            await context.write(pb.SubscribeConfigurationResponse(id=sub.id))
            async for change in sub:
                if change.items:
                    reply = pb.SubscribeConfigurationResponse(id=sub.id, items={i.key: _item(i) for i in change.items})
                    await context.write(reply)
        except ComponentError as exc:
            await abort(context, code_of(exc), f"configuration subscription {sub.id} ended: {exc}")
        except asyncio.CancelledError:
            raise
        finally:
            streams.pop(sub.id, None)
            sub.close()

    async def SubscribeConfigurationAlpha1(self, request: pb.SubscribeConfigurationRequest, context: Ctx) -> None:
        await self.SubscribeConfiguration(request, context)

    async def UnsubscribeConfiguration(
        self, request: pb.UnsubscribeConfigurationRequest, context: Ctx
    ) -> pb.UnsubscribeConfigurationResponse:
        await self._config_store(request.store_name, context)
        found = self._dapr_config_streams.get(request.id)
        if found is None or found[0] != request.store_name:
            return pb.UnsubscribeConfigurationResponse(
                ok=False, message=f"failed to unsubscribe to configuration request {request.id}: not found"
            )
        # Closing ends the stream: its reader sees the end and the RPC completes normally.
        found[1].close()
        return pb.UnsubscribeConfigurationResponse(ok=True)

    async def UnsubscribeConfigurationAlpha1(
        self, request: pb.UnsubscribeConfigurationRequest, context: Ctx
    ) -> pb.UnsubscribeConfigurationResponse:
        return await self.UnsubscribeConfiguration(request, context)
