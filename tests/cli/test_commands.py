"""`layotto --help`, `--version`, `validate` and `components`, as real processes: what they
print, their exit codes, one line and no traceback for every mistake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from layotto import __version__
from tests.support.sidecar import free_port, layotto_config

ROOT = Path(__file__).parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.json"))
GRPC_CONFIG = "$.servers[0].listeners[0].filter_chains[0].filters[0].config.grpc_config"


def cli(*argv: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "layotto.cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def write_config(path: Path, grpc_config: dict[str, object]) -> Path:
    path.write_text(json.dumps(layotto_config(grpc_config, grpc_port=free_port(), actuator_port=free_port())))
    return path


def test_help_lists_every_command_on_one_line() -> None:
    done = cli("--help")
    assert done.returncode == 0
    listed = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("  ") and line.split()}
    for command in ("start", "run", "validate", "components", "version"):
        assert command in listed, done.stdout
        assert len(listed[command].split()) > 1, f"{command} has no help on its line"
    # One line each: no command's help spills onto a line of its own.
    after = done.stdout.split("commands:")[1].strip().splitlines()
    assert [line.split()[0] for line in after] == ["start", "run", "validate", "components", "version"]


@pytest.mark.parametrize("argv", [["--version"], ["version"]])
def test_version_prints_the_package_version(argv: list[str]) -> None:
    done = cli(*argv)
    assert done.returncode == 0
    assert done.stdout == f"layotto {__version__}\n"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_validate_accepts_every_shipped_config(path: Path) -> None:
    done = cli("validate", "-c", str(path.relative_to(ROOT)))
    assert done.returncode == 0, done.stderr
    summary = one_line(done.stdout)
    assert summary.startswith("OK: ") and " component" in summary
    assert done.stderr == ""


def test_validate_counts_and_names_the_components(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "c.json",
        {
            "state": {"orders": {"type": "in-memory"}, "carts": {"type": "sqlite", "metadata": {"databasePath": "x"}}},
            "lock": {"locks": {"type": "redis", "metadata": {"redisHost": "127.0.0.1:1"}}},
        },
    )
    done = cli("validate", "-c", str(path))
    assert done.returncode == 0, done.stderr
    # Nothing was connected to: the redis lock points at a closed port.
    assert done.stdout == "OK: 3 components (state: orders, carts; lock: locks)\n"


def test_validate_reads_dapr_manifests_too(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        textwrap.dedent(
            """\
            apiVersion: dapr.io/v1alpha1
            kind: Component
            metadata: {name: statestore}
            spec:
              type: state.redis
              version: v1
              metadata:
              - {name: redisHost, value: "127.0.0.1:1"}
            """
        )
    )
    done = cli("validate", "--resources-path", str(tmp_path), "--app-id", "orders")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "OK: 1 component (state: statestore)\n"


def _broken(tmp_path: Path, kind: str) -> list[str]:
    """The arguments of a config with one `kind` of mistake."""
    if kind == "unknown type":
        return ["-c", str(write_config(tmp_path / "c.json", {"state": {"s": {"type": "nope"}}}))]
    if kind == "bad JSON":
        path = write_config(tmp_path / "c.json", {"state": {"s": {"type": "in-memory"}}})
        path.write_text(path.read_text()[:-3])
        return ["-c", str(path)]
    if kind == "typo key":
        return ["-c", str(write_config(tmp_path / "c.json", {"app": {"app_idd": "x"}}))]
    if kind == "duplicate name":
        (tmp_path / "c.yaml").write_text(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: s}\nspec: {type: state.in-memory, "
            "version: v1}\n"
        )
        path = write_config(tmp_path / "c.json", {"state": {"s": {"type": "in-memory"}}})
        return ["-c", str(path), "--resources-path", str(tmp_path), "--dapr-http-port", str(free_port())]
    if kind == "typo key in YAML":
        (tmp_path / "c.yaml").write_text(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: s}\nspec:\n  type: state.redis\n"
            "  version: v1\n  metadata:\n  - {name: redisHost, vaule: x}\n"
        )
        return ["--resources-path", str(tmp_path)]
    if kind == "unknown secret store":
        entry = {"type": "in-memory", "secret_ref": [{"store_name": "vault", "key": "k"}]}
        return ["-c", str(write_config(tmp_path / "c.json", {"state": {"s": entry}}))]
    raise AssertionError(kind)


EXPECTED = {
    "unknown type": f"{GRPC_CONFIG}.state.s: unknown state component type 'nope' (known: in-memory,",
    "bad JSON": "c.json: malformed JSON at line 1",
    "typo key": f'{GRPC_CONFIG}.app.app_idd: unknown key "app_idd"; did you mean "app_id"?',
    "duplicate name": "duplicate state component name 's'",
    "typo key in YAML": 'unknown key "vaule"',
    "unknown secret store": "secret_ref names unknown secret store 'vault'",
}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_validate_reports_what_start_reports(tmp_path: Path, kind: str) -> None:
    argv = _broken(tmp_path, kind)
    validated = cli("validate", *argv)
    assert validated.returncode == 2
    line = one_line(validated.stderr)
    assert line.startswith("layotto: invalid configuration: ") and EXPECTED[kind] in line
    assert validated.stdout == ""
    started = cli("start", *argv)
    assert started.returncode == validated.returncode
    assert started.stderr.strip().splitlines()[-1] == line


def test_validate_warns_of_blocks_it_does_not_start(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.json", {"sms": {"texts": {"type": "aliyun"}}})
    done = cli("validate", "-c", str(path))
    assert done.returncode == 0
    assert done.stdout == "OK: 0 components\n"
    assert "warning: " in one_line(done.stderr) and "'sms' building block is not available" in done.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["validate", "--dapr-listen-addresses", "example.com"], "'example.com' is not an IP address"),
        # Several addresses are fine (each is bound); each must be one.
        (["validate", "--dapr-http-listen-addresses", "10.0.0.1,x"], "'x' is not an IP address"),
        (["validate", "--dapr-grpc-listen-addresses", " , "], "give one or more IP addresses"),
        (["start", "--log-format", "xml"], "argument --log-format: invalid choice: 'xml'"),
        (["start", "--actuator-address", "34999"], "'34999' is not host:port"),
        (["start", "--actuator-address", "::1:80"], "an IPv6 address goes in brackets, [::1]:80"),
        (["start", "--actuator-address", "127.0.0.1:1", "--metrics-port", "9090"], "not both"),
        (["start", "--", "python"], "only `layotto run` takes a command after --"),
        (["run"], "give the app's command after --"),
        (["components", "nope"], "unknown block 'nope' (blocks: secretstores, configuration,"),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_code_2(argv: list[str], message: str) -> None:
    done = cli(*argv)
    assert done.returncode == 2
    assert message in one_line(done.stderr)


def test_components_lists_the_types_and_their_metadata_keys() -> None:
    done = cli("components")
    assert done.returncode == 0, done.stderr
    # A row per type; a long list of keys goes on under its column, on indented lines.
    rows = [line.split(None, 2) for line in done.stdout.splitlines() if not line.startswith(" ")]
    assert rows[0] == ["BLOCK", "TYPE", "METADATA KEYS"]
    types = {(row[0], row[1]) for row in rows[1:]}
    for known in [("state", "redis"), ("state", "in-memory"), ("pubsub", "nats"), ("lock", "etcd")]:
        assert known in types
    redis_state = next(line for line in done.stdout.splitlines() if line.split()[:2] == ["state", "redis"])
    assert "redisHost" in redis_state


def test_components_of_one_block_as_json() -> None:
    done = cli("components", "sequencer", "--json")
    assert done.returncode == 0, done.stderr
    table = json.loads(done.stdout)
    assert list(table) == ["sequencer"]
    by_type = {row["type"]: row for row in table["sequencer"]}
    assert by_type["redis"]["class"] == "layotto.components.sequencer.redis:RedisSequencer"
    assert "redisHost" in by_type["redis"]["metadata_keys"]
    assert "connectionString" in by_type["postgresql"]["metadata_keys"]


def test_every_registered_component_declares_its_metadata_keys() -> None:
    table = json.loads(cli("components", "--json").stdout)
    for block in ("state", "pubsub", "lock", "sequencer", "configuration", "bindings", "secretstores"):
        for row in table[block]:
            assert row["metadata_keys"] is not None, f"{block} {row['type']}"
