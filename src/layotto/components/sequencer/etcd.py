"""etcd sequencer: a counter per key at `keyPrefixPath`+key, advanced by compare-and-swap.

Each reservation reads the counter and writes counter+n in a transaction guarded by the
key's mod_revision, so concurrent sidecars never take the same range; a lost race re-reads
the value the failed transaction returned and tries again.

A key written by upstream Layotto (id = key version, value not a number) continues from
its version, so ids keep increasing after a migration.
"""

from __future__ import annotations

import asyncio
import random

import aetcd

from layotto.components._drivers import etcd
from layotto.components.base import ComponentContext, Metadata
from layotto.components.sequencer.base import CasSequencer
from layotto.errors import BackendUnavailableError, ComponentError, ConfigError

_MAX_ATTEMPTS = 1000


def _counter(kv: aetcd.KeyValue | None) -> int:
    if kv is None:
        return 0
    try:
        return int(kv.value)
    except ValueError:
        return int(kv.version)


class EtcdSequencer(CasSequencer):
    _client: aetcd.Client | None = None

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        where = f"{metadata.where}.metadata.endpoints"
        endpoints = etcd.parse_endpoints(metadata.get_str("endpoints"), where)
        if not endpoints:
            raise ConfigError("required metadata 'endpoints' is missing", where)
        self._endpoint = etcd.address(endpoints[:1])
        self._prefix = metadata.get_str("keyPrefixPath", "/layotto/")
        self._client = etcd.connect(endpoints[0], metadata, metadata.get_duration("dialTimeout", 5.0))
        await self.ping()
        await super().init(metadata, context)

    def _unavailable(self, exc: BaseException) -> BackendUnavailableError:
        return etcd.unavailable(self._endpoint, exc)

    async def ping(self) -> None:
        assert self._client is not None
        try:
            await self._client.status()
        except etcd.UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc

    async def _update(self, key: str, change: int, *, at_least: bool) -> int:
        """CAS the counter to counter+change (or max(counter, change)); returns the new value."""
        assert self._client is not None
        client = self._client
        path = (self._prefix + key).encode()
        try:
            current = await client.get(path)
            for attempt in range(_MAX_ATTEMPTS):
                value = _counter(current)
                new = max(value, change) if at_least else value + change
                if at_least and new == value:
                    return value
                guard = (
                    client.transactions.create(path) == 0
                    if current is None
                    else client.transactions.mod(path) == current.mod_revision
                )
                ok, responses = await client.transaction(
                    compare=[guard],
                    success=[client.transactions.put(path, str(new).encode())],
                    failure=[client.transactions.get(path)],
                )
                if ok:
                    return new
                found = responses[0] if responses else []
                current = found[0][1] if found else None
                if attempt >= 3:
                    # Heavy contention: spread the retries out a little.
                    await asyncio.sleep(random.uniform(0, 0.002 * min(attempt, 20)))
        except etcd.UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
        except aetcd.ClientError as exc:
            raise ComponentError(f"etcd sequencer failed on {key}: {exc}") from exc
        raise ComponentError(f"etcd sequencer: too much contention on {key}")

    async def close(self) -> None:
        await super().close()
        if self._client is not None:
            await self._client.close()
