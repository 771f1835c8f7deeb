"""What both gRPC APIs answer alike for locks: upstream Layotto and daprd check the same things
in the same order and word most of them the same way."""

from __future__ import annotations

import grpc

from layotto.api.common import Answers
from layotto.core.lock import LockProblem as P

__all__ = ["KEY_SEPARATOR_MESSAGE", "lock_answers"]

KEY_SEPARATOR_MESSAGE = "input key/keyPrefix '{key}' can't contain '{separator}'"


def lock_answers(expiry_field: str, separator_code: grpc.StatusCode, failures: Answers) -> Answers:
    """An API's answers, in the order both check: `expiry_field` names the request's expiry
    field in its message; `failures` answers the component failures."""
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    return {
        P.NO_STORES: (grpc.StatusCode.FAILED_PRECONDITION, "lock store is not configured"),
        P.RESOURCE_EMPTY: (invalid, "ResourceId is empty in lock store {store}"),
        P.OWNER_EMPTY: (invalid, "LockOwner is empty in lock store {store}"),
        P.EXPIRE_NOT_POSITIVE: (invalid, expiry_field + " is not positive in lock store {store}"),
        P.STORE_NOT_FOUND: (invalid, "lock store {store} not found"),
        P.KEY_HAS_SEPARATOR: (separator_code, KEY_SEPARATOR_MESSAGE),
        **failures,
    }
