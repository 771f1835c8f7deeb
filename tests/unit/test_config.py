"""The Layotto JSON loader: upstream files read as they are, mistakes named precisely."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layotto.config import layotto_json
from layotto.errors import ConfigError
from tests.support.sidecar import layotto_config

UPSTREAM_SAMPLE = {
    "servers": [
        {
            "default_log_path": "stdout",
            "routers": [{"router_config_name": "actuator_dont_need_router"}],
            "listeners": [
                {
                    "name": "grpc",
                    "address": "127.0.0.1:34904",
                    "bind_port": True,
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "type": "grpc",
                                    "config": {
                                        "server_name": "runtime",
                                        "grpc_config": {
                                            "hellos": {"quick_start_demo": {"type": "helloworld", "hello": "greeting"}},
                                            "state": {
                                                "state_demo": {
                                                    "Type": "redis",
                                                    "metadata": {"redisHost": "localhost:6380"},
                                                }
                                            },
                                            "sequencer": {
                                                "sequencer_demo": {
                                                    "type": "redis",
                                                    "biggerThan": {"index": 1000},
                                                    "metadata": {"redisHost": "127.0.0.1:6380"},
                                                }
                                            },
                                            "config_store": {
                                                "config_demo": {
                                                    "type": "etcd",
                                                    "address": ["127.0.0.1:2379"],
                                                    "timeout": "10",
                                                }
                                            },
                                            "file": {"file_demo": {"type": "minio", "metadata": [{"endpoint": "x"}]}},
                                            "rpcs": {
                                                "mosn": {
                                                    "config": {
                                                        "channel": [
                                                            {"protocol": "http", "listener": "egress_runtime_http"}
                                                        ]
                                                    }
                                                }
                                            },
                                            "custom_component": {
                                                "helloworld": {"demo": {"type": "in-memory", "metadata": {}}}
                                            },
                                            "app": {"app_id": "app1", "grpc_callback_port": 9999},
                                        },
                                    },
                                }
                            ]
                        }
                    ],
                    "stream_filters": [{"type": "flowControlFilter", "config": {"global_switch": True}}],
                },
                {
                    "name": "actuator",
                    "address": "127.0.0.1:34999",
                    "bind_port": True,
                    "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1"}}]}],
                    "stream_filters": [{"type": "actuator_filter"}],
                },
            ],
        }
    ],
    "tracing": {"enable": True, "driver": "SOFATracer"},
}


def test_upstream_sample_is_read_as_it_is() -> None:
    cfg = layotto_json.load_document(UPSTREAM_SAMPLE, source="sample.json")
    assert cfg.grpc_address == "127.0.0.1:34904"
    assert cfg.actuator_address == "127.0.0.1:34999"
    assert cfg.app.app_id == "app1" and cfg.app.grpc_callback_port == 9999
    by_block = {(c.block, c.name): c for c in cfg.components}
    assert by_block[("hello", "quick_start_demo")].metadata["hello"] == "greeting"
    assert by_block[("state", "state_demo")].type == "redis"  # "Type" matched case-insensitively
    assert by_block[("sequencer", "sequencer_demo")].extras["biggerThan"] == {"index": 1000}
    assert by_block[("configuration", "config_demo")].metadata["address"] == ["127.0.0.1:2379"]
    assert by_block[("file", "file_demo")].metadata["__raw__"] == [{"endpoint": "x"}]
    assert ("rpc", "mosn") not in by_block
    assert any("MOSN rpc channels are not used" in w for w in cfg.warnings)
    assert by_block[("custom", "demo")].kind == "helloworld"
    assert cfg.stream_filters[0]["type"] == "flowControlFilter"
    assert cfg.tracing["driver"] == "SOFATracer"


def test_an_unknown_grpc_config_key_is_an_error_not_a_warning() -> None:
    doc = layotto_config({"some_future_key": {}}, grpc_port=1)
    with pytest.raises(ConfigError, match=r'grpc_config\.some_future_key: unknown key "some_future_key"'):
        layotto_json.load_document(doc, source="c.json")


def test_malformed_json_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"servers": [\n  {"listeners": [}\n]}')
    with pytest.raises(ConfigError) as err:
        layotto_json.load_file(path)
    assert str(path) in str(err.value)
    assert "line 2" in str(err.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        layotto_json.load_file("/nonexistent/config.json")


def test_component_without_type_names_its_json_path() -> None:
    doc = layotto_config({"state": {"s1": {"metadata": {}}}}, grpc_port=1)
    with pytest.raises(ConfigError) as err:
        layotto_json.load_document(doc, source="c.json")
    assert "c.json" in str(err.value)
    assert "grpc_config.state.s1" in str(err.value)
    assert 'no "type"' in str(err.value)


def test_no_grpc_listener() -> None:
    with pytest.raises(ConfigError, match='filter of type "grpc"'):
        layotto_json.load_document({"servers": [{"listeners": []}]})


def test_wrong_shapes_are_named() -> None:
    with pytest.raises(ConfigError, match="state"):
        layotto_json.load_document(layotto_config({"state": ["not", "an", "object"]}, grpc_port=1))
    with pytest.raises(ConfigError, match="grpc_callback_port"):
        layotto_json.load_document(layotto_config({"app": {"grpc_callback_port": "x"}}, grpc_port=1))


def test_roundtrip_through_a_file(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(UPSTREAM_SAMPLE))
    assert layotto_json.load_file(path).app.app_id == "app1"
