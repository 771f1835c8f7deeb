"""Distributed lock stores. One module per backend; register it here with one line."""

FACTORIES: dict[str, str] = {
    "in-memory": "layotto.components.lock.memory:InMemoryLock",
    "redis": "layotto.components.lock.redis:RedisLock",
    "redis_cluster": "layotto.components.lock.redis_cluster:RedisClusterLock",
    "etcd": "layotto.components.lock.etcd:EtcdLock",
    "zookeeper": "layotto.components.lock.zookeeper:ZookeeperLock",
    "postgresql": "layotto.components.lock.postgresql:PostgresqlLock",
    "mysql": "layotto.components.lock.mysql:MysqlLock",
    "sqlite": "layotto.components.lock.sqlite:SqliteLock",
}
