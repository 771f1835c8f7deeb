from __future__ import annotations

from collections.abc import Mapping

from layotto.components.base import ComponentContext, Metadata
from layotto.components.configuration.base import ConfigurationStore
from layotto.components.dynamic import DynamicComponent, SetComponent
from layotto.components.hello.base import HelloService
from layotto.components.secretstores.base import SecretStore


class HelloWorld(HelloService, DynamicComponent, SetComponent):
    """Answers with the configured greeting, as upstream's helloworld component: `hello` sets
    it at init and through Lifecycle.ApplyConfiguration, and, as upstream's, it keeps the
    stores its `component_ref` names (upstream's example of a component that takes them)."""

    metadata_keys = ("hello",)

    greeting = "greeting"
    config_store: ConfigurationStore | None = None
    secret_store: SecretStore | None = None

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self.greeting = metadata.get_str("hello", self.greeting) or self.greeting

    async def say_hello(self, name: str) -> str:
        return f"{self.greeting}, {name}" if name else self.greeting

    async def apply_configuration(self, metadata: Mapping[str, str]) -> None:
        if metadata.get("hello"):
            self.greeting = metadata["hello"]

    def set_config_store(self, store: ConfigurationStore) -> None:
        self.config_store = store

    def set_secret_store(self, store: SecretStore) -> None:
        self.secret_store = store
