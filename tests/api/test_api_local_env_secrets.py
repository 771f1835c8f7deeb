"""`local.env` exposes only what its metadata names: with no `prefix` and no `allowedSecrets` it
exposes nothing (and says so at start), so GetBulkSecret does not hand a caller the sidecar's
environment, DAPR_API_TOKEN included; the shipped configs give it a prefix."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.api.clients import APIS, Api, client
from tests.support.sidecar import running_sidecar

ROOT = Path(__file__).resolve().parents[2]
TAG = uuid.uuid4().hex[:8].upper()
PREFIX = f"LAYOTTO_SECRET_{TAG}_"
BARE, PREFIXED, LISTED = "bare", "prefixed", "listed"
ALLOWED = f"ALLOWED_{TAG}"


@pytest.fixture(scope="module")
async def address(caplog_module: list[logging.LogRecord]) -> AsyncIterator[str]:
    config = {
        "secret_store": {
            BARE: {"type": "local.env", "metadata": {}},
            PREFIXED: {"type": "local.env", "metadata": {"prefix": PREFIX}},
            LISTED: {"type": "local.env", "metadata": {"allowedSecrets": f"{ALLOWED}, DAPR_API_TOKEN"}},
        }
    }
    async with running_sidecar(config) as (_, running):
        yield running


@pytest.fixture(scope="module")
def caplog_module() -> Iterator[list[logging.LogRecord]]:
    """The warnings logged while the module's sidecar starts."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.WARNING)
    logging.getLogger().addHandler(handler)
    try:
        yield records
    finally:
        logging.getLogger().removeHandler(handler)


@pytest.fixture(params=APIS)
async def secrets(request: pytest.FixtureRequest, address: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    # Set after the sidecar started: a token in its environment at start would turn on auth.
    monkeypatch.setenv("DAPR_API_TOKEN", "the-sidecars-own-token")
    monkeypatch.setenv(f"{PREFIX}DB", "pw")
    monkeypatch.setenv(ALLOWED, "listed-value")
    async with grpc.aio.insecure_channel(address) as channel:
        yield client(request.param, channel)


async def test_without_prefix_or_list_nothing_is_exposed(secrets: Api, caplog_module: list[logging.LogRecord]) -> None:
    assert await secrets.bulk_secret(BARE) == {}
    assert await secrets.get_secret(BARE, "DAPR_API_TOKEN") == {"DAPR_API_TOKEN": ""}
    assert await secrets.get_secret(BARE, "HOME") == {"HOME": ""}
    warnings = [r.getMessage() for r in caplog_module if "local.env" in r.getMessage()]
    assert len(warnings) == 1 and repr(BARE) in warnings[0] and "exposes no environment variable" in warnings[0]


async def test_a_prefix_exposes_its_variables_only(secrets: Api) -> None:
    bulk = await secrets.bulk_secret(PREFIXED)
    assert bulk == {"DB": {"DB": "pw"}}
    assert await secrets.get_secret(PREFIXED, "DB") == {"DB": "pw"}
    assert await secrets.get_secret(PREFIXED, ALLOWED) == {ALLOWED: ""}


async def test_an_allow_list_exposes_its_names_only_and_never_dapr_variables(secrets: Api) -> None:
    # DAPR_API_TOKEN is listed, and still hidden, as Dapr's local.env hides every DAPR_* variable.
    assert await secrets.bulk_secret(LISTED) == {ALLOWED: {ALLOWED: "listed-value"}}
    assert await secrets.get_secret(LISTED, ALLOWED) == {ALLOWED: "listed-value"}
    assert await secrets.get_secret(LISTED, "DAPR_API_TOKEN") == {"DAPR_API_TOKEN": ""}


def _local_env_stores(doc: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(doc, dict):
        if doc.get("type") == "local.env":
            found.append(doc)
        for value in doc.values():
            found.extend(_local_env_stores(value))
    elif isinstance(doc, list):
        for value in doc:
            found.extend(_local_env_stores(value))
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.json")), ids=lambda p: p.name)
def test_shipped_configs_give_local_env_a_prefix(path: Path) -> None:
    for store in _local_env_stores(json.loads(path.read_text())):
        assert store.get("metadata", {}).get("prefix"), f"{path.name}: {store}"
