from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping

from layotto.components.base import Component


class SecretStore(Component):
    @abstractmethod
    async def get_secret(self, key: str, metadata: Mapping[str, str]) -> dict[str, str]:
        """The secret's values; raise NotFoundError when there is no such secret."""

    @abstractmethod
    async def bulk_get_secret(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        """Every secret the store holds, by name."""
