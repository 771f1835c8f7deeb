"""Cryption components (upstream `cryption` block): encrypt and decrypt with keys the sidecar holds.

Upstream's backends (aliyun.kms, aws.kms) are cloud KMS services; `local` keeps AES keys in
the sidecar's config or a secret store.
"""

FACTORIES: dict[str, str] = {
    "local": "layotto.components.cryption.local:LocalCryption",
}
