"""Endpoint lists of the etcd and ZooKeeper drivers."""

from __future__ import annotations

import pytest

from layotto.components._drivers import etcd, zookeeper
from layotto.components.base import Metadata
from layotto.errors import ConfigError

WHERE = "lock.etcd.metadata.endpoints"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("127.0.0.1:2379", [("127.0.0.1", 2379)]),
        ("http://a:1;https://b:2, c", [("a", 1), ("b", 2), ("c", 2379)]),
        ("[::1]:2380;", [("::1", 2380)]),
        (["a:1", "b"], [("a", 1), ("b", 2379)]),
        ("", []),
    ],
)
def test_etcd_endpoints(raw: str | list[str], expected: list[tuple[str, int]]) -> None:
    assert etcd.parse_endpoints(raw, WHERE) == expected


def test_etcd_bad_port_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        etcd.parse_endpoints("a:1;b:x", WHERE)
    assert info.value.path == WHERE
    assert "bad etcd address 'b:x'" in str(info.value)


def test_etcd_address_for_messages() -> None:
    assert etcd.address([("a", 1), ("b", 2)]) == "a:1;b:2"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("127.0.0.1:2181", "127.0.0.1:2181"), (" a:1 ; b:2,c:3 ;", "a:1,b:2,c:3"), ("", "")],
)
def test_zookeeper_hosts(raw: str, expected: str) -> None:
    assert zookeeper.hosts(Metadata({"zookeeperHosts": raw})) == expected
