"""The cryption components under test (tests/support/rows.BackendRow). A row's metadata is a
function of the key table ({key id: base64 key, or {version: base64 key}}). Cryption has no
optional features."""

from __future__ import annotations

from tests.support.rows import BackendRow

Row = BackendRow[None]

ROWS: list[Row] = [
    BackendRow(block="cryption", type="local", metadata=lambda keys: {"keys": keys}, traits=None),
]
