"""Fuzzing the config loaders: upstream-shaped configs (the files of configs/, a Dapr resources
file), mutated (keys deleted, renamed or misspelt, values of another type, deep nesting, bytes
flipped or spliced in), load into a config or fail with a ConfigError that says where, and
never with anything else. A sweep changes every place of the seeds in every way in turn;
hypothesis (derandomized, so the same examples every run) combines changes at random. Bounded:
a few thousand examples in all, some 15 s."""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layotto.config import dapr_yaml, layotto_json
from layotto.config.model import BLOCKS, RuntimeConfig
from layotto.errors import ConfigError

ROOT = Path(__file__).parents[2]
SHIPPED = [json.loads(p.read_text()) for p in sorted((ROOT / "configs").glob("*.json"))]


def _every_section() -> dict[str, Any]:
    """configs/config.json and config_wasm.json in one, with every optional section and key
    the loader reads, so that mutations meet each of them."""
    doc: dict[str, Any] = json.loads((ROOT / "configs" / "config.json").read_text())
    wasm = json.loads((ROOT / "configs" / "config_wasm.json").read_text())
    doc["servers"][0]["listeners"] += wasm["servers"][0]["listeners"][1:]
    functions = doc["servers"][0]["listeners"][2]["stream_filters"][0]["config"]
    functions["function1"].update(root_context_id=2, vm_config={"engine": "wasmer", "path": "f.wasm", "cpu": 1})
    functions["function3"] = {"from_wasm_plugin": "shared", "greeting": "hi"}
    doc["wasm_global_plugins"] = [{"plugin_name": "shared", "instance_num": 2, "vm_config": {"path": "p.wasm"}}]
    grpc = doc["servers"][0]["listeners"][0]
    grpc["network"] = "tcp"
    grpc["stream_filters"] = [{"type": "flowControlFilter", "config": {"global_switch": True}}, {"type": "grpc_metric"}]
    grpc_config = grpc["filter_chains"][0]["filters"][0]["config"]["grpc_config"]
    grpc_config["app"].update(grpc_callback_port=9999, grpc_callback_host="127.0.0.1", http_port=8080)
    grpc_config["sequencer"]["sequencer_demo"]["biggerThan"] = {"index": 1000}
    grpc_config["state"]["state_demo"]["secret_ref"] = [
        {"store_name": "secret_demo", "key": "k", "sub_key": "s", "inject_as": "password"}
    ]
    grpc_config["lock"]["lock_demo"].update(component_ref={"secret_store": "secret_demo"}, version="v1")
    grpc_config["config_store"]["config_demo"].update(address=["127.0.0.1:2379"], timeout="10")
    grpc_config["custom_component"] = {"helloworld": {"demo": {"type": "in-memory", "metadata": {}}}}
    grpc_config["rpcs"] = {"mosn": {"config": {"channel": [{"protocol": "http"}]}}}
    grpc_config["name_resolution"] = {"peers": {"type": "static", "metadata": {"app2": "127.0.0.1:34905"}}}
    doc["tracing"] = {"enable": True, "driver": "SOFATracer", "config": {"generator": "mosntracing"}}
    doc["metrics"] = {"sinks": [{"type": "prometheus", "config": {"port": 34903}}]}
    doc["dapr_http"] = {"address": "127.0.0.1:3500"}
    return doc


#: The shipped files, and as often the one with every section.
SEEDS = [*SHIPPED, *[_every_section()] * len(SHIPPED)]

RESOURCES = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
  namespace: default
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: localhost:6379
  - name: redisPassword
    secretKeyRef: {name: redis-secret, key: password}
  - name: redisDB
    value: 3
auth:
  secretStore: localsecrets
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: localsecrets}
spec:
  type: secretstores.local.file
  metadata:
  - {name: secretsFile, value: /tmp/secrets.json}
  - {name: fromEnv, envRef: HOME}
scopes: [app1]
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: orders}
spec:
  pubsubname: pubsub
  topic: orders
  routes:
    rules:
    - {match: 'event.type == "a"', path: /a}
    default: /orders
  deadLetterTopic: dead
  metadata: {rawPayload: "true"}
