"""The secret stores under test, one row each (tests/support/rows.BackendRow); every suite here
runs over ROWS. The rows' data (a JSON file, environment variables) is written on first use and
removed by `remove_data()`."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layotto.components.secretstores.base import SecretStoreFeature
from tests.support.rows import BackendRow

_RUN = uuid.uuid4().hex[:8].upper()
_ENV_PREFIX = f"LAYOTTO_TEST_{_RUN}_"
_FILE_DOC = {"db": "pw", "nested": {"a": "x", "b": {"c": "y"}}, "port": 5432, "list": ["p", "q"]}
_FILE = Path(tempfile.gettempdir()) / f"layotto-secrets-{_RUN}.json"
_ENV = {"DB": "pw", "TOKEN": "t0k"}


def _secrets_file() -> str:
    if not _FILE.exists():
        _FILE.write_text(json.dumps(_FILE_DOC))
    return str(_FILE)


def _env_metadata() -> dict[str, Any]:
    for name, value in _ENV.items():
        os.environ[_ENV_PREFIX + name] = value
    return {"prefix": _ENV_PREFIX}


def remove_data() -> None:
    _FILE.unlink(missing_ok=True)
    for name in _ENV:
        os.environ.pop(_ENV_PREFIX + name, None)


@dataclass(frozen=True)
class SecretsTraits:
    #: (secret name, the data GetSecret returns for it)
    secrets: list[tuple[str, dict[str, str]]]
    #: GetSecret of an unknown name fails (local.env answers an empty value instead, as Dapr).
    missing_fails: bool = True


Row = BackendRow[SecretsTraits]

ROWS: list[Row] = [
    BackendRow(
        block="secretstores",
        type="local.file",
        metadata=lambda: {"secretsFile": _secrets_file()},
        traits=SecretsTraits(
            [
                ("db", {"db": "pw"}),
                ("nested:a", {"nested:a": "x"}),
                ("nested:b:c", {"nested:b:c": "y"}),
                ("port", {"port": "5432"}),
                ("list:1", {"list:1": "q"}),
            ]
        ),
    ),
    BackendRow(
        block="secretstores",
        type="local.file",
        name="local.file-multiValued",
        metadata=lambda: {"secretsFile": _secrets_file(), "multiValued": "true", "nestedSeparator": "."},
        features=frozenset({SecretStoreFeature.MULTIPLE_KEY_VALUES_PER_SECRET}),
        traits=SecretsTraits(
            [("db", {"db": "pw"}), ("nested", {"a": "x", "b.c": "y"}), ("list", {"0": "p", "1": "q"})]
        ),
    ),
    BackendRow(
        block="secretstores",
        type="local.env",
        metadata=_env_metadata,
        traits=SecretsTraits([("DB", {"DB": "pw"}), ("TOKEN", {"TOKEN": "t0k"})], missing_fails=False),
    ),
]
