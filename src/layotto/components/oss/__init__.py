"""Object storage components (upstream `oss` block, served by ObjectStorageService).

Upstream's backends (aws.oss, aliyun.oss, ceph, huaweicloud.oss) are cloud services;
`local` keeps buckets as folders under a root folder.
"""

FACTORIES: dict[str, str] = {
    "local": "layotto.components.oss.local:LocalObjectStore",
}
