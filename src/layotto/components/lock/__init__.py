"""Distributed lock stores. One module per backend; register it here with one line."""

FACTORIES: dict[str, str] = {
    "in-memory": "layotto.components.lock.memory:InMemoryLock",
}
