from __future__ import annotations

from abc import abstractmethod

from layotto.components.base import Component


class HelloService(Component):
    @abstractmethod
    async def say_hello(self, name: str) -> str: ...

    def apply_configuration(self, metadata: dict[str, str]) -> None:
        """Lifecycle.ApplyConfiguration: change settings without a restart."""
