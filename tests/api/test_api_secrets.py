"""GetSecret / GetBulkSecret of both gRPC APIs on a local.file secret store: values, and the
exact code and message of every failure as each API gives it today."""

from __future__ import annotations

import grpc

from tests.api.clients import DAPR, LAYOTTO, Api, failure
from tests.api.conftest import SECRETS

C = grpc.StatusCode


async def test_get_and_bulk_get(api: Api) -> None:
    assert await api.get_secret(SECRETS, "db") == {"db": "pw"}
    assert await api.get_secret(SECRETS, "nested:a") == {"nested:a": "x"}
    assert await api.bulk_secret(SECRETS) == {"db": {"db": "pw"}, "nested:a": {"nested:a": "x"}}


async def test_missing_secret(api: Api) -> None:
    expected = {
        LAYOTTO: (
            C.INTERNAL,
            f"error when get secret : secret name => nope,store name =>{SECRETS},error => secret nope not found",
        ),
        DAPR: (C.INTERNAL, f"failed getting secret with key nope from secret store {SECRETS}: secret nope not found"),
    }
    assert await failure(api.get_secret(SECRETS, "nope")) == expected[api.name]


async def test_unknown_store(api: Api) -> None:
    message = {LAYOTTO: "error when get secret but not find : nope", DAPR: "failed finding secret store with key nope"}
    assert await failure(api.get_secret("nope", "db")) == (C.INVALID_ARGUMENT, message[api.name])
    assert await failure(api.bulk_secret("nope")) == (C.INVALID_ARGUMENT, message[api.name])


async def test_no_secret_store_configured(empty: Api) -> None:
    message = {LAYOTTO: "error when get secret but not find configured", DAPR: "secret store is not configured"}
    assert await failure(empty.get_secret(SECRETS, "db")) == (C.FAILED_PRECONDITION, message[empty.name])
    assert await failure(empty.bulk_secret(SECRETS)) == (C.FAILED_PRECONDITION, message[empty.name])
