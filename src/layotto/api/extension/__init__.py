"""Upstream Layotto's extension services (spec.proto.extension.v1.*), served beside Runtime: one
part per service over its core, bound onto the generated servicer as the Runtime API's are."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from layotto.api.answers import load_answers
from layotto.api.common import Parts
from layotto.api.extension.cryption import CryptionApi
from layotto.api.extension.delay_queue import DelayQueueApi
from layotto.api.extension.email import EmailApi
from layotto.api.extension.notify import NotifyApi
from layotto.api.extension.oss import ObjectStorageApi
from layotto.components.delay_queue.base import DelayScheduler
from layotto.core.notify import NotifyCore
from layotto.runtime.cores import cryption_core, delay_queue_core, email_core, oss_core
from layotto.runtime.runtime import Runtime
from layotto_proto.spec.proto.extension.v1.cryption import cryption_pb2_grpc
from layotto_proto.spec.proto.extension.v1.delay_queue import delay_queue_pb2_grpc
from layotto_proto.spec.proto.extension.v1.email import email_pb2_grpc
from layotto_proto.spec.proto.extension.v1.phone import phone_pb2_grpc
from layotto_proto.spec.proto.extension.v1.s3 import oss_pb2_grpc
from layotto_proto.spec.proto.extension.v1.sms import sms_pb2_grpc


def register(server: grpc.aio.Server, rt: Runtime, delay_schedulers: Mapping[str, DelayScheduler]) -> list[Parts[Any]]:
    """Serve the extension services on `server` over the started runtime's components and the
    sidecar's delay schedulers (one per delay-capable pub/sub component)."""
    answers = load_answers(__name__)
    notify = NotifyApi(NotifyCore(), answers["notify"])
    services = [
        (oss_pb2_grpc, "ObjectStorageService", ObjectStorageApi(oss_core(rt), answers["oss"])),
        (cryption_pb2_grpc, "CryptionService", CryptionApi(cryption_core(rt), answers["cryption"])),
        (
            delay_queue_pb2_grpc,
            "DelayQueue",
            DelayQueueApi(delay_queue_core(rt, delay_schedulers), answers["delay_queue"]),
        ),
        (email_pb2_grpc, "EmailService", EmailApi(email_core(rt), answers["email"])),
        (sms_pb2_grpc, "SmsService", notify),
        (phone_pb2_grpc, "PhoneCallService", notify),
    ]
    bound: list[Parts[Any]] = []
    for module, service, part in services:
        # Each generated module names its servicer and its registration after the service.
        parts = Parts(getattr(module, f"{service}Servicer"), [part])
        getattr(module, f"add_{service}Servicer_to_server")(parts.servicer, server)
        bound.append(parts)
    return bound