"""
YAML_SEED = list(yaml.safe_load_all(RESOURCES))

#: Every test here together stays within a few thousand examples.
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=500,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["127.0.0.1:34904", "grpc", "Layotto", "in-memory", "state.redis", "\ud800", "0", "-1"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)

#: YAML has values JSON has not: timestamps and binary.
yaml_values = json_values | st.dates() | st.datetimes() | st.binary(max_size=4)


def _places(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value in a JSON/YAML tree, the root's included."""
    yield path
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _places(child, (*path, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _places(child, (*path, index))


def _typo(data: st.DataObject, key: str) -> str:
    """A key as a hurried hand writes it: a letter dropped, doubled, swapped; case changed."""
    if not key:
        return "x"
    i = data.draw(st.integers(0, len(key) - 1))
    kind = data.draw(st.sampled_from(["drop", "double", "swap", "case", "plural", "random"]))
    if kind == "drop":
        return key[:i] + key[i + 1 :] or "_"
    if kind == "double":
        return key[:i] + key[i] + key[i:]
    if kind == "swap" and i + 1 < len(key):
        return key[:i] + key[i + 1] + key[i] + key[i + 2 :]
    if kind == "case":
        return key.swapcase()
    if kind == "plural":
        return key + "s"
    return data.draw(st.text(min_size=1, max_size=10))


def _nest(data: st.DataObject, value: Any) -> Any:
    depth = data.draw(st.integers(1, 100))  # the loaders refuse more than 64 levels
    as_list = data.draw(st.booleans())
    for _ in range(depth):
        value = [value] if as_list else {"k": value}
    return value


def _mutate(data: st.DataObject, doc: Any, values: st.SearchStrategy[Any] = json_values) -> Any:
    """`doc` with one to three mutations, each at a value drawn from the tree; mostly outside
    component metadata, which is free-form and so the least interesting place."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        places = list(_places(doc))
        shaped = [p for p in places if "metadata" not in p[:-1]]
        path = data.draw(st.sampled_from(shaped if shaped and data.draw(st.integers(0, 4)) else places))
        op = data.draw(st.sampled_from(["delete", "rename", "swap", "nest", "insert", "typed"]))
        if not path:
            if op in ("swap", "nest"):
                doc = data.draw(values) if op == "swap" else _nest(data, doc)
            continue
        *parents, last = path
        parent = doc
        for step in parents:
            parent = parent[step]
        if op == "delete":
            del parent[last]
        elif op == "rename" and isinstance(parent, dict):
            parent[_typo(data, str(last))] = parent.pop(last)
        elif op == "swap":
            parent[last] = data.draw(values)
        elif op == "nest":
            parent[last] = _nest(data, parent[last])
        elif op == "insert" and isinstance(parent[last], dict):
            parent[last][data.draw(st.text(max_size=8))] = data.draw(values)
        elif op == "typed":
            # Values of the wrong type where a loader expects a port, a name or a list.
            parent[last] = data.draw(st.sampled_from(["abc", 65536, -1, 1.5, True, [], {}, None, "", "x:y"]))
    return doc


#: Bytes spliced into a file: invalid UTF-8, what JSON lacks, what YAML makes of tags, aliases,
#: timestamps and control characters. Each file gets all of them: JSON's text as YAML's.
SPLICES = [
    b"\xff",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\x00",
    b"\\ud800",
    b"NaN",
    b"1e999",
    b"9" * 5000,
    b"[" * 3000,
    b"{",
    b'"',
    b"\xef\xbb\xbf",
    b"&a [*a]",
    b"*nowhere",
    b"!!python/object:os.system x",
    b"!!binary aGk=",
    b"2001-13-45",
    b"2001-01-02",
    b"? [a, b]\n: c\n",
    b"\t",
    b"\x07",
    b"%YAML 1.1\n---\n",
    b"\n---\n",
    b"{a: &x [1, 2, 3], b: [*x, *x, *x]}",
]


def _mutate_bytes(data: st.DataObject, text: bytes) -> bytes:
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text)))
        kind = data.draw(st.sampled_from(["flip", "splice", "delete", "truncate", "random"]))
        if kind == "flip" and at < len(text):
            text = text[:at] + bytes([text[at] ^ (1 << data.draw(st.integers(0, 7)))]) + text[at + 1 :]
        elif kind == "splice":
            text = text[:at] + data.draw(st.sampled_from(SPLICES)) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + data.draw(st.integers(1, 16)) :]
        elif kind == "truncate":
            text = text[:at]
        else:
            text = text[:at] + data.draw(st.binary(min_size=1, max_size=8)) + text[at:]
    return text


def _check(cfg: RuntimeConfig) -> None:
    """What a loaded config promises the runtime: values of the model's types."""
    assert isinstance(cfg.grpc_address, str) and cfg.grpc_network in ("tcp", "unix")
    assert isinstance(cfg.app.app_id, str) and isinstance(cfg.app.grpc_callback_host, str)
    for port in (cfg.app.grpc_callback_port, cfg.app.http_port):
        assert isinstance(port, int) and not isinstance(port, bool) and 0 <= port <= 65535
    for spec in cfg.components:
        assert spec.block in BLOCKS and isinstance(spec.name, str)
        assert isinstance(spec.type, str) and spec.type and isinstance(spec.metadata, dict)
        for ref in spec.extras.get("secret_ref", []):
            assert isinstance(ref["store_name"], str) and isinstance(ref["key"], str)
    for fn in cfg.wasm.functions:
        assert isinstance(fn.path, str) and fn.timeout > 0 and isinstance(fn.memory_limit, int)
    for sub in cfg.subscriptions:
        assert all(isinstance(v, str) for v in sub.metadata.values())


def _config_or_config_error(load: Callable[[], RuntimeConfig]) -> None:
    try:
        cfg = load()
    except ConfigError as exc:
        assert exc.path, f"a ConfigError that says not where: {exc}"
        assert "\n" not in str(exc), f"a ConfigError of more than one line: {exc}"
        assert "Traceback" not in str(exc)
    else:
        _check(cfg)


def _load_resources(path: Path) -> RuntimeConfig:
    cfg = RuntimeConfig()
    cfg.app.app_id = "app1"
    dapr_yaml.load_into(cfg, str(path))
    return cfg


#: Values of each JSON type, one of which is the wrong type almost anywhere.
WRONG = ["abc", "", "\ud800", 65536, -1, 10**30, 1.5, 1e300, float("nan"), True, None, [], [1], {}, {"k": "v"}]


def _sweep(doc: Any) -> Iterator[Any]:
    """`doc` changed at one place: each value, in turn, swapped for each of WRONG, nested 70
    levels deep, deleted; each key misspelt. Systematic where the fuzzing below is random."""
    for path in _places(doc):
        if not path:
            continue
        *parents, last = path
        for change in [*WRONG, "nest", "delete", "typo"]:
            copied = copy.deepcopy(doc)
            parent = copied
            for step in parents:
                parent = parent[step]
            if change == "delete":
                del parent[last]
            elif change == "typo":
                if not isinstance(last, str):
                    continue
                parent[last[:-1] + last[-1].swapcase() + "_"] = parent.pop(last)
            elif change == "nest":
                for _ in range(70):
                    parent[last] = [parent[last]]
            else:
                parent[last] = copy.deepcopy(change)
            yield copied


def test_every_place_of_every_section_with_every_wrong_value() -> None:
    for doc in _sweep(_every_section()):
        _config_or_config_error(lambda doc=doc: layotto_json.load_document(doc, source="sweep.json"))


def test_every_place_of_a_resources_file_with_every_wrong_value(scratch: Path) -> None:
    path = scratch / "sweep.yaml"
    for docs in _sweep(YAML_SEED):
        path.write_text(yaml.safe_dump_all(docs))
        _config_or_config_error(lambda: _load_resources(path))


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="layotto-fuzz-") as folder:
        yield Path(folder)


@settings(FUZZ, max_examples=900)
@given(st.data())
def test_mutated_json_documents(data: st.DataObject) -> None:
    doc = _mutate(data, data.draw(st.sampled_from(SEEDS)))
    _config_or_config_error(lambda: layotto_json.load_document(doc, source="fuzz.json"))


@settings(FUZZ, max_examples=600)
@given(st.data())
def test_mutated_json_files(scratch: Path, data: st.DataObject) -> None:
    doc = data.draw(st.sampled_from(SEEDS))
    if data.draw(st.booleans()):
        doc = _mutate(data, doc)
    path = scratch / "config.json"
    path.write_bytes(_mutate_bytes(data, json.dumps(doc, indent=data.draw(st.sampled_from([None, 2]))).encode()))
    _config_or_config_error(lambda: layotto_json.load_file(path))


@settings(FUZZ, max_examples=350)
@given(st.data())
def test_mutated_yaml_documents(scratch: Path, data: st.DataObject) -> None:
    docs = _mutate(data, YAML_SEED, yaml_values)
    path = scratch / "components.yaml"
    if not isinstance(docs, list):
        docs = [docs]
    path.write_text(yaml.safe_dump_all(docs, allow_unicode=data.draw(st.booleans())))
    _config_or_config_error(lambda: _load_resources(path))


@settings(FUZZ, max_examples=400)
@given(st.data())
def test_mutated_yaml_files(scratch: Path, data: st.DataObject) -> None:
    path = scratch / "components.yaml"
    path.write_bytes(_mutate_bytes(data, RESOURCES.encode()))
    _config_or_config_error(lambda: _load_resources(path))
