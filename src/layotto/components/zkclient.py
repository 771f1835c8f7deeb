"""What the ZooKeeper components (lock, sequencer) share: the host list and what counts as an outage."""

from __future__ import annotations

from aiozk import exc as zk_errors

from layotto.components.base import Metadata

#: aiozk's errors for "the ensemble cannot be reached or the session is gone".
UNAVAILABLE: tuple[type[BaseException], ...] = (
    zk_errors.ConnectError,
    zk_errors.ConnectionLoss,
    zk_errors.SessionLost,
    zk_errors.SessionExpired,
    zk_errors.NoServersError,
    zk_errors.FailedRetry,
    zk_errors.TimeoutError,
    zk_errors.OperationTimeout,
    TimeoutError,
    OSError,
)


def hosts(metadata: Metadata) -> str:
    """`zookeeperHosts` (separated by ';' as upstream, or ',') as aiozk's comma-separated list;
    "" when none is given."""
    raw = metadata.get_str("zookeeperHosts")
    return ",".join(h.strip() for part in raw.split(";") for h in part.split(",") if h.strip())
