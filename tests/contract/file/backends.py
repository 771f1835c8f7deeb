"""The file stores under test (tests/support/rows.BackendRow). A row's metadata is a function of
a scratch folder. File stores have no optional features: every operation is required."""

from __future__ import annotations

from pathlib import Path

from tests.support.rows import BackendRow

Row = BackendRow[None]

ROWS: list[Row] = [
    BackendRow(block="file", type="local", metadata=lambda tmp: {"rootPath": str(Path(tmp) / "files")}, traits=None),
]
