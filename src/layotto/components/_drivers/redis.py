"""Redis through redis-py, for the Redis component of every block: one settings object read from
the component metadata, the clients made from it, and what counts as an outage.

Three deployments, with Dapr's metadata (components-contrib `common/component/redis`):
- one server (`redisType: node`, the default): `redisHost` is host:port;
- a Redis Cluster (`redisType: cluster`): `redisHost` lists seed nodes, comma-separated; the
  client learns the slot table from them and follows MOVED/ASK;
- a master watched by Sentinel (`failover: true`, `sentinelMasterName`): `redisHost` lists the
  sentinels; every new connection asks them where the master is, so a failover is followed
  without a restart. While they elect a new one, calls fail fast as unavailable.

Connection pooling, reconnects and timeouts live in the clients made here, so a component only
issues commands and maps UNAVAILABLE to BackendUnavailableError (see `unavailable`). What
differs on a cluster is decided here too: `on_one_node` runs a multi-key transaction on the
node of its keys' one slot (or refuses keys in several), `hash_tagged` keeps a component's
related keys in one slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as errors
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Re-exported: the components use these types through this module only.
from layotto.components._drivers.redis_autopipe import AutoPipelineRedis as AutoPipelineRedis
from layotto.components._drivers.redis_autopipe import ClusterPipes
from layotto.components._drivers.redis_autopipe import Pipelined as Pipelined
from layotto.components._drivers.redis_autopipe import RoutedCluster as RoutedCluster
from layotto.components._drivers.redis_autopipe import SharedConnection as SharedConnection
from layotto.components.base import Metadata
from layotto.config import tls
from layotto.config.tls import PemFile
from layotto.errors import BackendUnavailableError, ConfigError, InvalidArgumentError

T = TypeVar("T")

#: Errors that mean "the server is not there right now". On a cluster that includes a slot
#: without a master (CLUSTERDOWN, mid-failover); behind Sentinel, no master known (a
#: ConnectionError) or MASTERDOWN from a replica that lost it.
UNAVAILABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
    errors.ClusterDownError,
    errors.SlotNotCoveredError,
)

#: What a component gets from `connect`: a client of one server (or of Sentinel's master), or
#: of a cluster. They answer the same commands.
Client = aioredis.Redis | RoutedCluster

NODE, CLUSTER = "node", "cluster"

#: Redirections a transaction follows (a slot moving while it runs) before it gives up.
_MOVES = 16


def split_host(address: str, default_port: int = 6379) -> tuple[str, int]:
    host, sep, port = address.strip().rpartition(":")
    if not sep:
        return address.strip(), default_port
    return host.strip("[]"), int(port)


def split_hosts(address: str) -> list[tuple[str, int]]:
    """`redisHost` as a list: one entry, or the comma-separated seeds / sentinels."""
    return [split_host(part) for part in address.split(",") if part.strip()]


#: The keys `RedisSettings.from_metadata` reads besides `redisHost`, for the `metadata_keys` of
#: the components built on it (a component with its own host key lists that one instead).
CLIENT_METADATA_KEYS: tuple[str, ...] = (
    "redisType",
    "redisDB",
    "db",
    "redisUsername",
    "redisPassword",
    "enableTLS",
    "insecureSkipTLSVerify",
    "clientCert",
    "clientKey",
    "caCert",
    "redisMaxRetries",
    "maxRetries",
    "redisMaxRetryInterval",
    "maxRetryBackoff",
    "dialTimeout",
    "readTimeout",
    "poolSize",
    "failover",
    "sentinelMasterName",
    "sentinelUsername",
    "sentinelPassword",
)
METADATA_KEYS: tuple[str, ...] = ("redisHost", *CLIENT_METADATA_KEYS)
#: The certificate keys, with what each holds.
_TLS_KEYS = (("clientCert", "certificate"), ("clientKey", "private key"), ("caCert", "CA certificates"))


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Where and how to reach Redis, from the metadata keys of upstream's Redis components:
    redisHost, redisType, failover, sentinelMasterName, sentinelUsername, sentinelPassword,
    redisUsername, redisPassword, redisDB (or db), enableTLS, insecureSkipTLSVerify, clientCert
    and clientKey (Dapr's: a client certificate), caCert (this runtime's: the CA the server's
    certificate chains to, instead of the system's), redisMaxRetries (or maxRetries),
    redisMaxRetryInterval (or maxRetryBackoff), dialTimeout, readTimeout, poolSize."""

    #: `redisHost` as configured, for messages.
    address: str
    #: The first (or only) entry of `redisHost`.
    host: str
    port: int
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    #: Retries of a command whose connection failed (never of one whose reply timed out).
    max_retries: int = 3
    max_retry_backoff: float = 0.512
    dial_timeout: float = 5.0
    read_timeout: float = 5.0
    pool_size: int = 64
    #: NODE or CLUSTER.
    redis_type: str = NODE
    #: The master is found through the sentinels listed in `redisHost`.
    failover: bool = False
    sentinel_master_name: str = ""
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    #: TLS without checking the server's certificate (tests, self-signed servers).
    insecure_skip_verify: bool = False
    #: The CA bundle (PEM text) the server's certificate must chain to; None: the system's.
    ca_data: str | None = None
    #: The client certificate and key files (redis-py loads them from files only); PEM text
    #: given in the metadata is in `pem_files`, which hold it for as long as the settings live.
    cert_file: str | None = None
    key_file: str | None = None
    pem_files: tuple[PemFile, ...] = ()

    @classmethod
    def from_metadata(cls, metadata: Metadata, *, address: str | None = None) -> RedisSettings:
        """The settings in `metadata`; `address` stands for its `redisHost` when given (a
        component with a host list of its own, or another key for it)."""
        if address is None:
            address = metadata.get_str("redisHost")
        if not address or not split_hosts(address):
            raise ConfigError("redis store error: missing host address", f"{metadata.where}.metadata.redisHost")
        host, port = split_hosts(address)[0]
        # Read in a fixed order: of several bad keys, the first one here is the one reported.
        retries_key = "redisMaxRetries" if "redisMaxRetries" in metadata else "maxRetries"
        backoff_key = "redisMaxRetryInterval" if "redisMaxRetryInterval" in metadata else "maxRetryBackoff"
        settings = cls(
            address=address,
            host=host,
            port=port,
            # Upstream: -1 disables retries.
            max_retries=max(0, metadata.get_int(retries_key, 3)),
            max_retry_backoff=metadata.get_duration(backoff_key, 0.512),
            db=metadata.get_int("redisDB", metadata.get_int("db", 0)),
            tls=metadata.get_bool("enableTLS", False),
            username=metadata.get_str("redisUsername") or None,
            password=metadata.get_str("redisPassword") or None,
            dial_timeout=metadata.get_duration("dialTimeout", 5.0),
            read_timeout=metadata.get_duration("readTimeout", 5.0),
            pool_size=metadata.get_int("poolSize", 0) or 64,
            redis_type=(metadata.get_str("redisType") or NODE).lower(),
            failover=metadata.get_bool("failover", False),
            sentinel_master_name=metadata.get_str("sentinelMasterName"),
            sentinel_username=metadata.get_str("sentinelUsername") or None,
            sentinel_password=metadata.get_str("sentinelPassword") or None,
            insecure_skip_verify=metadata.get_bool("insecureSkipTLSVerify", False),
        )
        settings._check(metadata)
        return settings._with_certificates(metadata)

    def _with_certificates(self, metadata: Metadata) -> RedisSettings:
        """caCert, clientCert and clientKey: PEM text (as Dapr takes them) or file paths, read
        and checked here (a ConfigError naming the key)."""
        key = f"{metadata.where}.metadata"
        sources = {name: tls.pem(metadata.get_str(name), what, f"{key}.{name}") for name, what in _TLS_KEYS}
        given = [name for name, source in sources.items() if source is not None]
        if not given:
            return self
        if not self.tls:
            raise ConfigError(f"{given[0]} is set but enableTLS is not: set enableTLS to true", f"{key}.{given[0]}")
        material = tls.load_material(sources["clientCert"], sources["clientKey"], sources["caCert"])
        files: list[PemFile] = []

        def as_file(source: tls.Pem | None, data: bytes | None) -> str | None:
            if source is None or data is None:
                return None
            if not source.inline:
                return source.value
            files.append(PemFile(data))
            return files[-1].path

        return dataclasses.replace(
            self,
            ca_data=material.ca.decode() if material.ca else None,
            cert_file=as_file(sources["clientCert"], material.chain),
            key_file=as_file(sources["clientKey"], material.key),
            pem_files=tuple(files),
        )

    def _check(self, metadata: Metadata) -> None:
        key = f"{metadata.where}.metadata"
        if self.redis_type not in (NODE, CLUSTER):
            raise ConfigError(f"redisType must be 'node' or 'cluster', got {self.redis_type!r}", f"{key}.redisType")
        if self.failover and not self.sentinel_master_name:
            raise ConfigError("failover needs sentinelMasterName: the master the sentinels watch", key)
        if self.failover and self.cluster:
            raise ConfigError(
                "failover (Sentinel) and redisType 'cluster' exclude each other: a Redis Cluster fails over by itself",
                f"{key}.failover",
            )
        if self.cluster and self.db:
            raise ConfigError("a Redis Cluster has only database 0; remove redisDB", f"{key}.redisDB")
        if len(self.nodes) > 1 and not (self.cluster or self.failover):
            raise ConfigError(
                f"redisHost lists {len(self.nodes)} servers: set redisType 'cluster' (seed nodes) or failover "
                "'true' (sentinels)",
                f"{key}.redisHost",
            )

    @property
    def nodes(self) -> list[tuple[str, int]]:
        """Every entry of `redisHost`: the server, the cluster's seed nodes or the sentinels."""
        return split_hosts(self.address)

    @property
    def cluster(self) -> bool:
        return self.redis_type == CLUSTER

    def at(self, host: str, port: int) -> RedisSettings:
        """The same settings for one server (a cluster node, the current master)."""
        return dataclasses.replace(self, address=f"{host}:{port}", host=host, port=port)

    def ssl_context(self) -> ssl.SSLContext | None:
        # By default the checks redis-py's SSLConnection makes: a trusted certificate for the host.
        if not self.tls:
            return None
        context = ssl.create_default_context(cadata=self.ca_data)
        if self.insecure_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file and self.key_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def _connection_kwargs(self) -> dict[str, Any]:
        """What every redis-py connection made from these settings is given."""
        kwargs: dict[str, Any] = {
            "username": self.username,
            "password": self.password,
            "socket_connect_timeout": self.dial_timeout,
            "socket_timeout": self.read_timeout,
            "health_check_interval": 30,
        }
        if self.tls:
            kwargs["ssl_cert_reqs"] = "none" if self.insecure_skip_verify else "required"
            kwargs["ssl_check_hostname"] = not self.insecure_skip_verify
            kwargs["ssl_ca_data"] = self.ca_data
            kwargs["ssl_certfile"] = self.cert_file
            kwargs["ssl_keyfile"] = self.key_file
        return kwargs

    def _retry(self) -> Retry:
        # Retry a command only when its connection failed, never after a read timed out: the
        # command may have run, and retrying a hung server multiplies the wait (4 x readTimeout).
        return Retry(
            ExponentialBackoff(cap=self.max_retry_backoff, base=0.008),
            self.max_retries,
            supported_errors=(RedisConnectionError,),
        )


