"""A block interface is abstract: a backend that leaves out a required method cannot be built."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import layotto.components
from layotto.components.base import Component
from layotto.components.state.base import StateStore


def test_state_store_that_implements_nothing_cannot_be_instantiated() -> None:
    class Empty(StateStore):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Empty()  # type: ignore[abstract]


def test_component_is_abstract_base() -> None:
    assert Component.__abstractmethods__ == frozenset()  # the base itself has only defaults
    assert StateStore.__abstractmethods__ >= {"get", "set", "delete"}


def _factory_refs() -> list[tuple[str, str, str]]:
    refs = []
    for info in pkgutil.iter_modules(layotto.components.__path__):
        block = importlib.import_module(f"layotto.components.{info.name}")
        for type_name, ref in getattr(block, "FACTORIES", {}).items():
            refs.append((info.name, type_name, ref))
    return refs


@pytest.mark.parametrize(("block", "type_name", "ref"), _factory_refs())
def test_every_registered_backend_implements_its_block(block: str, type_name: str, ref: str) -> None:
    module_name, class_name = ref.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    assert issubclass(cls, Component)
    assert not cls.__abstractmethods__, f"{block}/{type_name} leaves out {sorted(cls.__abstractmethods__)}"
