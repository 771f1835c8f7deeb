"""The dashboard's data: which config values are masked, and rates from the /metrics counters."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter

from layotto.actuator.dashboard import MASK, RateHistory, delivery_counts, effective_config, is_secret_key, totals
from layotto.config.model import ComponentSpec, RuntimeConfig


@pytest.mark.parametrize(
    "key",
    [
        "redisPassword",
        "password",
        "PASSWORD",
        "apiToken",
        "auth_token",
        "accessKey",
        "accessKeySecret",
        "secretKey",
        "client_secret",
        "encryptionKey",
        "key",
        "credentials",
        "sasToken",
        "Authorization",
        "api-key",
        "redispassword",
        "privateKey",
    ],
)
def test_secret_looking_keys_are_masked(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "redisHost",
        "keyPrefix",
        "accessKeyID",
        "secretStore",
        "tokenFile",
        "passwordEnv",
        "tlsKeyFile",
        "maxRetries",
        "consumerID",
        "region",
        "databasePath",
        "",
    ],
)
def test_other_keys_are_shown(key: str) -> None:
    assert not is_secret_key(key)


def test_the_effective_config_masks_secrets_at_any_depth_and_what_secret_refs_inject() -> None:
    spec = ComponentSpec(
        block="state",
        name="orders",
        type="redis",
        metadata={
            "redisHost": "127.0.0.1:6379",
            "redisPassword": "hunter2",
            "emptyPassword": "",
            "connectionString": "host=db user=app password=s3cret port=5432",
            "dsn": "app:s3cret@tcp(db:3306)/orders",
            "url": "redis://:s3cret@db:6379/0",
            "basic_config": {"region": "eu", "accessKeySecret": "s3cret"},
            "endpoints": [{"endpoint": "minio:9000", "accessKeySecret": "s3cret"}],
        },
        extras={"secret_ref": [{"store_name": "vault", "key": "db", "sub_key": "password", "inject_as": "plain"}]},
    )
    cfg = RuntimeConfig(components=[spec], api_token="tok", tracing={"otlp": {"headers": {"api-key": "k"}}})
    shown = effective_config(cfg)
    metadata = shown["components"][0]["metadata"]
    assert metadata["redisHost"] == "127.0.0.1:6379"
    assert metadata["redisPassword"] == MASK
    assert metadata["emptyPassword"] == ""  # nothing to hide: it shows that none is set
    assert metadata["connectionString"] == f"host=db user=app password={MASK} port=5432"
    assert metadata["dsn"] == f"app:{MASK}@tcp(db:3306)/orders"
    assert metadata["url"] == f"redis://:{MASK}@db:6379/0"
    assert metadata["basic_config"] == {"region": "eu", "accessKeySecret": MASK}
    assert metadata["endpoints"] == [{"endpoint": "minio:9000", "accessKeySecret": MASK}]
    assert metadata["plain"] == MASK  # copied in from a secret store at start: masked whatever its key
    assert shown["components"][0]["secret_ref"][0]["key"] == "db"  # which secret is no secret
    assert shown["api_token"] == MASK
    assert shown["tracing"] == {"otlp": {"headers": {"api-key": MASK}}}
    assert "s3cret" not in repr(shown) and "hunter2" not in repr(shown)


def _families(registry: CollectorRegistry) -> tuple[Counter, Counter]:
    handled = Counter(
        "layotto_grpc_server_handled_total",
        "",
        ["grpc_service", "grpc_method", "grpc_type", "grpc_code"],
        registry=registry,
    )
    events = Counter("layotto_pubsub_events_total", "", ["pubsub", "topic", "outcome"], registry=registry)
    return handled, events


def test_totals_and_delivery_counts_come_from_the_metrics_families() -> None:
    registry = CollectorRegistry()
    handled, events = _families(registry)
    runtime, dapr = "spec.proto.runtime.v1.Runtime", "dapr.proto.runtime.v1.Dapr"
    handled.labels(runtime, "SaveState", "unary", "OK").inc(5)
    handled.labels(runtime, "GetState", "unary", "NOT_FOUND").inc(2)
    handled.labels(runtime, "InvokeService", "unary", "OK").inc(3)
    handled.labels(dapr, "InvokeService", "unary", "UNAVAILABLE").inc(1)
    events.labels("mem", "orders", "delivered").inc(4)
    events.labels("mem", "orders", "retried").inc(2)
    events.labels("mem", "orders", "nacked").inc(1)
    events.labels("mem", "audit", "dropped").inc(1)
    assert totals(registry) == {
        "api": 11,
        "api_errors": 3,
        "invocations": 4,
        "invocation_errors": 1,
        "delivered": 4,
        "undelivered": 2,  # nacked and dropped; the retries are attempts of those
    }
    counts = delivery_counts(registry)
    assert counts[("mem", "orders")] == {
        "delivered": 4,
        "retried": 2,
        "dropped": 0,
        "expired": 0,
        "dead_lettered": 0,
        "nacked": 1,
    }
    assert counts[("mem", "audit")]["dropped"] == 1


def test_rates_are_differences_per_second_in_a_ring_buffer() -> None:
    history = RateHistory(size=3)
    assert history.rates() == ([], {name: [] for name in totals(CollectorRegistry())})
    for second, api in enumerate([0, 10, 30, 30, 70]):
        history.add(1000.0 + 2 * second, 2.0 * second, {"api": api})
    times, series = history.rates()
    # Five samples, three rates kept: the oldest interval fell out of the ring.
    assert (history.since, times) == (1002.0, [1004.0, 1006.0, 1008.0])
    assert series["api"] == [10.0, 0.0, 20.0]
    assert series["invocations"] == [0.0, 0.0, 0.0]
    history.add(1010.0, 10.0, {"api": 5})  # a registry that started anew is no negative rate
    assert history.rates()[1]["api"][-1] == 0.0