class _SentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """Sentinel's pool (each new connection asks the sentinels for the master), waiting for a
    free connection under a burst as the one-server pool does; closing it for good closes the
    connections to the sentinels too."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        if inuse_connections:  # a full close, not the idle sweep after a failover
            await self.sentinel_manager.aclose()


def _pool_kwargs(settings: RedisSettings, autopipeline: bool) -> dict[str, Any]:
    return {
        **settings._connection_kwargs(),
        "db": settings.db,
        "retry": settings._retry(),
        "retry_on_error": [],
        "max_connections": settings.pool_size,
        "timeout": settings.dial_timeout,
        # The shared connection of an autopipelined client speaks RESP2; its pool must too (None:
        # redis-py's default).
        "protocol": 2 if autopipeline else None,
    }


def _server_pool(settings: RedisSettings, autopipeline: bool = False) -> aioredis.BlockingConnectionPool:
    # A blocking pool: when every connection is busy a command waits (up to dialTimeout) for
    # one instead of failing with "Too many connections" under a burst.
    return aioredis.BlockingConnectionPool(
        host=settings.host,
        port=settings.port,
        connection_class=aioredis.SSLConnection if settings.tls else aioredis.Connection,
        **_pool_kwargs(settings, autopipeline),
    )


def _sentinel_pool(settings: RedisSettings, autopipeline: bool) -> _SentinelPool:
    sentinel_kwargs: dict[str, Any] = {
        **settings._connection_kwargs(),
        "username": settings.sentinel_username,
        "password": settings.sentinel_password,
        "ssl": settings.tls,
    }
    sentinels = Sentinel(settings.nodes, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call, unused-ignore]
    return _SentinelPool(  # type: ignore[no-untyped-call]
        settings.sentinel_master_name, sentinels, ssl=settings.tls, **_pool_kwargs(settings, autopipeline)
    )


def _cluster(settings: RedisSettings, autopipeline: bool) -> RoutedCluster:
    return RoutedCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in settings.nodes],
        node_client=lambda host, port: aioredis.Redis.from_pool(_server_pool(settings.at(host, port))),
        shared=(lambda host, port: shared_connection(settings.at(host, port))) if autopipeline else None,
        max_connections=settings.pool_size,
        retry=settings._retry(),
        protocol=2 if autopipeline else None,
        ssl=settings.tls,
        **settings._connection_kwargs(),
    )


def connect(settings: RedisSettings, *, autopipeline: bool = False) -> Client:
    """A pooled client of the deployment `settings` describe (it connects on first use).

    `autopipeline`: commands issued concurrently share one connection (per cluster node) and
    one round trip (see redis_autopipe); same methods and results, a fraction of the CPU per
    command.
    """
    if settings.cluster:
        return _cluster(settings, autopipeline)
    if settings.failover:
        sentinels = _sentinel_pool(settings, autopipeline)
        if autopipeline:
            return AutoPipelineRedis(sentinels, shared_connection(settings, locate=sentinels.get_master_address))
        return aioredis.Redis.from_pool(sentinels)
    pool = _server_pool(settings, autopipeline)
    if autopipeline:
        return AutoPipelineRedis(pool, shared_connection(settings))
    return aioredis.Redis.from_pool(pool)


def shared_connection(
    settings: RedisSettings, *, locate: Callable[[], Awaitable[tuple[str, int]]] | None = None
) -> SharedConnection:
    """The raw pipelined connection to one server (opened on first use), for hot paths that
    send commands and read RESP2 replies themselves; `locate` finds the server anew before
    each connection (Sentinel's master)."""
    return SharedConnection(
        settings.host,
        settings.port,
        db=settings.db,
        username=settings.username,
        password=settings.password,
        ssl_context=settings.ssl_context(),
        connect_timeout=settings.dial_timeout,
        read_timeout=settings.read_timeout,
        locate=locate,
    )


def pipelined(client: Client, settings: RedisSettings) -> Pipelined:
    """Raw pipelined connections to the deployment `client` reaches (a cluster: one per node,
    routed by key; Sentinel: to the current master), apart from `client`'s own."""
    if isinstance(client, RoutedCluster):
        return ClusterPipes(client, lambda host, port: shared_connection(settings.at(host, port)))
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        return shared_connection(settings, locate=pool.get_master_address)
    return shared_connection(settings)


def hash_tagged(settings: RedisSettings, name: str) -> str:
    """`name` as the common part of keys a component must keep in one slot (it names them
    `<result>...`): on a cluster, inside {braces} unless it has a hash tag already; elsewhere
    unchanged, so the key layout of one server stays as it is."""
    if not settings.cluster or ("{" in name and "}" in name.split("{", 1)[1]):
        return name
    return "{" + name + "}"


def check_one_slot(client: Client, keys: Sequence[str], what: str) -> None:
    """Refuse `keys` of one atomic operation that a cluster keeps in different slots: Redis runs
    MULTI/EXEC and scripts within one slot only."""
    if not isinstance(client, RoutedCluster):
        return
    slots = {key: client.keyslot(key) for key in keys}
    if len(set(slots.values())) > 1:
        listed = ", ".join(f"{key!r} (slot {slot})" for key, slot in slots.items())
        raise InvalidArgumentError(
            f"{what} on a Redis Cluster must keep its keys in one hash slot, but {listed} are in "
            f"{len(set(slots.values()))} slots; give the keys a common {{hash tag}}"
        )


async def on_one_node(
    client: Client, keys: Sequence[str], work: Callable[[aioredis.Redis], Awaitable[T]], what: str
) -> T:
    """`work` on a client whose connections reach the server holding all of `keys`, for what
    must run on one connection (WATCH/MULTI/EXEC, a write and its WAIT): `client` itself, or on
    a cluster a client of the node serving their one slot (keys in several are refused with
    InvalidArgumentError), run again on the new owner when the slot moved meanwhile."""
    if not isinstance(client, RoutedCluster):
        return await work(client)
    check_one_slot(client, keys, what)
    await client.initialize()
    for _ in range(_MOVES):
        try:
            return await work(client.node_client(*client.slot_owner(keys)))
        except errors.MovedError as exc:
            await client.nodes_manager.move_slot(exc)
        except errors.AskError:
            # The slot is migrating: a multi-key operation must wait until it has moved.
            await client.nodes_manager.initialize()
    raise RedisConnectionError(f"the slot of {keys[0]!r} kept moving")


async def pubsub(client: Client) -> Any:
    """A PubSub on `client`. A cluster's listens on one node (the one of the first channel's
    slot): a PUBLISH on any node reaches the subscribers on all of them."""
    if isinstance(client, RoutedCluster):
        await client.initialize()  # its PubSub picks the node from the slot table
    return client.pubsub()


async def relearn(client: Client) -> None:
    """After a connection failure: on a cluster, reload the slot table, so what is sent next
    (a subscription too) goes to the node in charge now. Nothing to do elsewhere: Sentinel's
    pool asks where the master is for every new connection."""
    if isinstance(client, RoutedCluster):
        with contextlib.suppress(Exception):  # still down: the next failure tries again
            await client.nodes_manager.initialize()


def replicas_of(client: Client, key: str) -> int | None:
    """How many replicas the node holding `key` has, from a cluster's slot table; None when
    `client` is not a cluster's (ask the server: INFO replication)."""
    if not isinstance(client, RoutedCluster):
        return None
    nodes = client.nodes_manager.slots_cache.get(client.keyslot(key)) or []
    return max(0, len(nodes) - 1)


@dataclass(frozen=True)
class StreamRedelivery:
    """When a stream entry left pending (a failed handler, a consumer that died) is handled
    again: every `interval` seconds a reader claims (XAUTOCLAIM) the group's entries idle for
    more than `idle` seconds. Dapr's keys and defaults (`redeliverInterval` 60 s,
    `processingTimeout` 15 s); either 0 turns redelivery off."""

    interval: float
    idle: float

    @classmethod
    def from_metadata(cls, metadata: Metadata) -> StreamRedelivery:
        return cls(metadata.get_duration("redeliverInterval", 60.0), metadata.get_duration("processingTimeout", 15.0))

    @property
    def enabled(self) -> bool:
        return self.interval > 0 and self.idle > 0

    @property
    def idle_ms(self) -> int:
        return max(1, int(self.idle * 1000))


def stop_if_cancelled() -> None:
    """Raise CancelledError when the current task was asked to stop. For the loop of a task
    that is cancelled to stop it: redis-py sends with asyncio.wait_for, which in Python 3.11
    loses a cancellation that arrives as the send completes, and the loop would go on."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def unavailable(address: str, exc: BaseException) -> BackendUnavailableError:
    return BackendUnavailableError(f"redis at {address} is unavailable: {exc}")


async def ping(client: Any, address: str) -> None:
    """PING `client` (a Redis or RedisCluster); an unreachable server is BackendUnavailableError."""
    try:
        await client.ping()
    except UNAVAILABLE as exc:
        raise unavailable(address, exc) from exc
