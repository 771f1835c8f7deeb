"""The config loaders answer every mistake with a ConfigError naming where it is: wrong types,
unknown keys (with the closest known one), bytes that are not UTF-8, nesting and YAML aliases
beyond reason; and the CLI answers a bad flag with one line, never a traceback."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from layotto.config import dapr_yaml, layotto_json
from layotto.config.model import RuntimeConfig
from layotto.errors import ConfigError

ROOT = Path(__file__).parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.json"))
GRPC_CONFIG = "$.servers[0].listeners[0].filter_chains[0].filters[0].config.grpc_config"


def _shipped(name: str = "config.json") -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((ROOT / "configs" / name).read_text())
    return doc


def _grpc_config(doc: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = doc["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"]
    return config["grpc_config"]  # type: ignore[no-any-return]


def _error(doc: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        layotto_json.load_document(doc, source="c.json")
    return str(caught.value)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads_without_a_warning(path: Path) -> None:
    cfg = layotto_json.load_file(path)
    assert cfg.components or cfg.wasm.functions
    assert cfg.warnings == []


def test_a_port_that_is_not_a_number_is_named() -> None:
    doc = _shipped()
    _grpc_config(doc)["app"]["http_port"] = "abc"
    assert _error(doc) == (
        f'c.json: {GRPC_CONFIG}.app.http_port: http_port must be a port number from 0 to 65535, got the string "abc"'
    )


@pytest.mark.parametrize("port", [-1, 65536, 1.5, True, [8080], {"port": 1}])
def test_ports_out_of_range_or_of_another_type(port: Any) -> None:
    doc = _shipped()
    _grpc_config(doc)["app"]["grpc_callback_port"] = port
    assert "grpc_callback_port must be a port number" in _error(doc)


def test_a_listener_key_typo_is_an_error_with_the_closest_key() -> None:
    doc = _shipped()
    listener = doc["servers"][0]["listeners"][0]
    listener["adress"] = listener.pop("address")
    assert _error(doc) == 'c.json: $.servers[0].listeners[0].adress: unknown key "adress"; did you mean "address"?'


def test_a_block_key_typo_is_an_error_not_a_warning() -> None:
    doc = _shipped()
    grpc_config = _grpc_config(doc)
    grpc_config["stat"] = grpc_config.pop("state")
    assert _error(doc) == f'c.json: {GRPC_CONFIG}.stat: unknown key "stat"; did you mean "state"?'


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d.__setitem__("server", d.pop("servers")),
            '$.server: unknown key "server"; did you mean "servers"?',
        ),
        (
            lambda d: d["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0].__setitem__("confg", {}),
            'filters[0].confg: unknown key "confg"; did you mean "config"?',
        ),
        (
            lambda d: d["servers"][0]["listeners"][1]["stream_filters"][0].__setitem__("type", "actuator_fliter"),
            'stream_filters[0].type: unknown stream filter type "actuator_fliter"; did you mean "actuator_filter"?',
        ),
        (
            lambda d: _grpc_config(d)["state"]["state_demo"].__setitem__("metdata", {}),
            'state.state_demo.metdata: unknown key "metdata"; did you mean "metadata"?',
        ),
        (
            lambda d: _grpc_config(d)["app"].__setitem__("appid", "x"),
            'app.appid: unknown key "appid"; did you mean "app_id"?',
        ),
        (
            lambda d: d["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0].__setitem__("type", "grcp"),
            'a filter has type "grcp": did you mean "grpc"?',
        ),
    ],
)
def test_typos_anywhere_name_the_closest_key(mutate: Any, message: str) -> None:
    doc = _shipped()
    mutate(doc)
    assert message in _error(doc)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.__setitem__("servers", {}), "$.servers: servers must be a JSON array, got a JSON object"),
        (
            lambda d: d["servers"].__setitem__(0, "x"),
            '$.servers[0]: a server must be a JSON object, got the string "x"',
        ),
        (lambda d: d["servers"][0]["listeners"][0].__setitem__("address", 34904), "address must be a string"),
        (lambda d: d["servers"][0]["listeners"][0].__setitem__("address", "localhost"), 'address must be "host:port"'),
        (lambda d: d["servers"][0]["listeners"][0].__setitem__("network", "udp"), 'must be "tcp" or "unix"'),
        (lambda d: d["servers"][0]["listeners"][0].__setitem__("stream_filters", [1]), "a stream filter must be"),
        (lambda d: d["servers"][0]["listeners"][0]["filter_chains"].__setitem__(0, []), "a filter chain must be"),
        (lambda d: _grpc_config(d).__setitem__("lock", []), f"{GRPC_CONFIG}.lock: lock must be a JSON object"),
        (lambda d: _grpc_config(d)["lock"].__setitem__("lock_demo", "x"), "a component entry must be a JSON object"),
        (lambda d: _grpc_config(d)["lock"]["lock_demo"].__setitem__("type", 7), "type must be a component type name"),
        (lambda d: _grpc_config(d)["lock"]["lock_demo"].__setitem__("metadata", [1]), "metadata must be a JSON object"),
        (lambda d: _grpc_config(d)["lock"]["lock_demo"].__setitem__("secret_ref", {}), "secret_ref must be a JSON"),
        (lambda d: _grpc_config(d)["app"].__setitem__("app_id", 1), "app.app_id: app_id must be a string"),
        (lambda d: d.__setitem__("tracing", {"enable": 1}), "$.tracing.enable: enable must be true, false"),
        (lambda d: d.__setitem__("metrics", []), "$.metrics: metrics must be a JSON object"),
    ],
)
def test_wrong_types_and_shapes_are_named(mutate: Any, message: str) -> None:
    doc = _shipped()
    mutate(doc)
    assert message in _error(doc)


def test_component_metadata_is_free_form() -> None:
    doc = _shipped()
    metadata = {"adress": 1, "metdata": {"deep": [1, {"x": None}]}, "type": "not the component's"}
    _grpc_config(doc)["state"]["state_demo"]["metadata"] = metadata
    cfg = layotto_json.load_document(doc)
    assert next(c for c in cfg.components if c.name == "state_demo").metadata == metadata


def test_mosn_settings_are_accepted_and_ignored() -> None:
    doc = _shipped()
    doc.update(
        cluster_manager={"clusters": []},
        admin={"address": {"socket_address": {"address": "0.0.0.0", "port_value": 34901}}},
        pprof={"debug": True, "port_value": 34902},
        dynamic_resources={},
        static_resources={},
        close_graceful=True,
        extends=[],
    )
    server = doc["servers"][0]
    server.update(default_log_level="INFO", graceful_timeout="30s", processor="auto", mosn_server_name="m")
    listener = server["listeners"][0]
    listener.update(type="ingress", access_logs=[{"log_path": "stdout"}], inspector=True, reuseport=False)
    listener["filter_chains"][0].update(match="", tls_context={"status": False})
    listener["filter_chains"][0]["filters"][0]["config"]["graceful_stop_timeout"] = "10s"
    listener["stream_filters"] = [{"type": "fault_inject", "config": {"delay_percent": 1}, "go_plugin_config": {}}]
    _grpc_config(doc)["extends"] = {"anything": [1, 2]}
    cfg = layotto_json.load_document(doc)
    assert cfg.warnings == [] and cfg.actuator_address == "127.0.0.1:34999"


def test_upstreams_old_block_names_are_warned_about_and_not_loaded() -> None:
    doc = _shipped("config_redis.json")
    _grpc_config(doc)["files"] = {"f": {"type": "minio", "metadata": [{"endpoint": "x"}]}}
    cfg = layotto_json.load_document(doc, source="c.json")
    assert not any(c.block == "file" for c in cfg.components)
    assert cfg.warnings == [
        f"c.json: {GRPC_CONFIG}.files: 'files' is the old name of 'file', which upstream reads"
        " instead; its components are not loaded (rename it to 'file')"
    ]


def test_keys_match_whatever_their_case_as_upstreams_go_reads_them() -> None:
    doc = _shipped()
    entry = _grpc_config(doc)["state"]["state_demo"]
    entry["Secret_Ref"] = [{"Store_Name": "secret_demo", "Key": "k"}]
    doc["Tracing"] = {"Enable": True, "Driver": "SOFATracer"}
    cfg = layotto_json.load_document(doc)
    spec = next(c for c in cfg.components if c.name == "state_demo")
    assert spec.extras["secret_ref"] == [{"store_name": "secret_demo", "key": "k"}]
    assert cfg.tracing == {"enable": True, "driver": "SOFATracer"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"servers": [\xff]}', "not UTF-8 text: byte 0xff at line 1 column 14"),
        (b'{\n "a": "\xc3\x28"}', "not UTF-8 text: byte 0xc3 at line 2 column 8"),
        (b'{"servers": NaN}', "malformed JSON: NaN is not a JSON value"),
        (b'{"servers": 1e999}', "$.servers: a number is out of range"),
        (b'{"servers": "\\ud800"}', "a string is not Unicode text"),
        (b'{"servers": 1' + b"0" * 5000 + b"}", "a number has too many digits"),
        (b"[" * 100_000, "nested deeper than 64 levels"),
        (b'{"a": ' * 70 + b"1" + b"}" * 70, "nested deeper than 64 levels"),
        (b"[1, 2]", "$: the config must be a JSON object, got a JSON array"),
        (b"", "malformed JSON at line 1 column 1"),
    ],
)
def test_bytes_that_are_not_a_json_config(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as caught:
        layotto_json.load_file(path)
    assert str(caught.value).startswith(str(path)) and message in str(caught.value)


def test_a_byte_order_mark_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(b"\xef\xbb\xbf" + (ROOT / "configs" / "config.json").read_bytes())
    assert layotto_json.load_file(path).app.app_id == "app1"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"vm_config": {"path": "f.wasm"}, "limits": {"memory_mb": 1e300}}, "memory_mb must be a positive number"),
        ({"vm_config": {"path": "f.wasm"}, "limits": {"timeot_ms": 1}}, 'did you mean "timeout_ms"?'),
        ({"vm_config": {"path": "f.wasm", "engin": "wasmtime"}}, 'did you mean "engine"?'),
        ({"vm_confg": {"path": "f.wasm"}}, 'did you mean "vm_config"?'),
        ({"vm_config": {"path": "f.wasm"}, "instance_num": 10**30}, "instance_num must be an integer"),
        ({"vm_config": {"path": "f.wasm"}, "extra": [1]}, 'unknown key "extra"'),
    ],
)
def test_wasm_function_entries(entry: dict[str, Any], message: str) -> None:
    doc = _shipped("config_wasm.json")
    doc["servers"][0]["listeners"][1]["stream_filters"][0]["config"] = {"f": entry}
    assert message in _error(doc)


def test_a_wasm_entrys_string_values_stay_the_plugins_configuration() -> None:
    doc = _shipped("config_wasm.json")
    entry = {"vm_config": {"path": "f.wasm"}, "greeting": "hi", "from_wasm_plugn": "shared"}
    doc["servers"][0]["listeners"][1]["stream_filters"][0]["config"] = {"f": entry}
    assert 'did you mean "from_wasm_plugin"?' in _error(doc)
    del entry["from_wasm_plugn"]
    spec = layotto_json.load_document(doc).wasm.functions[0]
    assert spec.plugin_config == {"greeting": "hi"}


COMPONENT = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
  labels: {app: shop}
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: localhost:6379
"""


