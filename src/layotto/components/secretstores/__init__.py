"""Secret stores (Dapr's `secretstores.*` types)."""

FACTORIES: dict[str, str] = {
    "local.file": "layotto.components.secretstores.localfile:LocalFileSecretStore",
    "local.env": "layotto.components.secretstores.localenv:LocalEnvSecretStore",
}
