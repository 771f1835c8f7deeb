"""custom_component and component_ref as the loaders read them, the start order their
references give, `layotto validate`'s view of them, and the file watcher both reload and WASM
functions use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from layotto.cli import check
from layotto.config import dapr_yaml, layotto_json
from layotto.config.model import ComponentRef, ComponentSpec, RuntimeConfig
from layotto.errors import ConfigError
from layotto.runtime.filewatch import Stamp, Watcher
from layotto.runtime.refs import dependents, init_order
from tests.support.sidecar import layotto_config


def load(grpc_config: dict[str, Any]) -> RuntimeConfig:
    return layotto_json.load_document(layotto_config(grpc_config, grpc_port=34904), source="c.json")


def test_custom_component_entries_keep_their_kind_and_component_ref_is_typed() -> None:
    cfg = load(
        {
            "custom_component": {
                "helloworld": {
                    "demo": {
                        "type": "in-memory",
                        "metadata": {"greeting": "Hi"},
                        "component_ref": {"config_store": "c", "secret_store": "s"},
                    }
                },
                "other": None,
            },
            "state": {"s1": {"type": "in-memory", "component_ref": {}}},
        }
    )
    demo = next(s for s in cfg.components if s.name == "demo")
    assert (demo.block, demo.kind, demo.type, demo.metadata) == (
        "custom",
        "helloworld",
        "in-memory",
        {"greeting": "Hi"},
    )
    assert demo.component_ref == ComponentRef(config_store="c", secret_store="s")
    assert "component_ref" not in demo.extras
    # An empty reference names nothing.
    assert next(s for s in cfg.components if s.name == "s1").component_ref is None


@pytest.mark.parametrize(
    ("ref", "problem"),
    [
        ({"config_stor": "c"}, 'unknown key "config_stor"'),
        ({"config_store": 3}, "config_store must be a string"),
        (["c"], "component_ref"),
    ],
)
def test_a_malformed_component_ref_is_named(ref: object, problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load({"state": {"s1": {"type": "in-memory", "component_ref": ref}}})
    assert problem in str(refused.value)
    assert "grpc_config.state.s1.component_ref" in str(refused.value)


def _manifest(tmp_path: Path, type_: str) -> Path:
    path = tmp_path / "c.yaml"
    head = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: demo}\n"
    path.write_text(f"{head}spec: {{type: {type_}, version: v1}}\n")
    return path


def test_a_dapr_manifest_names_a_custom_component_as_custom_kind_type(tmp_path: Path) -> None:
    cfg = RuntimeConfig()
    dapr_yaml.load_into(cfg, str(_manifest(tmp_path, "custom.helloworld.in-memory")))
    [spec] = cfg.components
    assert (spec.block, spec.kind, spec.type, spec.name) == ("custom", "helloworld", "in-memory", "demo")


def test_a_custom_manifest_type_without_a_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        dapr_yaml.load_into(RuntimeConfig(), str(_manifest(tmp_path, "custom.helloworld")))
    assert "must look like 'custom.<kind>.<type>'" in str(refused.value)


def spec(block: str, name: str, *, secret_ref: str = "", **ref: str) -> ComponentSpec:
    extras = {"secret_ref": [{"store_name": secret_ref, "key": "k"}]} if secret_ref else {}
    return ComponentSpec(
        block, name, "t", extras=extras, source=f"{block}.{name}", component_ref=ComponentRef(**ref) if ref else None
    )


def test_components_start_after_the_stores_they_reference_in_block_order_otherwise() -> None:
    specs = [
        spec("state", "s", config_store="c"),
        spec("lock", "l"),
        spec("configuration", "c", secret_store="second"),
        spec("secretstores", "first"),
        spec("secretstores", "second", secret_ref="third"),
        spec("secretstores", "third"),
    ]
    order = [(s.block, s.name) for s in init_order(specs)]
    assert order == [
        ("secretstores", "first"),
        ("secretstores", "third"),
        ("secretstores", "second"),
        ("configuration", "c"),
        ("state", "s"),
        ("lock", "l"),
    ]
    assert [s.name for s in dependents(specs, "secretstores", "second")] == ["c"]


def test_an_unknown_reference_names_the_entry_and_one_already_started_is_known() -> None:
    with pytest.raises(ConfigError) as refused:
        init_order([spec("state", "s", secret_store="vault")])
    assert str(refused.value) == "state.s: component_ref.secret_store names unknown secret store 'vault'"
    with pytest.raises(ConfigError) as unknown_secret_ref:
        init_order([spec("state", "s", secret_ref="vault")])
    assert str(unknown_secret_ref.value) == "state.s: secret_ref names unknown secret store 'vault'"
    assert [s.name for s in init_order([spec("state", "s", secret_store="v")], started=[("secretstores", "v")])] == [
        "s"
    ]


def test_a_cycle_of_references_is_named() -> None:
    specs = [spec("secretstores", "a", secret_ref="b"), spec("secretstores", "b", config_store="c")]
    specs.append(spec("configuration", "c", secret_store="a"))
    with pytest.raises(ConfigError) as refused:
        init_order(specs)
    assert str(refused.value) == (
        "secretstores.a: component references form a cycle:"
        " secretstores 'a' -> secretstores 'b' -> configuration 'c' -> secretstores 'a'"
    )


async def test_validate_checks_component_refs_and_custom_kinds() -> None:
    cfg = load(
        {
            "secret_store": {"env": {"type": "local.env"}},
            "custom_component": {"helloworld": {"demo": {"type": "goodbye", "component_ref": {"secret_store": "env"}}}},
        }
    )
    assert await check(cfg) == {"secretstores": ["env"], "custom": ["demo"]}
    with pytest.raises(ConfigError) as refused:
        await check(load({"hellos": {"h": {"type": "helloworld", "component_ref": {"config_store": "nope"}}}}))
    assert "component_ref.config_store names unknown config store 'nope'" in str(refused.value)
    with pytest.raises(ConfigError) as unknown_type:
        await check(load({"custom_component": {"helloworld": {"demo": {"type": "nosuch"}}}}))
    assert "custom component type 'nosuch' of kind 'helloworld' is not registered" in str(unknown_type.value)


async def test_the_watcher_hands_over_a_settled_change_once_and_a_refused_one_not_again() -> None:
    stamps: dict[str, Stamp | None] = {"f": (1, 1, 1)}
    applied: dict[str, Stamp | None] = {"f": (1, 1, 1)}
    offered: list[Stamp | None] = []
    accept = False

    async def sample() -> dict[str, Stamp | None]:
        return dict(stamps)

    async def apply(key: str, stamp: Stamp | None) -> bool:
        offered.append(stamp)
        if accept:
            applied[key] = stamp
        return accept

    watcher: Watcher[str] = Watcher(sample, apply, applied.get)
    await watcher.poll()
    stamps["f"] = (2, 1, 1)
    await watcher.poll()  # seen once: it may still be being written
    assert offered == []
    stamps["f"] = (3, 1, 1)
    await watcher.poll()
    await watcher.poll()  # held still: offered, and refused
    await watcher.poll()
    assert offered == [(3, 1, 1)]
    accept = True
    stamps["f"] = None  # removed
    await watcher.poll()
    await watcher.poll()
    await watcher.poll()
    assert offered == [(3, 1, 1), None] and applied["f"] is None