def _yaml_error(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / "c.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text))
    with pytest.raises(ConfigError) as caught:
        dapr_yaml.load_into(RuntimeConfig(), str(path))
    assert str(caught.value).startswith(str(path))
    return str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (COMPONENT.replace("  version:", "  verison:"), 'spec.verison (line 8): unknown key "verison"; did you mean'),
        (COMPONENT.replace("    value:", "    vaule:"), 'spec.metadata[0].vaule (line 11): unknown key "vaule"'),
        (COMPONENT + "scope: [a]\n", 'document 1: scope (line 12): unknown key "scope"; did you mean "scopes"?'),
        (COMPONENT.replace("state.redis", "stat.redis"), "unknown building block 'stat' in 'stat.redis'; did you"),
        (COMPONENT.replace("state.redis", "state."), "spec.type (line 7): spec.type must look like 'state.redis'"),
        (COMPONENT.replace("kind: Component", "kind: Compnent"), "got 'Compnent' (did you mean 'Component'?)"),
        (COMPONENT.replace("name: statestore", "name: [x]"), "metadata.name (line 4): metadata.name must be a string"),
        (COMPONENT + "auth: {secretStore: 1}\n", "auth.secretStore (line 12): secretStore must be a string"),
        (COMPONENT + "scopes: app1\n", "scopes (line 12): scopes must be a list"),
        (COMPONENT.replace("localhost:6379", "2001-13-45"), "malformed YAML in document 1: month must be in 1..12"),
        (COMPONENT.replace("localhost:6379", "9" * 5000), "a number has too many digits"),
        (COMPONENT.replace("localhost:6379", "[" * 2000 + "]" * 2000), "nested deeper than 64 levels"),
        (COMPONENT.replace("localhost:6379", "[" * 70 + "]" * 70), "spec.metadata[0].value[0]"),
        (COMPONENT.replace("localhost:6379", "\x07"), "malformed YAML at line 11 column 12: character #x0007"),
        (COMPONENT.replace("localhost:6379", "!!python/object:os.system x"), "could not determine a constructor"),
        (COMPONENT.replace("localhost:6379", "*nowhere"), "found undefined alias"),
        ("&a [*a]\n", "nested deeper than 64 levels"),
    ],
)
def test_yaml_mistakes_name_the_file_document_path_and_line(tmp_path: Path, text: str, message: str) -> None:
    assert message in _yaml_error(tmp_path, text)


