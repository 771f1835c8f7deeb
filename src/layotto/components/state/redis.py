"""Redis state store with the key layout and etag scheme of Dapr components-contrib v1.5.2.

Each key is a hash: `data` (the raw bytes), `version` (the etag, incremented by every save)
and `first-write`=0 once saved with first-write concurrency. Saves and deletes run Lua
scripts whose checks are upstream's, so sidecars of either implementation can share data.
Unlike upstream, the TTL is applied inside the save script (one atomic round trip), and a
transaction checks every etag under WATCH before its MULTI/EXEC, so it applies all or nothing.

On a Redis Cluster each key goes to the node of its slot (reads and saves share one pipelined
connection per node). A transaction runs on the node of its keys' slot, so its keys must share
one (a {hash tag}); keys in several slots are refused before anything is written, since no
cluster can apply them atomically. Strong consistency waits (WAIT) for the replicas of the
node that took the write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError, WatchError

from layotto.components._drivers import redis as redis_driver
from layotto.components.base import ComponentContext, Metadata
from layotto.components.state import base as state
from layotto.errors import ComponentError, ETagMismatchError, InvalidArgumentError

log = logging.getLogger("layotto.state.redis")

_MISMATCH = "etag mismatch"
_BAD_TTL = "invalid ttlInSeconds"
#: WATCH conflicts a transaction retries before giving up (each retry means another writer won).
_MAX_WATCH_RETRIES = 64

# ARGV: 1 expected version ("0" = none), 2 data, 3 "0" for first-write, 4 ttl ("" = keep).
# Without an etag the check is upstream's: a missing/empty version, or a key not flagged
# first-write, lets the save through. With one, the stored version must equal it: a missing key
# (or a plain value, which has no version) is a mismatch, as on every other store (upstream
# lets it through). Every check, the TTL's included, comes before the first write: a script
# that fails part way keeps what it wrote, so it must fail before writing anything. A plain
# (non-hash) value is replaced.
SET_SCRIPT = """
local ttl = nil
if ARGV[4] and ARGV[4] ~= "" then
  ttl = tonumber(ARGV[4])
  if not ttl or ttl ~= math.floor(ttl) or ttl > 2147483647 then
    return redis.error_reply("invalid ttlInSeconds " .. ARGV[4] .. ": failed to set key " .. KEYS[1])
  end
end
local version = redis.pcall("HGET", KEYS[1], "version")
local plain = type(version) == "table"
if ARGV[1] ~= "0" then
  if plain or version ~= ARGV[1] then
    return redis.error_reply("etag mismatch: failed to set key " .. KEYS[1])
  end
else
  local fwr = not plain and redis.call("HGET", KEYS[1], "first-write")
  if not plain and version and version ~= "" and version ~= ARGV[1] and fwr then
    return redis.error_reply("etag mismatch: failed to set key " .. KEYS[1])
  end
end
if plain then
  redis.call("DEL", KEYS[1])
end
redis.call("HSET", KEYS[1], "data", ARGV[2])
if ARGV[3] == "0" then
  redis.call("HSET", KEYS[1], "first-write", 0)
end
if ttl then
  if ttl > 0 then
    redis.call("EXPIRE", KEYS[1], ttl)
  else
    redis.call("PERSIST", KEYS[1])
  end
end
return redis.call("HINCRBY", KEYS[1], "version", 1)
"""

# ARGV: 1 expected version ("0" = none). With an etag, the stored version must equal it (a
# missing key is a mismatch, see SET_SCRIPT).
DELETE_SCRIPT = """
if ARGV[1] ~= "0" then
  local version = redis.pcall("HGET", KEYS[1], "version")
  if type(version) == "table" or version ~= ARGV[1] then
    return redis.error_reply("etag mismatch: failed to delete " .. KEYS[1])
  end
end
return redis.call("DEL", KEYS[1])
"""


@dataclass(slots=True)
class _Known:
    """A key's version and first-write flag as a transaction sees them while checking."""

    version: bytes | None
    first_write: bool


