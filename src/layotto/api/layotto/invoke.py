"""Invoke API: InvokeService to this sidecar's app or, through name resolution, another's."""

from __future__ import annotations

from layotto.api.invoke import InvokeRpcs
from layotto.runtime.invoke import ORIGIN_HEADER
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb


class InvokeApi(InvokeRpcs):
    RESPONSE = pb.InvokeResponse
    VERB_NAME = pb.HTTPExtension.Verb.Name
    # Marked as this sidecar's answer: a forwarding sidecar passes it on unchanged.
    FAILURE_TRAILER = ((ORIGIN_HEADER, "sidecar"),)
