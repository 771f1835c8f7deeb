"""Sequencers: distributed, increasing ids."""

FACTORIES: dict[str, str] = {
    "in-memory": "layotto.components.sequencer.memory:InMemorySequencer",
    "redis": "layotto.components.sequencer.redis:RedisSequencer",
    "sqlite": "layotto.components.sequencer.sqlite:SqliteSequencer",
    "postgresql": "layotto.components.sequencer.postgresql:PostgresqlSequencer",
    "mysql": "layotto.components.sequencer.mysql:MysqlSequencer",
    "etcd": "layotto.components.sequencer.etcd:EtcdSequencer",
    "snowflake": "layotto.components.sequencer.snowflake:SnowflakeSequencer",
    "zookeeper": "layotto.components.sequencer.zookeeper:ZookeeperSequencer",
}
