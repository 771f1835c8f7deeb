"""Real backing services. Under CI (CI=true) a missing service fails the test; locally it skips
with the reason, so a developer without e.g. ZooKeeper can still run the rest."""

from __future__ import annotations

import os
import shutil
import socket
from typing import NoReturn

import pytest

SERVICES: dict[str, tuple[str, int]] = {
    "redis": ("127.0.0.1", 6379),
    "postgresql": ("127.0.0.1", 5432),
    "mysql": ("127.0.0.1", 3306),
    "rabbitmq": ("127.0.0.1", 5672),
    "mqtt": ("127.0.0.1", 1883),
    "nats": ("127.0.0.1", 4222),
    "etcd": ("127.0.0.1", 2379),
    "zookeeper": ("127.0.0.1", 2181),
    "memcached": ("127.0.0.1", 11211),
}

POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": "", "database": "test"}


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def missing(reason: str) -> NoReturn:
    """Something a test needs is not on this machine: a failure under CI, a skip elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: a missing dependency is a failure)")
    pytest.skip(reason)


def require(name: str) -> None:
    host, port = SERVICES[name]
    if not reachable(host, port):
        missing(f"{name} is not reachable at {host}:{port}")


def require_binary(name: str) -> str:
    """The path of an executable the test starts itself (redis-server, etcd, node, ...)."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed")
    return path
