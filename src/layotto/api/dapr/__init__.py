"""Dapr's gRPC API (dapr.proto.runtime.v1.Dapr), served on the same port as the Layotto API
and mapped onto the same components: one store, two APIs.

RPCs no part implements (actors, workflows, jobs, crypto, ...) answer UNIMPLEMENTED "method X
not implemented" (`api.common.Parts`), as daprd does for a method it does not implement.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from layotto.api.answers import load_answers
from layotto.api.common import Parts
from layotto.api.dapr.bindings import DaprBindingsApi
from layotto.api.dapr.configuration import DaprConfigurationApi
from layotto.api.dapr.invoke import DaprInvokeApi
from layotto.api.dapr.lock import DaprLockApi
from layotto.api.dapr.metadata import DaprMetadataApi
from layotto.api.dapr.pubsub import DaprPubSubApi, DaprSubscribeApi
from layotto.api.dapr.secrets import DaprSecretsApi
from layotto.api.dapr.state import DaprStateApi
from layotto.runtime.cores import bindings_core, configuration_core, lock_core, pubsub_core, secrets_core, state_core
from layotto.runtime.invoke import Invoker
from layotto.runtime.runtime import Runtime
from layotto_proto.dapr.proto.runtime.v1 import dapr_pb2_grpc


def register(
    server: grpc.aio.Server, rt: Runtime, invoker: Invoker, shutdown: Callable[[], None]
) -> Parts[dapr_pb2_grpc.DaprServicer]:
    """Serve Dapr's gRPC API on `server` over the started runtime's components; `shutdown`
    stops the sidecar (Dapr's Shutdown)."""
    answers = load_answers(__name__)
    style = DaprPubSubApi.style(rt.app_id)
    parts = Parts(
        dapr_pb2_grpc.DaprServicer,
        [
            DaprStateApi(state_core(rt, answers.checks("state")), answers["state"]),
            DaprPubSubApi(pubsub_core(rt, answers.checks("pubsub"), style), answers["pubsub"]),
            DaprSubscribeApi(
                pubsub_core(rt, answers.checks("pubsub-subscribe"), style), answers["pubsub-subscribe"], rt
            ),
            DaprSecretsApi(secrets_core(rt), answers["secrets"]),
            DaprBindingsApi(bindings_core(rt, answers.checks("bindings")), answers["bindings"]),
            DaprLockApi(lock_core(rt, answers.checks("lock")), answers["lock"]),
            DaprConfigurationApi(configuration_core(rt), answers["configuration"]),
            DaprInvokeApi(invoker),
            DaprMetadataApi(rt, shutdown),
        ],
    )
    dapr_pb2_grpc.add_DaprServicer_to_server(parts.servicer, server)  # type: ignore[no-untyped-call]
    return parts
