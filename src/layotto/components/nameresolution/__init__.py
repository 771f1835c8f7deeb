"""Name resolution: app id -> the address of a sidecar serving that app."""

FACTORIES: dict[str, str] = {
    "static": "layotto.components.nameresolution.static:StaticResolver",
    "redis": "layotto.components.nameresolution.redis:RedisResolver",
}
