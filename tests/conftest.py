"""Suite-wide collection rules."""

from __future__ import annotations

import pytest

from tests.support.rows import BackendRow


def _row(item: pytest.Item) -> BackendRow[object] | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    return next((p for p in callspec.params.values() if isinstance(p, BackendRow)), None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test of an optional feature runs over the rows that declare it (`needs`), a test of its
    absence over the others (`lacks`). The pairs are deselected, not skipped: under CI a skip
    means a missing service, and every collected test here can fail."""
    kept, dropped = [], []
    for item in items:
        row = _row(item)
        keep = True
        if row is not None:
            for marker in item.iter_markers("needs"):
                keep = keep and all(f in row.features for f in marker.args)
            for marker in item.iter_markers("lacks"):
                keep = keep and not any(f in row.features for f in marker.args)
        (kept if keep else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
