"""`local.env` (Dapr): secrets from the sidecar's environment.

The sidecar's environment holds its own credentials too (DAPR_API_TOKEN, backend passwords),
so the store exposes only what its metadata names:

- `prefix` (Dapr's): only variables starting with it are visible, named without it: with prefix
  `APP_`, secret `DB` is `$APP_DB`, and a bulk get lists only `APP_*` variables.
- `allowedSecrets`: a list (comma-separated, or a JSON list) of the secret names visible, the
  names after `prefix` when there is one.

With neither, it exposes nothing (a warning at start says so): GetSecret answers an empty value,
GetBulkSecret an empty map. As in Dapr, `APP_API_TOKEN` and every `DAPR_*` variable stay hidden
whatever the metadata says, after the prefix is applied.

GetSecret(k) of a visible name returns `{k: value}`, empty when unset (as Dapr 1.5 does).

Lifecycle.ApplyConfiguration (`secret_store`, its name) changes `prefix` and `allowedSecrets`
while it runs; the keys it is not given keep their values.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from layotto.components.base import ComponentContext, Metadata
from layotto.components.dynamic import DynamicComponent
from layotto.components.secretstores.base import SecretStore

log = logging.getLogger("layotto.secretstores.localenv")

PREFIX = "prefix"
ALLOWED = "allowedSecrets"


def _hidden(variable: str) -> bool:
    """Dapr's rule: the sidecar's own token variables are never a secret of this store."""
    return variable == "APP_API_TOKEN" or variable.startswith("DAPR_")


def _allowed(raw: object) -> frozenset[str]:
    names = raw if isinstance(raw, list) else str(raw).split(",")
    return frozenset(str(name).strip() for name in names if str(name).strip())


class LocalEnvSecretStore(SecretStore, DynamicComponent):
    metadata_keys = (PREFIX, ALLOWED)

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self._prefix = metadata.get_str(PREFIX)
        self._allowed: frozenset[str] | None = _allowed(metadata[ALLOWED]) if ALLOWED in metadata else None
        if not self._prefix and self._allowed is None:
            log.warning(
                "secret store %r (local.env) has neither `%s` nor `%s` in its metadata, so it exposes no "
                "environment variable: the sidecar's environment holds its own credentials. Set `%s` "
                "(e.g. LAYOTTO_SECRET_) to expose the variables that start with it.",
                context.name,
                PREFIX,
                ALLOWED,
                PREFIX,
            )

    async def apply_configuration(self, metadata: Mapping[str, str]) -> None:
        given = Metadata(metadata)
        if PREFIX in given:
            self._prefix = given.get_str(PREFIX)
        if ALLOWED in given:
            self._allowed = _allowed(given[ALLOWED])

    def _visible(self, name: str) -> bool:
        if not name or _hidden(self._prefix + name):
            return False
        if self._allowed is not None:
            return name in self._allowed
        return bool(self._prefix)

    async def get_secret(self, key: str, metadata: Mapping[str, str]) -> dict[str, str]:
        if not self._visible(key):
            return {key: ""}
        return {key: os.environ.get(self._prefix + key, "")}

    async def bulk_get_secret(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        n = len(self._prefix)
        return {
            k[n:]: {k[n:]: v}
            for k, v in os.environ.items()
            if k.startswith(self._prefix) and len(k) > n and self._visible(k[n:])
        }
