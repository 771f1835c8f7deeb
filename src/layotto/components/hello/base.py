from __future__ import annotations

from abc import abstractmethod

from layotto.components.base import Component


class HelloService(Component):
    """The hello block (upstream's smoke-test API). A hello component that takes new settings
    while it runs (Lifecycle.ApplyConfiguration) is a `components.dynamic.DynamicComponent`,
    as a component of any block may be."""

    @abstractmethod
    async def say_hello(self, name: str) -> str: ...
