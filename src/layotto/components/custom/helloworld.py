"""Upstream's sample custom kind `helloworld` (cmd/layotto_multiple_api): a component that says
hello. Upstream's types answer "Hello <name>" (`in-memory`) and "Goodbye <name>" (`goodbye`);
beside that, here:

- `greeting` replaces the first word, at init and through Lifecycle.ApplyConfiguration
  (kind `custom_component.helloworld`);
- with a `component_ref`, `greetingSecret` names a secret of its secret store and `greetingKey`
  a key of its config store whose value is the greeting, read at init (upstream's example of
  what a referenced store is for: settings a component reads as it starts).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping

from layotto.components.base import Component, ComponentContext, Metadata
from layotto.components.configuration.base import ConfigurationStore, GetRequest
from layotto.components.dynamic import DynamicComponent, SetComponent
from layotto.components.secretstores.base import SecretStore, resolve_secret
from layotto.errors import ConfigError, LayottoError

KIND = "helloworld"
GREETING = "greeting"
GREETING_SECRET = "greetingSecret"
GREETING_KEY = "greetingKey"


class HelloWorld(Component):
    """The kind's interface: what the API that serves the kind calls."""

    @abstractmethod
    async def say_hello(self, name: str) -> str: ...


class _Greeting(HelloWorld, DynamicComponent, SetComponent):
    metadata_keys = (GREETING, GREETING_SECRET, GREETING_KEY)

    #: Upstream's word for the type.
    default_greeting = "Hello"
    config_store: ConfigurationStore | None = None
    secret_store: SecretStore | None = None

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self.greeting = metadata.get_str(GREETING) or self.default_greeting
        secret = metadata.get_str(GREETING_SECRET)
        key = metadata.get_str(GREETING_KEY)
        where = f"{metadata.where}.metadata" if metadata.where else "metadata"
        if secret:
            if self.secret_store is None:
                raise ConfigError(f"{GREETING_SECRET} needs a component_ref.secret_store", where)
            try:
                self.greeting = await resolve_secret(self.secret_store, secret)
            except LayottoError as exc:
                raise ConfigError(f"{GREETING_SECRET} {secret!r}: {exc}", where) from exc
        if key:
            if self.config_store is None:
                raise ConfigError(f"{GREETING_KEY} needs a component_ref.config_store", where)
            store = self.config_store
            request = GetRequest(context.app_id, store.default_group, store.default_label, [key])
            found = [item.content for item in await store.get(request) if item.key == key]
            if not found:
                raise ConfigError(f"{GREETING_KEY} {key!r} is not in the config store", where)
            self.greeting = found[0]

    async def say_hello(self, name: str) -> str:
        return f"{self.greeting} {name}"

    async def apply_configuration(self, metadata: Mapping[str, str]) -> None:
        if metadata.get(GREETING):
            self.greeting = metadata[GREETING]

    def set_config_store(self, store: ConfigurationStore) -> None:
        self.config_store = store

    def set_secret_store(self, store: SecretStore) -> None:
        self.secret_store = store


class InMemoryHelloWorld(_Greeting):
    """Type `in-memory`: "Hello <name>"."""


class SayGoodbyeHelloWorld(_Greeting):
    """Type `goodbye`: "Goodbye <name>"."""

    default_greeting = "Goodbye"