def test_non_utf8_yaml(tmp_path: Path) -> None:
    assert "not UTF-8 text: byte 0xfe at line 2 column 7" in _yaml_error(tmp_path, b"kind: Component\nspec: \xfe\n")


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    started = time.monotonic()
    message = _yaml_error(tmp_path, "\n".join(lines) + "\n")  # 10**9 values
    assert "expands to more than 100000 values" in message
    assert time.monotonic() - started < 5


def test_yaml_values_become_daprs_strings(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(COMPONENT.replace("localhost:6379", "{when: 2001-01-02, 1: !!binary aGk=}"))
    cfg = RuntimeConfig()
    dapr_yaml.load_into(cfg, str(path))
    assert json.loads(cfg.components[0].metadata["redisHost"]) == {"when": "2001-01-02", "1": "aGk="}


def test_daprs_other_categories_are_skipped_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(COMPONENT.replace("state.redis", "middleware.http.oauth2"))
    cfg = RuntimeConfig()
    dapr_yaml.load_into(cfg, str(path))
    assert cfg.components == [] and "has no building block here" in cfg.warnings[0]


def _cli(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "layotto.cli", *argv], capture_output=True, text=True, timeout=60, cwd=cwd
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--log-level", "foo"], "layotto start: error: argument --log-level: invalid choice: 'foo' (choose from"),
        (["--app-port", "abc"], "argument --app-port: 'abc' is not a port number (1-65535)"),
        (["--dapr-grpc-port", "65536"], "argument --dapr-grpc-port: '65536' is not a port number"),
        (["--dapr-http-port", "-1"], "argument --dapr-http-port: '-1' is not a port number"),
        (["--app-health-threshold", "0"], "argument --app-health-threshold: '0' is not a positive integer"),
        (["--app-protocol", "udp"], "argument --app-protocol: invalid choice: 'udp'"),
    ],
)
def test_a_bad_flag_is_one_line_and_exit_code_2(argv: list[str], message: str) -> None:
    done = _cli("start", *argv)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert message in done.stderr


def test_a_bad_config_file_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    doc = copy.deepcopy(_shipped())
    _grpc_config(doc)["app"]["http_port"] = "abc"
    path = tmp_path / "c.json"
    path.write_text(json.dumps(doc))
    done = _cli("start", "-c", str(path), "--log-level", "debug")  # the level is taken in any case
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        f"layotto: invalid configuration: {path}: {GRPC_CONFIG}.app.http_port:"
        ' http_port must be a port number from 0 to 65535, got the string "abc"'
    )
