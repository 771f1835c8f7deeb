"""Dapr's `bindings.redis` output binding: create (SET), get, delete, increment on metadata `key`."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from layotto.components._drivers import redis as redis_driver
from layotto.components.base import ComponentContext, Metadata
from layotto.components.bindings.base import InvokeRequest, InvokeResponse, OutputBinding
from layotto.errors import BackendUnavailableError, ComponentError, InvalidArgumentError

_OPERATIONS = ["create", "delete", "get", "increment"]


def _ttl(metadata: dict[str, str]) -> int | None:
    """`ttlInSeconds` request metadata: None when absent; a positive number of seconds or 0."""
    raw = metadata.get("ttlInSeconds", "")
    if raw == "":
        return None
    try:
        return max(int(raw), 0)
    except ValueError:
        raise InvalidArgumentError(f"value must be a valid integer: actual is '{raw}'") from None


class RedisBinding(OutputBinding):
    metadata_keys = (*redis_driver.METADATA_KEYS,)
    _client: redis_driver.Client | None = None

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        settings = redis_driver.RedisSettings.from_metadata(metadata)
        self._address = settings.address
        self._client = redis_driver.connect(settings)
        try:
            await self._client.ping()
        except redis_driver.UNAVAILABLE as exc:
            await self.close()
            raise BackendUnavailableError(
                f"redis binding: error connecting to redis at {self._address}: {exc}"
            ) from exc

    def operations(self) -> list[str]:
        return list(_OPERATIONS)

    async def ping(self) -> None:
        assert self._client is not None
        await redis_driver.ping(self._client, self._address)

    async def invoke(self, request: InvokeRequest) -> InvokeResponse:
        client = self._client
        assert client is not None, "init() was not called"
        key = request.metadata.get("key", "")
        if not key:
            raise InvalidArgumentError("redis binding: missing key in request metadata")
        ttl = _ttl(request.metadata)
        try:
            return await self._run(client, request, key, ttl)
        except redis_driver.UNAVAILABLE as exc:
            raise redis_driver.unavailable(self._address, exc) from exc
        except aioredis.RedisError as exc:
            raise ComponentError(f"redis binding: {exc}") from exc

    @staticmethod
    async def _run(client: redis_driver.Client, request: InvokeRequest, key: str, ttl: int | None) -> InvokeResponse:
        operation = request.operation
        if operation == "create":
            # One command, so a reader never sees the value without its expiry.
            await client.set(key, request.data, ex=ttl or None)
            return InvokeResponse()
        if operation == "get":
            delete = request.metadata.get("delete", "").lower() == "true"
            value = await (client.getdel(key) if delete else client.get(key))
            if value is None:
                return InvokeResponse()
            return InvokeResponse(data=value.encode() if isinstance(value, str) else bytes(value))
        if operation == "delete":
            await client.delete(key)
            return InvokeResponse()
        if operation == "increment":

            async def increment(node: aioredis.Redis) -> Any:
                async with node.pipeline(transaction=True) as pipe:
                    pipe.incr(key)
                    if ttl:
                        pipe.expire(key, ttl)
                    return (await pipe.execute())[0]

            value = await redis_driver.on_one_node(client, [key], increment, "increment")
            return InvokeResponse(data=str(value).encode())
        raise InvalidArgumentError(f"invalid operation type: {operation}")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
