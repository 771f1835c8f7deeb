from __future__ import annotations

from layotto.components.base import ComponentContext, Metadata
from layotto.components.hello.base import HelloFeature, HelloService


class HelloWorld(HelloService):
    """Answers with the configured greeting, as upstream's helloworld component."""

    metadata_keys = ("hello",)

    features = frozenset({HelloFeature.LIFECYCLE})
    greeting = "greeting"

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self.greeting = metadata.get_str("hello", self.greeting) or self.greeting

    async def say_hello(self, name: str) -> str:
        return f"{self.greeting}, {name}" if name else self.greeting

    def apply_configuration(self, metadata: dict[str, str]) -> None:
        if metadata.get("hello"):
            self.greeting = metadata["hello"]
