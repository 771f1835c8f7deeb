"""Configuration stores (Layotto's `config_store`)."""

FACTORIES: dict[str, str] = {
    "in-memory": "layotto.components.configuration.memory:InMemoryConfigStore",
    "etcd": "layotto.components.configuration.etcd:EtcdConfigStore",
    "redis": "layotto.components.configuration.redis:RedisConfigStore",
}
