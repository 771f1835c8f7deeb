"""State stores. One module per backend; register it here with one line."""

FACTORIES: dict[str, str] = {
    "in-memory": "layotto.components.state.memory:InMemoryStateStore",
    "sqlite": "layotto.components.state.sqlite:SqliteStateStore",
    "redis": "layotto.components.state.redis:RedisStateStore",
    "postgresql": "layotto.components.state.postgresql:PostgresqlStateStore",
    "mysql": "layotto.components.state.mysql:MysqlStateStore",
    "memcached": "layotto.components.state.memcached:MemcachedStateStore",
    "zookeeper": "layotto.components.state.zookeeper:ZookeeperStateStore",
}
