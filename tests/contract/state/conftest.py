"""One in-process sidecar per backend, shared by every test of this package for that backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from layotto.sidecar import Sidecar
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.rows import params
from tests.support.sidecar import running_sidecar

from .backends import ROWS, Row, grpc_config


@dataclass
class StateEnv:
    backend: Row
    sidecar: Sidecar
    stub: runtime_pb2_grpc.RuntimeStub


@pytest.fixture(scope="package", params=params(ROWS))
async def env(request: pytest.FixtureRequest) -> AsyncIterator[StateEnv]:
    backend: Row = request.param
    backend.require()
    try:
        async with running_sidecar(grpc_config(backend), await backend.components()) as (sidecar, address):
            async with grpc.aio.insecure_channel(address) as channel:
                yield StateEnv(backend, sidecar, runtime_pb2_grpc.RuntimeStub(channel))
    finally:
        if backend.cleanup is not None:
            await backend.cleanup()
