"""One suite for every name resolver, through the block interface: each backend is a row of
backends.ROWS (tests/support/rows.BackendRow), not new test code."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from layotto.components.base import ComponentContext, Metadata
from layotto.components.nameresolution.base import NameResolutionFeature, NameResolver
from layotto.errors import BackendUnavailableError, UnsupportedError
from layotto.runtime.registry import ComponentRegistry
from tests.contract.nameresolution.backends import REGISTRIES, ROWS, Row
from tests.support.rows import params


def _chosen(request: pytest.FixtureRequest) -> Row:
    chosen: Row = request.param
    chosen.require()
    return chosen


@pytest.fixture(params=params(ROWS))
def backend(request: pytest.FixtureRequest) -> Row:
    return _chosen(request)


# Capability-specific cases run only on the backends that have the capability, rather than
# skipping on the others.
@pytest.fixture(params=params(REGISTRIES))
def registry_backend(request: pytest.FixtureRequest) -> Row:
    return _chosen(request)


@pytest.fixture(params=params(b for b in ROWS if b.traits.dead_metadata))
def networked_backend(request: pytest.FixtureRequest) -> Row:
    return _chosen(request)


class Resolvers:
    """Makes resolvers of one backend sharing one namespace; closes them all at the end."""

    def __init__(self, backend: Row) -> None:
        self.backend = backend
        self.namespace = uuid.uuid4().hex
        self.made: list[NameResolver] = []

    async def make(self, table: dict[str, str] | None = None) -> NameResolver:
        table = table or {}
        component = ComponentRegistry().create("nameresolution", self.backend.type)
        assert isinstance(component, NameResolver)
        metadata = Metadata(self.backend.meta(table, self.namespace), where="test")
        await component.init(metadata, ComponentContext("nr", "nameresolution", "app"))
        self.made.append(component)
        if NameResolutionFeature.REGISTRY in component.features:
            for app_id, address in table.items():
                await component.register(app_id, address)
        return component


async def _resolvers(backend: Row) -> AsyncIterator[Resolvers]:
    made = Resolvers(backend)
    try:
        yield made
    finally:
        for component in made.made:
            await component.close()


@pytest.fixture
async def resolvers(backend: Row) -> AsyncIterator[Resolvers]:
    async for made in _resolvers(backend):
        yield made


@pytest.fixture
async def registry_resolvers(registry_backend: Row) -> AsyncIterator[Resolvers]:
    async for made in _resolvers(registry_backend):
        yield made


def _app() -> str:
    return f"app-{uuid.uuid4().hex[:8]}"


async def _until(predicate: Callable[[], Any], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_a_known_app_resolves_to_its_address(resolvers: Resolvers) -> None:
    app = _app()
    resolver = await resolvers.make({app: "127.0.0.1:50001"})
    assert await resolver.resolve(app) == ["127.0.0.1:50001"]


async def test_an_unknown_app_resolves_to_nothing(resolvers: Resolvers) -> None:
    resolver = await resolvers.make({_app(): "127.0.0.1:50001"})
    assert await resolver.resolve(_app()) == []


async def test_invalidate_keeps_answers_right(resolvers: Resolvers) -> None:
    app = _app()
    resolver = await resolvers.make({app: "127.0.0.1:50002"})
    await resolver.resolve(app)
    resolver.invalidate(app)
    resolver.invalidate(_app())
    assert await resolver.resolve(app) == ["127.0.0.1:50002"]


async def test_others_see_a_registration_and_its_withdrawal(registry_resolvers: Resolvers) -> None:
    resolvers = registry_resolvers
    reader = await resolvers.make()
    assert NameResolutionFeature.REGISTRY in reader.features
    app = _app()
    first = await resolvers.make({app: "127.0.0.1:50003"})
    await resolvers.make({app: "127.0.0.1:50004"})
    reader.invalidate(app)
    assert await reader.resolve(app) == ["127.0.0.1:50003", "127.0.0.1:50004"]
    await first.deregister()
    reader.invalidate(app)
    assert await reader.resolve(app) == ["127.0.0.1:50004"]


async def test_heartbeats_keep_a_registration_beyond_its_ttl(registry_resolvers: Resolvers) -> None:
    resolvers = registry_resolvers
    reader = await resolvers.make()
    assert NameResolutionFeature.REGISTRY in reader.features
    app = _app()
    await resolvers.make({app: "127.0.0.1:50005"})
    await asyncio.sleep(1.5)  # longer than the 1s ttl: only heartbeats can have kept it
    reader.invalidate(app)
    assert await reader.resolve(app) == ["127.0.0.1:50005"]


async def test_a_crashed_sidecar_expires(registry_resolvers: Resolvers) -> None:
    resolvers = registry_resolvers
    reader = await resolvers.make()
    assert NameResolutionFeature.REGISTRY in reader.features
    app = _app()
    crashed = await resolvers.make({app: "127.0.0.1:50006"})
    # A crash: heartbeats stop and nothing is withdrawn.
    heartbeat = getattr(crashed, "_heartbeat", None)
    assert heartbeat is not None
    heartbeat.cancel()

    async def gone() -> bool:
        reader.invalidate(app)
        return await reader.resolve(app) == []

    await _until(gone, within=4.0)


async def test_an_unreachable_registry_is_unavailable(networked_backend: Row) -> None:
    backend = networked_backend
    assert backend.traits.dead_metadata is not None
    component = ComponentRegistry().create("nameresolution", backend.type)
    with pytest.raises(BackendUnavailableError):
        await component.init(
            Metadata(backend.traits.dead_metadata(), where="t"), ComponentContext("nr", "nameresolution")
        )
    await component.close()


async def test_declares_exactly_the_rows_features(resolvers: Resolvers) -> None:
    resolver = await resolvers.make()
    assert resolver.features == resolvers.backend.features
    assert all(isinstance(f, NameResolutionFeature) for f in resolver.features)


async def test_registry_feature(resolvers: Resolvers) -> None:
    """REGISTRY: register makes the app resolvable and deregister withdraws it; without it
    both are refused (the runtime does not call them)."""
    resolver = await resolvers.make()
    app = _app()
    if NameResolutionFeature.REGISTRY in resolvers.backend.features:
        await resolver.register(app, "127.0.0.1:50007")
        resolver.invalidate(app)
        assert await resolver.resolve(app) == ["127.0.0.1:50007"]
        await resolver.deregister()
        resolver.invalidate(app)
        assert await resolver.resolve(app) == []
        return
    for call in (resolver.register(app, "127.0.0.1:50007"), resolver.deregister()):
        with pytest.raises(UnsupportedError) as refused:
            await call
        assert refused.value.feature == NameResolutionFeature.REGISTRY
    assert await resolver.resolve(app) == []
