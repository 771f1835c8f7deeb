"""start_purger (_drivers/sql.py): the expired-row cleanup loop the SQL state stores share."""

from __future__ import annotations

import asyncio
import logging

import pytest

from layotto.components._drivers import sql
from layotto.components.base import Metadata
from layotto.errors import ComponentError
from layotto.tasks import stop_task

log = logging.getLogger("test.purger")


async def test_zero_interval_starts_nothing() -> None:
    async def purge() -> None:
        raise AssertionError("must not run")

    assert sql.start_purger(Metadata({"cleanupIntervalInSeconds": "0"}), "p", purge, (ComponentError,), log) is None
    await stop_task(None)


async def test_a_failed_round_is_logged_and_the_next_one_runs(caplog: pytest.LogCaptureFixture) -> None:
    rounds = 0
    second = asyncio.Event()

    async def purge() -> None:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            raise ComponentError("backend went away")
        second.set()

    task = sql.start_purger(Metadata({"cleanupIntervalInSeconds": "0.01"}), "p", purge, (ComponentError,), log)
    assert task is not None
    with caplog.at_level(logging.WARNING, logger="test.purger"):
        await asyncio.wait_for(second.wait(), 5)
    await stop_task(task)
    assert task.cancelled()
    assert "purging expired state rows failed: backend went away" in caplog.text
