"""Redis sequencer: INCRBY on the stored key (upstream's layout: a plain integer string).

Each key is one counter on one server (on a cluster, the master of its slot), so ids stay
unique and increasing across sidecars; a failover to a replica that missed the last INCRBYs
would hand those ids out again (docs/scaling.md).
"""

from __future__ import annotations

from redis.exceptions import ResponseError

from layotto.components._drivers import redis as redis_driver
from layotto.components.base import ComponentContext, Metadata
from layotto.components.sequencer.base import RangeSequencer, check_count
from layotto.errors import ComponentError

# Raise the counter to ARGV[1] unless it is already there; atomic, so concurrent sidecars
# starting with the same biggerThan never lower a counter another one advanced.
_RAISE_TO = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current == nil then
  return redis.error_reply('sequencer key ' .. KEYS[1] .. ' does not hold an integer')
end
if current < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return 0
"""


class RedisSequencer(RangeSequencer):
    metadata_keys = (*redis_driver.METADATA_KEYS, "segmentCacheEnable", "segmentStep", "keyPrefix")
    segment_cache_default = True

    _client: redis_driver.Client
    _address: str

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        settings = redis_driver.RedisSettings.from_metadata(metadata)
        self._client = redis_driver.connect(settings, autopipeline=True)
        self._address = settings.address
        await self.ping()
        await super().init(metadata, context)

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except redis_driver.UNAVAILABLE as exc:
            raise redis_driver.unavailable(self._address, exc) from exc

    async def reserve(self, key: str, count: int) -> int:
        check_count(count)
        try:
            last = int(await self._client.incrby(key, count))
        except redis_driver.UNAVAILABLE as exc:
            raise redis_driver.unavailable(self._address, exc) from exc
        except ResponseError as exc:
            raise ComponentError(f"redis sequencer cannot increment {key}: {exc}") from exc
        return last - count + 1

    async def raise_to(self, key: str, floor: int) -> None:
        try:
            await self._client.eval(_RAISE_TO, 1, key, floor)
        except redis_driver.UNAVAILABLE as exc:
            raise redis_driver.unavailable(self._address, exc) from exc
        except ResponseError as exc:
            raise ComponentError(str(exc)) from exc

    async def close(self) -> None:
        await super().close()
        await self._client.aclose()
