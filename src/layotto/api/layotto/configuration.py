"""Configuration API: Get/Save/DeleteConfiguration, and a bidi subscribe stream whose
subscriptions live exactly as long as the stream (upstream stops every subscription of the
store when any stream ends; we clean up only that stream's)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import empty_pb2

from layotto.api.common import (
    Answering,
    Answers,
    Ctx,
    OpenStreams,
    abort,
    answered,
    message_of,
    opened,
    release,
    settle,
)
from layotto.components.configuration.base import ChangeEvent, ConfigItem, GetRequest, Subscription
from layotto.core.configuration import ConfigurationCore
from layotto.core.configuration import ConfigurationProblem as P
from layotto.core.problems import Problem
from layotto.errors import ComponentError
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb

log = logging.getLogger("layotto.api.configuration")

_EMPTY = empty_pb2.Empty()


def _given(text: str) -> str:
    # Upstream strips spaces only, so " " and "  " mean "use the default".
    return text if text.replace(" ", "") else ""


def _to_pb(item: ConfigItem) -> pb.ConfigurationItem:
    return pb.ConfigurationItem(
        key=item.key, content=item.content, group=item.group, label=item.label, tags=item.tags, metadata=item.metadata
    )


class ConfigurationApi(Answering[ConfigurationCore]):
    def __init__(self, core: ConfigurationCore, answers: Answers) -> None:
        super().__init__(core, answers)
        #: The open subscribe streams, ended when the sidecar drains.
        self.streams = OpenStreams()

    def _scope(self, request: Any) -> GetRequest:
        return self.core.scope(
            self.core.store(request.store_name),
            request.app_id,
            _given(request.group),
            _given(request.label),
            request.keys,
            dict(request.metadata),
        )

    @answered
    async def GetConfiguration(self, request: pb.GetConfigurationRequest, context: Ctx) -> pb.GetConfigurationResponse:
        items = await self.core.get(request.store_name, self._scope(request))
        return pb.GetConfigurationResponse(items=[_to_pb(i) for i in items])

    @answered
    async def SaveConfiguration(self, request: pb.SaveConfigurationRequest, context: Ctx) -> empty_pb2.Empty:
        items = [
            ConfigItem(
                key=i.key,
                content=i.content,
                group=_given(i.group),
                label=_given(i.label),
                tags=dict(i.tags),
                metadata=dict(i.metadata),
            )
            for i in request.items
        ]
        await self.core.save(request.store_name, request.app_id, items, dict(request.metadata))
        return _EMPTY

    @answered
    async def DeleteConfiguration(self, request: pb.DeleteConfigurationRequest, context: Ctx) -> empty_pb2.Empty:
        await self.core.delete(request.store_name, self._scope(request))
        return _EMPTY

    async def drain_api(self) -> None:
        await self.streams.end_all()

    async def stop_api(self) -> None:
        # What streams cancelled since the drain still release goes before the stores close.
        await settle()

    async def SubscribeConfiguration(
        self, request_iterator: AsyncIterator[pb.SubscribeConfigurationRequest], context: Ctx
    ) -> None:
        async with self.streams.hold(context):
            await self._serve(request_iterator, context)

    async def _serve(self, request_iterator: AsyncIterator[pb.SubscribeConfigurationRequest], context: Ctx) -> None:
        outbox: asyncio.Queue[ChangeEvent | tuple[grpc.StatusCode, str]] = asyncio.Queue()
        subscriptions: list[Subscription] = []
        pumps: set[asyncio.Task[None]] = set()

        async def pump(sub: Subscription) -> None:
            try:
                async for event in sub:
                    await outbox.put(event)
            except ComponentError as exc:
                await outbox.put(message_of(self.answers, Problem(P.SUBSCRIPTION_ENDED, exc, id=sub.id)))

        async def read_requests() -> None:
            async for req in request_iterator:
                try:
                    sub = await opened(self.core.subscribe(req.store_name, self._scope(req)), _close)
                except Problem as problem:
                    await outbox.put(message_of(self.answers, problem))
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
            # Nothing here awaits before the subscriptions are closed: a handler cancelled
            # again while unwinding must still let go of them.
            reader.cancel()
            for sub in subscriptions:
                sub.close()
            for task in list(pumps):
                task.cancel()
            await release(_settled(reader, *pumps))
            log.debug("subscribe stream ended; closed %d subscriptions", len(subscriptions))


async def _close(sub: Subscription) -> None:
    sub.close()


async def _settled(*tasks: asyncio.Task[None]) -> None:
    """Until `tasks` (cancelled) are over, whatever they ended with."""
    await asyncio.gather(*tasks, return_exceptions=True)
