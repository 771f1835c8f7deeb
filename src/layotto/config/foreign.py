"""The keys of upstream formats that a config may carry and this runtime takes without acting on
them (MOSN's settings around Layotto's, Kubernetes' object metadata): a catalog kept as data
in foreign_keys.toml, read on first use."""

from __future__ import annotations

import functools
import tomllib
from importlib import resources


@functools.cache
def _catalog() -> dict[str, dict[str, list[str]]]:
    text = resources.files("layotto.config").joinpath("foreign_keys.toml").read_text(encoding="utf-8")
    catalog: dict[str, dict[str, list[str]]] = tomllib.loads(text)
    return catalog


@functools.cache
def ignored_keys(source: str, where: str) -> tuple[str, ...]:
    """The keys `source` ("mosn", "kubernetes") may put at `where` that are taken and ignored."""
    return tuple(_catalog()[source][where])
