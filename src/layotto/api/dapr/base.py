"""Shared plumbing of the Dapr API servicers (dapr.proto.runtime.v1.Dapr)."""

from __future__ import annotations

from layotto.api.layotto.base import ApiBase, Ctx, abort

__all__ = ["ApiBase", "Ctx", "abort"]
