"""Upstream Layotto's extension services (spec.proto.extension.v1.*), served beside Runtime."""

from __future__ import annotations

import grpc

from layotto.api.extension.common import ExtensionApi
from layotto.runtime.runtime import Runtime


class ExtensionApis:
    """All extension servicers, started and stopped together."""

    def __init__(self, apis: list[ExtensionApi]) -> None:
        self.apis = apis

    async def start_api(self) -> None:
        for api in self.apis:
            await api.start_api()

    async def stop_api(self) -> None:
        for api in reversed(self.apis):
            await api.stop_api()


def register(server: grpc.aio.Server, rt: Runtime) -> ExtensionApis:
    from layotto.api.extension.cryption import CryptionApi
    from layotto.api.extension.delay_queue import DelayQueueApi
    from layotto.api.extension.email import EmailApi
    from layotto.api.extension.oss import ObjectStorageApi
    from layotto.api.extension.phone import PhoneApi
    from layotto.api.extension.sms import SmsApi
    from layotto_proto.spec.proto.extension.v1.cryption import cryption_pb2_grpc
    from layotto_proto.spec.proto.extension.v1.delay_queue import delay_queue_pb2_grpc
    from layotto_proto.spec.proto.extension.v1.email import email_pb2_grpc
    from layotto_proto.spec.proto.extension.v1.phone import phone_pb2_grpc
    from layotto_proto.spec.proto.extension.v1.s3 import oss_pb2_grpc
    from layotto_proto.spec.proto.extension.v1.sms import sms_pb2_grpc

    oss, cryption, delay, email = ObjectStorageApi(rt), CryptionApi(rt), DelayQueueApi(rt), EmailApi(rt)
    sms, phone = SmsApi(rt), PhoneApi(rt)
    oss_pb2_grpc.add_ObjectStorageServiceServicer_to_server(oss, server)
    cryption_pb2_grpc.add_CryptionServiceServicer_to_server(cryption, server)
    delay_queue_pb2_grpc.add_DelayQueueServicer_to_server(delay, server)
    email_pb2_grpc.add_EmailServiceServicer_to_server(email, server)
    sms_pb2_grpc.add_SmsServiceServicer_to_server(sms, server)
    phone_pb2_grpc.add_PhoneCallServiceServicer_to_server(phone, server)
    return ExtensionApis([oss, cryption, delay, email, sms, phone])
