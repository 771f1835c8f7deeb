"""Name resolution: which sidecar(s) serve an app id, for service invocation between sidecars."""

from __future__ import annotations

import enum
from abc import abstractmethod

from layotto.components.base import Component, Feature, unsupported


class NameResolutionFeature(Feature):
    #: The resolver keeps a shared registry: sidecars `register` themselves (with a TTL and
    #: heartbeats) and can be found by others without any static table. Without it,
    #: `register`/`deregister` raise UnsupportedError and the runtime does not call them.
    REGISTRY = enum.auto()


class NameResolver(Component):
    features: frozenset[NameResolutionFeature] = frozenset()

    @abstractmethod
    async def resolve(self, app_id: str) -> list[str]:
        """gRPC addresses ("host:port") of the sidecars serving `app_id`; [] when none is known.
        Raise BackendUnavailableError when the registry cannot be asked."""

    async def register(self, app_id: str, address: str) -> None:
        """Announce that this sidecar, at `address`, serves `app_id`, until `deregister`
        (NameResolutionFeature.REGISTRY)."""
        raise unsupported(self, NameResolutionFeature.REGISTRY, "register")

    async def deregister(self) -> None:
        """Withdraw what `register` announced, at graceful shutdown (NameResolutionFeature.REGISTRY)."""
        raise unsupported(self, NameResolutionFeature.REGISTRY, "deregister")

    def invalidate(self, app_id: str) -> None:
        """Forget any cached answer for `app_id` (its sidecar just failed to answer)."""
