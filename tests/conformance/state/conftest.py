"""One in-process sidecar per backend, shared by every test of this package for that backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from layotto.proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from layotto.runtime.server import Sidecar
from tests.support.services import require
from tests.support.sidecar import running_sidecar

from .backends import BACKENDS, Backend, grpc_config


@dataclass
class StateEnv:
    backend: Backend
    sidecar: Sidecar
    stub: runtime_pb2_grpc.RuntimeStub


@pytest.fixture(scope="package", params=BACKENDS, ids=[b.name for b in BACKENDS])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[StateEnv]:
    backend: Backend = request.param
    if backend.service:
        require(backend.service)
    try:
        async with running_sidecar(grpc_config(backend)) as (sidecar, address):
            async with grpc.aio.insecure_channel(address) as channel:
                yield StateEnv(backend, sidecar, runtime_pb2_grpc.RuntimeStub(channel))
    finally:
        await backend.cleanup()
