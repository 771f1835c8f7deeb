"""Optional capabilities are said one way: a block's `Feature` enum, a component's `features`,
and for each feature the base method(s) that raise UnsupportedError unless the component has it.

These checks are static (no backend runs), so they cover every registered type, including those
whose services are not on this machine; the contract suites (tests/contract) check behaviour.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import pkgutil
from typing import Any

import pytest

import layotto.components
from layotto.components.base import Component, Feature
from layotto.components.bindings.base import Binding, BindingFeature
from layotto.components.configuration.base import ConfigurationFeature, ConfigurationStore
from layotto.components.lock.base import LockFeature, LockStore
from layotto.components.nameresolution.base import NameResolutionFeature, NameResolver
from layotto.components.oss.base import ObjectStore, OssFeature
from layotto.components.pubsub.base import PubSub, PubSubFeature
from layotto.components.secretstores.base import SecretStore, SecretStoreFeature
from layotto.components.sequencer.base import Sequencer, SequencerFeature
from layotto.components.state.base import StateFeature, StateStore
from layotto.errors import UnsupportedError

#: Each block with optional powers: its base class and its feature enum.
BLOCKS: dict[str, tuple[type[Component], type[Feature]]] = {
    "state": (StateStore, StateFeature),
    "pubsub": (PubSub, PubSubFeature),
    "lock": (LockStore, LockFeature),
    "sequencer": (Sequencer, SequencerFeature),
    "configuration": (ConfigurationStore, ConfigurationFeature),
    "secretstores": (SecretStore, SecretStoreFeature),
    "nameresolution": (NameResolver, NameResolutionFeature),
    "oss": (ObjectStore, OssFeature),
    "bindings": (Binding, BindingFeature),
}

#: The base methods of each feature that has an operation. The other features (ETAG, TTL,
#: SNAPSHOT, MULTIPLE_KEY_VALUES_PER_SECRET) change how required operations behave; the contract
#: suites check those.
METHODS: dict[Feature, tuple[str, ...]] = {
    StateFeature.TRANSACTIONAL: ("multi",),
    StateFeature.QUERY: ("query",),
    PubSubFeature.DELAY: ("delay_scheduler",),
    PubSubFeature.BULK_SUBSCRIBE: ("bulk_subscribe",),
    BindingFeature.INPUT: ("read",),
    LockFeature.KEEP_ALIVE: ("keep_alive",),
    SequencerFeature.SEGMENT: ("reserve",),
    NameResolutionFeature.REGISTRY: ("register", "deregister"),
    OssFeature.COPY: ("copy_object",),
    OssFeature.TAGGING: ("put_tags", "get_tags"),
    OssFeature.APPEND: ("append_object",),
    OssFeature.MULTIPART: (
        "create_multipart",
        "upload_part",
        "upload_part_copy",
        "complete_multipart",
        "abort_multipart",
        "list_uploads",
        "list_parts",
    ),
}


def _registered() -> list[tuple[str, str, type[Component]]]:
    found = []
    for info in pkgutil.iter_modules(layotto.components.__path__):
        if info.name.startswith("_"):
            continue
        block = importlib.import_module(f"layotto.components.{info.name}")
        for type_name, ref in getattr(block, "FACTORIES", {}).items():
            module_name, class_name = ref.split(":")
            found.append((info.name, type_name, getattr(importlib.import_module(module_name), class_name)))
    return found


REGISTERED = _registered()


def _feature_enums() -> set[type[Feature]]:
    for info in pkgutil.walk_packages(layotto.components.__path__, "layotto.components."):
        if ".base" in info.name:
            importlib.import_module(info.name)

    def below(cls: type[Feature]) -> set[type[Feature]]:
        return {sub for direct in cls.__subclasses__() for sub in {direct, *below(direct)}}

    return below(Feature)


def test_every_feature_enum_is_a_block_table_entry() -> None:
    assert _feature_enums() == {enum_ for _, enum_ in BLOCKS.values()}
    for _, enum_ in BLOCKS.values():
        assert issubclass(enum_, enum.StrEnum) and len(enum_) > 0
        assert all(member.value == member.name.lower() for member in enum_)


@pytest.mark.parametrize(("block", "type_name", "cls"), REGISTERED, ids=[f"{b}/{t}" for b, t, _ in REGISTERED])
def test_declared_features_are_the_blocks_and_have_their_methods(
    block: str, type_name: str, cls: type[Component]
) -> None:
    declared = cls.features
    assert isinstance(declared, frozenset)
    if block not in BLOCKS:
        assert declared == frozenset(), f"{block} has no optional features, {type_name} declares {declared}"
        return
    base, feature_enum = BLOCKS[block]
    assert all(isinstance(f, feature_enum) for f in declared), f"{block}/{type_name} declares {declared}"
    for feature, methods in METHODS.items():
        if not isinstance(feature, feature_enum):
            continue
        for name in methods:
            overridden = getattr(cls, name) is not getattr(base, name)
            if feature in declared:
                assert overridden, f"{block}/{type_name} declares {feature!r} but keeps the base {name}"
            else:
                assert not overridden, f"{block}/{type_name} has {name} without declaring {feature!r}"


def _bare(base: type[Component]) -> Component:
    """An instance of `base` with its required methods stubbed and nothing optional."""

    def stub(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a required method was called")

    cls = type(f"Bare{base.__name__}", (base,), dict.fromkeys(base.__abstractmethods__, stub))
    return cls()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("feature", "name"),
    [(f, name) for f, names in METHODS.items() for name in names],
    ids=[f"{f!r}.{name}" for f, names in METHODS.items() for name in names],
)
async def test_base_refuses_an_undeclared_features_operation(feature: Feature, name: str) -> None:
    base = next(base for base, enum_ in BLOCKS.values() if isinstance(feature, enum_))
    component = _bare(base)
    assert component.features == frozenset()
    method = getattr(component, name)
    args = [None] * len(inspect.signature(method).parameters)
    with pytest.raises(UnsupportedError) as refused:
        result = method(*args)
        if inspect.isawaitable(result):
            await result
    assert refused.value.feature == feature
