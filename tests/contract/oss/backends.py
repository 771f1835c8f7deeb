"""The object stores under test (tests/support/rows.BackendRow). A row's metadata is a function
of a scratch folder."""

from __future__ import annotations

from pathlib import Path

from layotto.components.oss.base import OssFeature
from tests.support.rows import BackendRow

Row = BackendRow[None]

ROWS: list[Row] = [
    BackendRow(
        block="oss",
        type="local",
        metadata=lambda tmp: {"rootPath": str(Path(tmp) / "objects")},
        features=frozenset(OssFeature),
        traits=None,
    ),
]
