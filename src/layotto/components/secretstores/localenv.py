"""`local.env` (Dapr): secrets from the sidecar's environment.

GetSecret(k) returns `{k: env[k]}` (empty when unset, as Dapr 1.5 does). With metadata
`prefix`, only variables starting with it are visible, named without it: with prefix `APP_`,
secret `DB` is `$APP_DB`, and a bulk get lists only `APP_*` variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from layotto.components.base import ComponentContext, Metadata
from layotto.components.secretstores.base import SecretStore


class LocalEnvSecretStore(SecretStore):
    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self._prefix = metadata.get_str("prefix")

    async def get_secret(self, key: str, metadata: Mapping[str, str]) -> dict[str, str]:
        return {key: os.environ.get(self._prefix + key, "")}

    async def bulk_get_secret(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        n = len(self._prefix)
        return {k[n:]: {k[n:]: v} for k, v in os.environ.items() if k.startswith(self._prefix) and len(k) > n}
