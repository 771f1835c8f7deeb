"""Reloads without dropped requests: a rewritten file, /wasm/update, and upstream's management
endpoints."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from tests.wasm import guests
from tests.wasm.support import Running, function, running


async def _load(rt: Running, function_id: str, stop: asyncio.Event, workers: int = 8) -> list[tuple[int, str]]:
    """Calls from `workers` clients at once until `stop`; every answer."""
    answers: list[tuple[int, str]] = []

    async def client() -> None:
        while not stop.is_set():
            answers.append(await rt.call(function_id, b"-"))

    await asyncio.gather(*(client() for _ in range(workers)))
    return answers


def _replace(path: Path, data: bytes) -> None:
    """As a deployment does: write beside, then rename over."""
    staged = path.with_suffix(".new")
    staged.write_bytes(data)
    os.replace(staged, path)


async def test_a_rewritten_file_is_swapped_in_under_load_without_a_failed_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = guests.write(tmp_path, "version", id="fn_v", text="v1")
    async with running({"v": function(path, instances=2)}) as rt:
        found = rt.wasm.functions.get("fn_v")
        assert found is not None
        stop = asyncio.Event()
        load = asyncio.ensure_future(_load(rt, "fn_v", stop))
        _replace(path, guests.build("version", id="fn_v", text="v2"))
        await asyncio.wait_for(rt.wasm.functions.wait_for(lambda: found.generation == 2), 10)
        # In place this time, with a broken file: the running build keeps serving.
        path.write_bytes(b"\0asm not really")
        await asyncio.wait_for(rt.wasm.functions.wait_for(lambda: bool(found.refused)), 10)
        assert await rt.call("fn_v") == (200, "v2")
        stop.set()
        answers = await load
    assert {status for status, _ in answers} == {200}, [a for a in answers if a[0] != 200][:3]
    assert {text for _, text in answers} <= {"v1", "v2"}
    assert answers[-1] == (200, "v2")
    assert "keeps its running build" in caplog.text and "not a valid WebAssembly module" in caplog.text


async def test_update_changes_the_instance_count_under_load(tmp_path: Path) -> None:
    path = guests.write(tmp_path, "version", id="fn_v", text="same")
    async with running({"v": function(path)}) as rt:
        stop = asyncio.Event()
        load = asyncio.ensure_future(_load(rt, "fn_v", stop))
        async with rt.http.post(rt.admin + "/wasm/update", json={"name": "fn_v", "instance_num": 3}) as response:
            assert (response.status, await response.read()) == (200, b"")
        found = rt.wasm.functions.get("fn_v")
        assert found is not None and found.pool.size == 3
        assert await rt.call("fn_v") == (200, "same")
        stop.set()
        answers = await load
    assert answers and set(answers) == {(200, "same")}


async def test_management_endpoints_answer_as_upstream(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "layotto.wasm")
    path = guests.write(tmp_path, "version", id="fn_v", text="v1")
    other = guests.write(tmp_path, "version", id="fn_w", text="w1")
    async with running({"v": function(path)}) as rt:

        async def post(endpoint: str, body: object) -> tuple[int, object]:
            async with rt.http.post(f"{rt.admin}/wasm/{endpoint}", json=body) as response:
                raw = await response.read()
                return response.status, (await response.json() if raw else None)

        install = {"name": "fn_w", "instance_num": 1, "vm_config": {"engine": "wasmtime", "path": str(other)}}
        assert await post("install", install) == (200, None)
        assert await rt.call("fn_w") == (200, "w1")
        assert await post("install", install) == (500, {"error": "fn_w is already registered"})
        assert await post("install", {"instance_num": 1}) == (500, {"error": "can't get name property"})
        missing = {**install, "name": "fn_x", "vm_config": {"path": str(tmp_path / "none.wasm")}}
        status, body = await post("install", missing)
        assert status == 500 and "cannot read" in str(body)
        assert await post("update", {"name": "fn_w"}) == (500, {"error": "can't get instance_num property"})
        assert await post("update", {"name": "fn_w", "instance_num": 0}) == (
            500,
            {"error": "instance_num should be greater than 0"},
        )
        assert await post("update", {"name": "fn_q", "instance_num": 2}) == (500, {"error": "fn_q is not registered"})
        assert await post("uninstall", {"name": "fn_w"}) == (200, None)
        assert (await rt.call("fn_w"))[0] == 404
        assert await post("uninstall", {"name": "fn_w"}) == (500, {"error": "fn_w is not registered"})
        assert await post("nothing", {}) == (404, None)
        async with rt.http.post(f"{rt.admin}/other/install", data=b"{}") as response:
            assert response.status == 404
        async with rt.http.post(f"{rt.admin}/wasm/install", data=b"not json") as response:
            assert response.status == 500 and "error" in await response.json()
        assert await rt.call("fn_v") == (200, "v1")
