"""Dapr's Configuration API on the configuration components.

Dapr has no group/label: keys are read for this sidecar's app id under the store's default
group and label (request metadata `group` / `label` pick others), which is where the Layotto
API stores items saved without a group or label.

SubscribeConfiguration is a server stream whose first message carries only the subscription
id (the SDKs read it to learn the id); each later message carries changed items.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from layotto.api.common import Answering, Answers, Ctx, OpenStreams, answered, opened
from layotto.components.configuration.base import ConfigItem, GetRequest, Subscription
from layotto.core.configuration import ConfigurationCore
from layotto.core.configuration import ConfigurationProblem as P
from layotto.core.problems import Problem
from layotto.errors import ComponentError
from layotto_proto.dapr.proto.common.v1 import common_pb2
from layotto_proto.dapr.proto.runtime.v1 import configuration_pb2 as pb

log = logging.getLogger("layotto.api.dapr")

VERSION_KEY = "version"


def _item(item: ConfigItem) -> common_pb2.ConfigurationItem:
    return common_pb2.ConfigurationItem(
        value=item.content, version=item.metadata.get(VERSION_KEY, ""), metadata=item.metadata
    )


def dapr_scope(core: ConfigurationCore, store_name: str, keys: Iterable[str], metadata: dict[str, str]) -> GetRequest:
    """A Dapr request for `keys` of this sidecar's app: Dapr has no group or label, so the
    metadata `group` / `label` choose them (the store's defaults without)."""
    store = core.store(store_name)
    return core.scope(store, "", metadata.get("group", ""), metadata.get("label", ""), keys, metadata)


class DaprConfigurationApi(Answering[ConfigurationCore]):
    def __init__(self, core: ConfigurationCore, answers: Answers) -> None:
        super().__init__(core, answers)
        #: Open subscription streams by id, with the store each belongs to.
        self._streams: dict[str, tuple[str, Subscription]] = {}
        #: The same streams, ended when the sidecar drains.
        self.streams = OpenStreams()

    async def drain_api(self) -> None:
        await self.streams.end_all()

    async def stop_api(self) -> None:
        for _, sub in list(self._streams.values()):
            sub.close()

    def _scope(self, request: Any) -> GetRequest:
        return dapr_scope(self.core, request.store_name, request.keys, dict(request.metadata))

    @answered
    async def GetConfiguration(self, request: pb.GetConfigurationRequest, context: Ctx) -> pb.GetConfigurationResponse:
        items = await self.core.get(request.store_name, self._scope(request))
        return pb.GetConfigurationResponse(items={i.key: _item(i) for i in items})

    async def GetConfigurationAlpha1(
        self, request: pb.GetConfigurationRequest, context: Ctx
    ) -> pb.GetConfigurationResponse:
        return await self.GetConfiguration(request, context)

    @answered
    async def SubscribeConfiguration(self, request: pb.SubscribeConfigurationRequest, context: Ctx) -> None:
        async with self.streams.hold(context):
            await self._serve(request, context)

    async def _serve(self, request: pb.SubscribeConfigurationRequest, context: Ctx) -> None:
        sub = await opened(self.core.subscribe(request.store_name, self._scope(request)), _close)
        self._streams[sub.id] = (request.store_name, sub)
        try:
            await context.write(pb.SubscribeConfigurationResponse(id=sub.id))
            async for change in sub:
                if change.items:
                    reply = pb.SubscribeConfigurationResponse(id=sub.id, items={i.key: _item(i) for i in change.items})
                    await context.write(reply)
        except ComponentError as exc:
            raise Problem(P.SUBSCRIPTION_ENDED, exc, id=sub.id) from exc
        finally:
            self._streams.pop(sub.id, None)
            sub.close()

    async def SubscribeConfigurationAlpha1(self, request: pb.SubscribeConfigurationRequest, context: Ctx) -> None:
        await self.SubscribeConfiguration(request, context)

    @answered
    async def UnsubscribeConfiguration(
        self, request: pb.UnsubscribeConfigurationRequest, context: Ctx
    ) -> pb.UnsubscribeConfigurationResponse:
        self.core.store(request.store_name)
        found = self._streams.get(request.id)
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


async def _close(sub: Subscription) -> None:
    sub.close()
