"""Dapr's InvokeService: to this sidecar's app (Dapr AppCallback/OnInvoke, or whichever
channel the app config selects) or, through name resolution, to another app's sidecar, by
the invocation engine the Layotto API uses too."""

from __future__ import annotations

from layotto.api.invoke import InvokeRpcs
from layotto_proto.dapr.proto.common.v1 import common_pb2


class DaprInvokeApi(InvokeRpcs):
    RESPONSE = common_pb2.InvokeResponse
    VERB_NAME = common_pb2.HTTPExtension.Verb.Name
