from __future__ import annotations

import enum
from abc import abstractmethod

from layotto.components.base import Component, Feature, unsupported


class HelloFeature(Feature):
    #: Upstream's Lifecycle interface: `apply_configuration` changes settings without a restart
    #: (Lifecycle.ApplyConfiguration). Without it, `apply_configuration` raises UnsupportedError.
    LIFECYCLE = enum.auto()


class HelloService(Component):
    features: frozenset[HelloFeature] = frozenset()

    @abstractmethod
    async def say_hello(self, name: str) -> str: ...

    def apply_configuration(self, metadata: dict[str, str]) -> None:
        """Lifecycle.ApplyConfiguration: change settings without a restart (HelloFeature.LIFECYCLE)."""
        raise unsupported(self, HelloFeature.LIFECYCLE, "apply_configuration")
