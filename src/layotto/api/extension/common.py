"""Shared plumbing of the extension services (upstream's pkg/grpc/<extension>/server.go)."""

from __future__ import annotations

import uuid


def request_id() -> str:
    return uuid.uuid4().hex
