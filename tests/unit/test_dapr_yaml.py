"""Dapr component manifests -> the runtime's ComponentSpecs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from layotto.cli import DaprFlags, load_config
from layotto.config import dapr_yaml
from layotto.config.model import RuntimeConfig
from layotto.errors import ConfigError

COMPONENTS = """\
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
    secretKeyRef:
      name: redis-secret
      key: password
  - name: actorStateStore
    value: "true"
  - name: redisDB
    value: 3
  - name: enableTLS
    value: false
auth:
  secretStore: localsecrets
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: localsecrets
spec:
  type: secretstores.local.file
  version: v1
  metadata:
  - name: secretsFile
    value: /tmp/secrets.json
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: only-for-other
spec:
  type: pubsub.redis
  version: v1
scopes:
- other-app
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: mine
spec:
  type: lock.redis
  version: v1
  metadata:
  - name: redisHost
    value: localhost:6379
scopes: [my-app]
---
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata:
  name: sub
spec: {}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: mw
spec:
  type: middleware.http.uppercase
  version: v1
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_components_map_to_blocks_types_metadata_and_secret_refs(tmp_path: Path) -> None:
    _write(tmp_path, "components.yaml", COMPONENTS)
    _write(tmp_path, "notes.txt", "not yaml, not read")
    cfg = RuntimeConfig()
    cfg.app.app_id = "my-app"
    dapr_yaml.load_into(cfg, str(tmp_path))
    by_name = {c.name: c for c in cfg.components}
    assert sorted(by_name) == ["localsecrets", "mine", "statestore"]

    state = by_name["statestore"]
    assert (state.block, state.type) == ("state", "redis")
    # YAML scalars become Dapr's strings; actor-only settings are dropped; daprd's key layout.
    assert state.metadata == {
        "redisHost": "localhost:6379",
        "redisDB": "3",
        "enableTLS": "false",
        "keyPrefix": "appid",
    }
    assert state.extras["secret_ref"] == [
        {"store_name": "localsecrets", "key": "redis-secret", "sub_key": "password", "inject_as": "redisPassword"}
    ]
    assert state.extras["dapr_type"] == "state.redis"
    assert state.extras["version"] == "v1"
    assert "components.yaml: document 1" in state.source

    secrets = by_name["localsecrets"]
    assert (secrets.block, secrets.type) == ("secretstores", "local.file")
    assert (by_name["mine"].block, by_name["mine"].type) == ("lock", "redis")
    assert any("Subscription" in w for w in cfg.warnings)
    assert any("middleware.http.uppercase" in w for w in cfg.warnings)


def test_explicit_key_prefix_is_kept(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "s.yml",
        """\
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {name: s}
        spec:
          type: state.in-memory
          metadata: [{name: keyPrefix, value: none}]
        """,
    )
    cfg = RuntimeConfig()
    dapr_yaml.load_into(cfg, str(tmp_path))
    assert cfg.components[0].metadata == {"keyPrefix": "none"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: [1, 2\n", "malformed YAML at line 2"),
        ("- just\n- a list\n", "a document must be a mapping"),
        ("apiVersion: v1\nkind: Component\n", "apiVersion must be dapr.io/v1alpha1"),
        ("apiVersion: dapr.io/v1alpha1\nkind: Pod\n", "kind must be Component"),
        ("apiVersion: dapr.io/v1alpha1\nkind: Component\nspec: {type: state.redis}\n", "metadata.name is missing"),
        ("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: x}\nspec: {type: redis}\n", "spec.type"),
        (
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: x}\n"
            "spec: {type: state.redis, metadata: {redisHost: a}}\n",
            "spec.metadata must be a list",
        ),
        (
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: x}\n"
            "spec: {type: state.redis, metadata: [{name: p, secretKeyRef: {name: s}}]}\n",
            "auth.secretStore is not set",
        ),
    ],
)
def test_invalid_yaml_names_the_file_and_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = _write(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError) as caught:
        dapr_yaml.load_into(RuntimeConfig(), str(tmp_path))
    assert str(path) in str(caught.value)
    assert problem in str(caught.value)


def test_duplicate_component_names_are_refused(tmp_path: Path) -> None:
    doc = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: x}\nspec: {type: state.in-memory}\n"
    _write(tmp_path, "a.yaml", doc)
    _write(tmp_path, "b.yaml", doc)
    with pytest.raises(ConfigError, match="duplicate state component name 'x'"):
        dapr_yaml.load_into(RuntimeConfig(), str(tmp_path))


def test_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="resources path does not exist"):
        dapr_yaml.load_into(RuntimeConfig(), str(tmp_path / "nope"))


def test_resources_path_alone_uses_upstream_defaults_and_dapr_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNTIME_CONFIG", raising=False)
    monkeypatch.setenv("DAPR_API_TOKEN", "t0ken")
    _write(
        tmp_path,
        "c.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: s}\n"
        "spec: {type: state.in-memory}\nscopes: [orders]\n",
    )
    cfg = load_config(None, str(tmp_path), DaprFlags(app_id="orders", app_port=50051))
    assert cfg.grpc_address == "127.0.0.1:34904"
    assert [c.name for c in cfg.components] == ["s"]  # no embedded default components
    assert cfg.app.app_id == "orders"
    assert (cfg.app.grpc_callback_port, cfg.app.callback_api) == (50051, "dapr")
    assert cfg.api_token == "t0ken"
    flags = DaprFlags(app_id="other", app_port=8080, app_protocol="http", grpc_port=50001, http_port=3500)
    cfg = load_config(None, str(tmp_path), flags)
    assert cfg.components == []  # scoped to "orders"
    assert (cfg.app.http_port, cfg.app.grpc_callback_port) == (8080, 0)
    assert cfg.grpc_address == "127.0.0.1:50001"
    assert cfg.dapr_http_address == "127.0.0.1:3500"
