"""Readiness keys components by block and name: a state store and a lock of the same name are
two components, and a DOWN one must not be hidden behind an UP one of another block
(tests/e2e/test_readiness.py has the rest of readiness)."""

from __future__ import annotations

from layotto.actuator.http import Actuator
from layotto.config import layotto_json
from layotto.runtime.runtime import Runtime
from tests.support.sidecar import free_port, layotto_config


async def test_a_state_store_and_a_lock_of_one_name_are_both_reported() -> None:
    doc = layotto_config(
        {"state": {"shared": {"type": "in-memory"}}, "lock": {"shared": {"type": "in-memory"}}},
        grpc_port=free_port(),
    )
    rt = Runtime(layotto_json.load_document(doc, source="<test>"))
    await rt.start()
    try:
        lock = rt.get("lock", "shared")
        assert lock is not None

        async def down() -> None:
            raise ConnectionError("lock backend gone")

        lock.ping = down  # type: ignore[method-assign]
        health = await rt.health()
        assert health == {("state", "shared"): "UP", ("lock", "shared"): "DOWN"}
        code, body = await Actuator(rt, "127.0.0.1:0").health("readiness")
        components = body["components"]
        assert isinstance(components, dict)
        assert components["state.shared"] == {"status": "UP"}
        # A lock is not critical by default: the sidecar is degraded, still ready.
        assert components["lock.shared"] == {
            "status": "DOWN",
            "details": {"critical": False, "error": "lock backend gone"},
        }
        assert code == 200 and body["status"] == "DEGRADED"
    finally:
        await rt.close()
