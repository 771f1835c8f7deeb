"""The Layotto API (spec.proto.runtime.v1.Runtime): one part per building block, bound onto the
generated servicer. RPCs no part implements answer UNIMPLEMENTED "method X not implemented"
(`api.common.Parts`), as upstream's Go server does.
"""

from __future__ import annotations

import grpc

from layotto.api.answers import load_answers
from layotto.api.common import Parts
from layotto.api.layotto.bindings import BindingsApi
from layotto.api.layotto.configuration import ConfigurationApi
from layotto.api.layotto.file import FileApi
from layotto.api.layotto.hello import HelloApi
from layotto.api.layotto.invoke import InvokeApi
from layotto.api.layotto.lock import LockApi
from layotto.api.layotto.pubsub import PubSubApi, SubscribeApi
from layotto.api.layotto.secrets import SecretsApi
from layotto.api.layotto.sequencer import SequencerApi
from layotto.api.layotto.state import StateApi
from layotto.runtime.cores import (
    bindings_core,
    configuration_core,
    file_core,
    lock_core,
    pubsub_core,
    secrets_core,
    sequencer_core,
    state_core,
)
from layotto.runtime.invoke import Invoker
from layotto.runtime.runtime import Runtime
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc


def register(server: grpc.aio.Server, rt: Runtime, invoker: Invoker) -> Parts[runtime_pb2_grpc.RuntimeServicer]:
    """Serve the Layotto API on `server` over the started runtime's components."""
    answers = load_answers(__name__)
    pubsub = pubsub_core(rt, answers.checks("pubsub"), PubSubApi.STYLE)
    parts = Parts(
        runtime_pb2_grpc.RuntimeServicer,  # type: ignore[type-abstract]
        [
            HelloApi(rt),
            StateApi(state_core(rt, answers.checks("state")), answers["state"]),
            LockApi(lock_core(rt, answers.checks("lock")), answers["lock"]),
            SequencerApi(sequencer_core(rt), answers["sequencer"]),
            PubSubApi(pubsub, answers["pubsub"]),
            SubscribeApi(pubsub, answers["pubsub"], rt),
            ConfigurationApi(configuration_core(rt), answers["configuration"]),
            SecretsApi(secrets_core(rt), answers["secrets"]),
            BindingsApi(bindings_core(rt, answers.checks("bindings")), answers["bindings"]),
            InvokeApi(invoker),
            FileApi(file_core(rt), answers["file"], answers["file-get"]),
        ],
    )
    runtime_pb2_grpc.add_RuntimeServicer_to_server(parts.servicer, server)
    return parts
