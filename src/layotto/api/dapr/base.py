"""Shared plumbing of the Dapr API servicers (dapr.proto.runtime.v1.Dapr)."""

from __future__ import annotations

import warnings

from layotto.api.layotto.base import ApiBase, Ctx, abort

with warnings.catch_warnings():
    # dapr warns at import when the legacy dapr-ext-* wheels sit beside it; that concerns the
    # app's environment, not the stubs used here.
    warnings.simplefilter("ignore", FutureWarning)
    import dapr  # noqa: F401

__all__ = ["ApiBase", "Ctx", "abort"]
