"""etcd sequencer: a counter per key at `keyPrefixPath`+key, advanced by compare-and-swap.

Each reservation reads the counter and writes counter+n in a transaction guarded by the
key's mod_revision, so concurrent sidecars never take the same range; a lost race re-reads
the value the failed transaction returned and tries again.

A key written by upstream Layotto (id = key version, value not a number) continues from
its version, so ids keep increasing after a migration.

With several endpoints each request goes to a member that answers (`_drivers/etcd.Members`),
so a dying member or leader costs a retry, not the sequence. A transaction sent again after
its member failed may have been applied the first time: its compare then fails, the counter
is read again and a new range taken. The lost range is a gap; no id is handed out twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aetcd

from layotto.components._drivers import etcd
from layotto.components.base import ComponentContext, Metadata
from layotto.components.sequencer.base import CasSequencer
from layotto.errors import ComponentError, ConfigError

T = TypeVar("T")


def _counter(kv: aetcd.KeyValue | None) -> int:
    if kv is None:
        return 0
    try:
        return int(kv.value)
    except ValueError:
        return int(kv.version)


class EtcdSequencer(CasSequencer):
    metadata_keys = (
        "endpoints",
        "keyPrefixPath",
        "dialTimeout",
        "username",
        "password",
        *etcd.TLS_METADATA_KEYS,
        "segmentCacheEnable",
        "segmentStep",
        "keyPrefix",
    )
    _members: etcd.Members | None = None

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        where = f"{metadata.where}.metadata.endpoints"
        endpoints = etcd.parse_endpoints(metadata.get_str("endpoints"), where)
        if not endpoints:
            raise ConfigError("required metadata 'endpoints' is missing", where)
        self._prefix = metadata.get_str("keyPrefixPath", "/layotto/")
        self._members = etcd.Members(endpoints, metadata, metadata.get_duration("dialTimeout", 5.0))
        await self.ping()
        await super().init(metadata, context)

    async def _call(self, op: Callable[[aetcd.Client], Awaitable[T]]) -> T:
        assert self._members is not None, "init() was not called"
        return await self._members.call(op)

    async def ping(self) -> None:
        await self._call(lambda c: c.status())

    async def _update(self, key: str, change: int, *, at_least: bool) -> int:
        """CAS the counter to counter+change (or max(counter, change)); returns the new value."""
        path = (self._prefix + key).encode()

        def cas(current: aetcd.KeyValue | None, new: int) -> Callable[[aetcd.Client], Awaitable[Any]]:
            async def txn(client: aetcd.Client) -> Any:
                guard = (
                    client.transactions.create(path) == 0
                    if current is None
                    else client.transactions.mod(path) == current.mod_revision
                )
                return await client.transaction(
                    compare=[guard],
                    success=[client.transactions.put(path, str(new).encode())],
                    failure=[client.transactions.get(path)],
                )

            return txn

        try:
            current = await self._call(lambda c: c.get(path))
            for attempt in range(self.max_attempts):
                value = _counter(current)
                new = max(value, change) if at_least else value + change
                if at_least and new == value:
                    return value
                ok, responses = await self._call(cas(current, new))
                if ok:
                    return new
                found = responses[0] if responses else []
                current = found[0][1] if found else None
                await self.lost_race(attempt)
        except aetcd.ClientError as exc:
            raise ComponentError(f"etcd sequencer failed on {key}: {exc}") from exc
        raise ComponentError(f"etcd sequencer: too much contention on {key}")

    async def close(self) -> None:
        await super().close()
        if self._members is not None:
            await self._members.close()
