"""Optional interfaces a component of any block may declare, as upstream Layotto's
`components/pkg/common` has them: applying new metadata while it runs (`DynamicComponent`,
reached by Lifecycle.ApplyConfiguration) and taking the stores its entry's `component_ref`
names (`SetComponent`).

Beside the blocks' `Feature`s rather than among them: a feature is one block's optional power,
these are the runtime's ways of reaching a component of whatever block, and the runtime asks
for them by `isinstance`, as the cores ask for a block's interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING

from layotto.errors import ConfigError

if TYPE_CHECKING:
    from layotto.components.configuration.base import ConfigurationStore
    from layotto.components.secretstores.base import SecretStore

__all__ = ["DynamicComponent", "SetComponent"]


class DynamicComponent(ABC):
    """Upstream's `DynamicComponent`: takes new metadata without a restart. The runtime calls
    `apply_configuration` for one component at a time (never two calls at once on it)."""

    @abstractmethod
    async def apply_configuration(self, metadata: Mapping[str, str]) -> None:
        """Apply `metadata` (the keys given; the others keep their values). Raise ConfigError
        for a value the component refuses, leaving its settings as they were."""


class SetComponent(ABC):  # noqa: B024  (an interface of two optional setters: neither is required)
    """Upstream's `SetComponent`: the runtime hands it the config store and the secret store its
    `component_ref` names, before `init`, so that `init` may read its settings from them. A
    component overrides the setter of each store it takes; the other refuses the reference."""

    def set_config_store(self, store: ConfigurationStore) -> None:
        raise ConfigError(f"{type(self).__name__} takes no config store (component_ref.config_store)")

    def set_secret_store(self, store: SecretStore) -> None:
        raise ConfigError(f"{type(self).__name__} takes no secret store (component_ref.secret_store)")
