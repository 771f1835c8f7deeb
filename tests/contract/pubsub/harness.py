"""Sidecar + test app + unique topics for one backend, cleaned up afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from layotto.runtime.delivery import DeliveryService
from layotto.sidecar import Sidecar
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.contract.pubsub.app import Behaviour, CallbackApp, always_success
from tests.contract.pubsub.backends import Row
from tests.support.sidecar import running_sidecar

PUBSUB = "ps"


def new_topic() -> str:
    return f"t-{uuid.uuid4().hex[:16]}"


@dataclass
class Env:
    backend: Row
    app: CallbackApp
    sidecar: Sidecar
    stub: runtime_pb2_grpc.RuntimeStub
    app_id: str
    topics: list[str] = field(default_factory=list)

    @property
    def delivery(self) -> DeliveryService:
        return next(s for s in self.sidecar.rt.services if isinstance(s, DeliveryService))

    async def publish(
        self, topic: str, data: bytes, content_type: str = "text/plain", metadata: dict[str, str] | None = None
    ) -> None:
        await self.stub.PublishEvent(
            pb.PublishEventRequest(
                pubsub_name=PUBSUB, topic=topic, data=data, data_content_type=content_type, metadata=metadata or {}
            )
        )


@contextlib.asynccontextmanager
async def cleanup_after(backend: Row, topics: list[str], groups: list[str]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        if backend.cleanup is not None:
            await backend.cleanup(topics, groups)


def grpc_config(backend: Row, app_id: str, callback_port: int, **component_extra: str) -> dict[str, Any]:
    return {
        "app": {"app_id": app_id, "grpc_callback_port": callback_port},
        "pub_subs": {PUBSUB: backend.entry(**component_extra)},
    }


@contextlib.asynccontextmanager
async def pubsub_env(
    backend: Row,
    subscriptions: list[tuple[str, dict[str, str]]],
    behaviour: Behaviour = always_success,
    *,
    extra_topics: list[str] | None = None,
    app_id: str | None = None,
    **component_extra: str,
) -> AsyncIterator[Env]:
    """A running app subscribed to `subscriptions` (topic, metadata) and a sidecar serving it;
    yields once the sidecar has subscribed every topic."""
    backend.require()
    app_id = app_id or f"app-{uuid.uuid4().hex[:8]}"
    app = CallbackApp([(PUBSUB, t, m) for t, m in subscriptions], behaviour)
    topics = [t for t, _ in subscriptions] + list(extra_topics or [])
    config = grpc_config(backend, app_id, app.port, **component_extra)
    async with cleanup_after(backend, topics, [app_id]):
        await app.start()
        try:
            registry = await backend.components()
            async with (
                running_sidecar(config, registry) as (sidecar, address),
                grpc.aio.insecure_channel(address) as channel,
            ):
                env = Env(backend, app, sidecar, runtime_pb2_grpc.RuntimeStub(channel), app_id, topics)
                await asyncio.wait_for(env.delivery.ready.wait(), 10)
                yield env
        finally:
            await app.stop()