class RedisStateStore(state.StateStore):
    metadata_keys = (*redis_driver.METADATA_KEYS, "ttlInSeconds")
    features = frozenset({state.StateFeature.ETAG, state.StateFeature.TRANSACTIONAL, state.StateFeature.TTL})

    def __init__(self) -> None:
        self._client: redis_driver.Client | None = None
        # Never None, so the hot path needs no check; init replaces it before any use.
        self._fast: redis_driver.Pipelined = redis_driver.SharedConnection("127.0.0.1", 6379)
        self._address = ""
        self._default_ttl: int | None = None
        self._replicas = 0

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        settings = redis_driver.RedisSettings.from_metadata(metadata)
        self._client = redis_driver.connect(settings)
        self._fast = redis_driver.pipelined(self._client, settings)
        self._address = settings.address
        self._default_ttl = state.default_ttl(metadata, self.max_ttl_seconds())
        self._set = self._client.register_script(SET_SCRIPT)
        self._delete = self._client.register_script(DELETE_SCRIPT)
        self._scripts = {True: (self._set.sha, SET_SCRIPT), False: (self._delete.sha, DELETE_SCRIPT)}
        try:
            await self._client.ping()
            await self._count_replicas()
        except redis_driver.UNAVAILABLE as exc:
            await self.close()
            raise redis_driver.unavailable(self._address, exc) from exc

    async def _count_replicas(self) -> None:
        """The replicas of the server (not of a cluster: its nodes' are in the slot table)."""
        if not isinstance(self.client, redis_driver.RoutedCluster):
            info = await self.client.info("replication")
            self._replicas = int(info.get("connected_slaves", 0) or 0)

    @property
    def client(self) -> redis_driver.Client:
        assert self._client is not None, "redis state store is not initialised"
        return self._client

    # ---- reads ----
    @staticmethod
    def _response(key: str, fields: dict[bytes, bytes]) -> state.GetResponse | None:
        if not fields:
            return None
        data = fields.get(b"data")
        version = fields.get(b"version")
        if data is None or version is None:
            raise ComponentError(f"required hash field 'data' or 'version' was not found in key {key}")
        return state.GetResponse(data, version.decode())

    async def _plain_get(self, key: str) -> state.GetResponse | None:
        """Values written by SET before state was kept in hashes: no etag."""
        value = await self.client.get(key)
        return None if value is None else state.GetResponse(cast(bytes, value), None)

    async def get(self, request: state.GetRequest) -> state.GetResponse | None:
        # The hot path: one HGETALL on the shared pipelined connection, no redis-py.
        try:
            reply = await self._fast.execute(b"HGETALL", request.key, retry=True)
        except ResponseError as exc:
            if not str(exc).startswith("WRONGTYPE"):
                raise ComponentError(str(exc)) from exc
            try:
                return await self._plain_get(request.key)
            except redis_driver.UNAVAILABLE as exc2:
                raise redis_driver.unavailable(self._address, exc2) from exc2
        except redis_driver.UNAVAILABLE as exc:
            raise redis_driver.unavailable(self._address, exc) from exc
        fields = cast(list[bytes], reply)
        if not fields:
            return None
        data = version = None
        for i in range(0, len(fields), 2):
            name = fields[i]
            if name == b"data":
                data = fields[i + 1]
            elif name == b"version":
                version = fields[i + 1]
        if data is None or version is None:
            raise ComponentError(f"required hash field 'data' or 'version' was not found in key {request.key}")
        return state.GetResponse(data, version.decode())

    async def _run_script(self, sha: str, script: str, key: str, args: list[bytes | str | int]) -> None:
        """EVALSHA on the pipelined connection; EVAL when the server does not know the script yet."""
        try:
            await self._fast.execute(b"EVALSHA", sha, 1, key, *args)
        except NoScriptError:
            await self._fast.execute(b"EVAL", script, 1, key, *args)

    async def bulk_get(self, requests: Sequence[state.GetRequest], parallelism: int = 0) -> list[state.BulkGetItem]:
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for req in requests:
                    pipe.hgetall(req.key)
                replies = await pipe.execute(raise_on_error=False)
            items: list[state.BulkGetItem] = []
            for req, reply in zip(requests, replies, strict=True):
                if isinstance(reply, ResponseError):
                    if str(reply).startswith("WRONGTYPE"):
                        items.append(state.BulkGetItem(req.key, await self._plain_get(req.key)))
                    else:
                        items.append(state.BulkGetItem(req.key, None, str(reply)))
                    continue
                try:
                    items.append(state.BulkGetItem(req.key, self._response(req.key, reply)))
                except ComponentError as exc:
                    items.append(state.BulkGetItem(req.key, None, str(exc)))
            return items
        except redis_driver.UNAVAILABLE as exc:
            raise redis_driver.unavailable(self._address, exc) from exc

    # ---- writes ----
    @staticmethod
    def _expected(key: str, etag: str | None) -> str:
        """The scripts' expected version: "0" for none."""
        if not etag:
            return "0"
        version = state.parse_version(etag)
        if version == 0:
            # No key is ever at version 0 (HINCRBY counts from 1), and "0" would read as "none".
            raise ETagMismatchError(f"possible etag mismatch: no version of key {key} is {etag}")
        return str(version)

    def _set_args(self, request: state.SetRequest) -> list[bytes | str | int]:
        expected = self._expected(request.key, request.etag)
        ttl = state.ttl_seconds(request.metadata, self.max_ttl_seconds())
        if ttl is None:
            ttl = self._default_ttl
        first_write = "0" if request.concurrency == state.FIRST_WRITE else "1"
        return [expected, request.value, first_write, "" if ttl is None else str(ttl)]

    @classmethod
    def _delete_args(cls, request: state.DeleteRequest) -> list[bytes | str | int]:
        return [cls._expected(request.key, request.etag)]

    @staticmethod
    def _failure(exc: ResponseError) -> ComponentError:
        text = str(exc)
        if text.startswith(_MISMATCH):
            return ETagMismatchError(text)
        if text.startswith(_BAD_TTL):
            return InvalidArgumentError(text)
        return ComponentError(text)

    def _replicas_of(self, key: str) -> int:
        found = redis_driver.replicas_of(self.client, key)
        return self._replicas if found is None else found

    async def _write_and_wait(self, script: Any, key: str, args: list[bytes | str | int], replicas: int) -> None:
        """The script and a WAIT for `replicas` on one connection: WAIT counts the replicas that
        have what *its own connection* wrote."""

        async def on(node: aioredis.Redis) -> list[Any]:
            async with node.pipeline(transaction=False) as pipe:
                await script(keys=[key], args=args, client=pipe)
                pipe.wait(replicas, 1000)
                return await pipe.execute()

        _, acked = await redis_driver.on_one_node(self.client, [key], on, "a strongly consistent write")
        if int(acked) < replicas:
            # A replica left (or a failover took the master's place): count again, so later
            # writes do not wait a second each for a replica that is not there.
            log.warning("only %s of %d replicas acknowledged the write of %s", acked, replicas, key)
            await self._count_replicas()

    async def set(self, request: state.SetRequest) -> None:
        await self._write(self._set, SET_SCRIPT, request.key, self._set_args(request), request.consistency)

    async def delete(self, request: state.DeleteRequest) -> None:
        await self._write(self._delete, DELETE_SCRIPT, request.key, self._delete_args(request), request.consistency)

    async def _write(self, script: Any, source: str, key: str, args: list[bytes | str | int], consistency: str) -> None:
        try:
            replicas = self._replicas_of(key) if consistency == state.STRONG else 0
            if replicas > 0:
                await self._write_and_wait(script, key, args, replicas)
            else:
                await self._run_script(script.sha, source, key, args)
        except redis_driver.UNAVAILABLE as exc:
            raise redis_driver.unavailable(self._address, exc) from exc
        except ResponseError as exc:
            raise self._failure(exc) from exc

    async def _concurrently(self, calls: list[tuple[bool, str, list[bytes | str | int]]]) -> None:
        """Run the scripts at once (one round trip per node, not atomic, as upstream's bulk
        calls); raise the first failure."""
        results = await asyncio.gather(
            *(self._run_script(*(self._scripts[is_set]), key, args) for is_set, key, args in calls),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, redis_driver.UNAVAILABLE):
                raise redis_driver.unavailable(self._address, result) from result
        for result in results:
            if isinstance(result, ResponseError):
                raise self._failure(result) from result
            if isinstance(result, BaseException):
                raise result

    async def bulk_set(self, requests: Sequence[state.SetRequest]) -> None:
        await self._concurrently([(True, r.key, self._set_args(r)) for r in requests])

    async def bulk_delete(self, requests: Sequence[state.DeleteRequest]) -> None:
        await self._concurrently([(False, r.key, self._delete_args(r)) for r in requests])

    # ---- transactions ----
    @staticmethod
    def _check(
        operations: Sequence[state.Operation], known: dict[str, _Known], args: list[list[bytes | str | int]]
    ) -> None:
        """Replay the scripts' checks on the watched versions, so EXEC cannot half-apply."""
        for op, op_args in zip(operations, args, strict=True):
            known_state = known[op.key]
            expected = str(op_args[0]).encode()
            version = known_state.version
            if expected != b"0":
                # An etag: the stored version must be it (a missing key has none).
                allowed = version is not None and version == expected
            elif isinstance(op, state.SetRequest):
                allowed = not version or version == expected or not known_state.first_write
            else:
                allowed = True
            if isinstance(op, state.SetRequest):
                if not allowed:
                    raise ETagMismatchError(f"possible etag mismatch: failed to set key {op.key}")
                current = int(version) if version else 0
                known[op.key] = _Known(str(current + 1).encode(), known_state.first_write or op_args[2] == "0")
            else:
                if not allowed:
                    raise ETagMismatchError(f"possible etag mismatch: failed to delete {op.key}")
                known[op.key] = _Known(None, False)

    async def multi(self, operations: Sequence[state.Operation], metadata: dict[str, str]) -> None:
        if not operations:
            return
        args = [self._set_args(op) if isinstance(op, state.SetRequest) else self._delete_args(op) for op in operations]
        keys = list(dict.fromkeys(op.key for op in operations))

        async def on(node: aioredis.Redis) -> list[Any]:
            return await self._watched(node, operations, keys, args)

        try:
            replies = await redis_driver.on_one_node(self.client, keys, on, "a state transaction")
        except redis_driver.UNAVAILABLE as exc:
            raise redis_driver.unavailable(self._address, exc) from exc
        except ResponseError as exc:
            raise self._failure(exc) from exc
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise self._failure(reply)

    async def _watched(
        self,
        node: aioredis.Redis,
        operations: Sequence[state.Operation],
        keys: list[str],
        args: list[list[bytes | str | int]],
    ) -> list[Any]:
        """WATCH the keys, check every etag, then MULTI/EXEC the scripts; again while another
        writer touches a key in between."""
        async with node.pipeline(transaction=True) as pipe:
            for _ in range(_MAX_WATCH_RETRIES):
                await pipe.watch(*keys)
                known: dict[str, _Known] = {}
                for key in keys:
                    try:
                        version, flag = await pipe.hmget(key, ["version", "first-write"])
                    except ResponseError as exc:
                        if isinstance(exc, redis_driver.UNAVAILABLE) or not str(exc).startswith("WRONGTYPE"):
                            raise
                        version, flag = None, None  # a plain value: the set script replaces it
                    known[key] = _Known(cast(bytes | None, version), flag is not None)
                self._check(operations, known, args)
                pipe.multi()  # type: ignore[no-untyped-call]
                for op, op_args in zip(operations, args, strict=True):
                    script = SET_SCRIPT if isinstance(op, state.SetRequest) else DELETE_SCRIPT
                    pipe.eval(script, 1, op.key, *op_args)
                try:
                    return await pipe.execute(raise_on_error=False)
                except WatchError:
                    continue  # another writer touched a key: check again
        raise ComponentError("transaction aborted: its keys kept changing under concurrent writers")

    async def ping(self) -> None:
        try:
            await self.client.ping()
        except redis_driver.UNAVAILABLE as exc:
            raise redis_driver.unavailable(self._address, exc) from exc

    async def close(self) -> None:
        await self._fast.close()
        if self._client is not None:
            try:
                await self._client.aclose()
            except Exception as exc:  # closing must not raise
                log.warning("closing redis client failed: %s", exc)
            self._client = None
