"""Every extension service is served, and answers upstream's not-found error for a component
that is not configured (the kind names the service)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from layotto_proto.spec.proto.extension.v1.cryption import cryption_pb2, cryption_pb2_grpc
from layotto_proto.spec.proto.extension.v1.delay_queue import delay_queue_pb2, delay_queue_pb2_grpc
from layotto_proto.spec.proto.extension.v1.email import email_pb2, email_pb2_grpc
from layotto_proto.spec.proto.extension.v1.phone import phone_pb2, phone_pb2_grpc
from layotto_proto.spec.proto.extension.v1.s3 import oss_pb2, oss_pb2_grpc
from layotto_proto.spec.proto.extension.v1.sms import sms_pb2, sms_pb2_grpc
from tests.support.sidecar import running_sidecar


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    async with running_sidecar({}) as (_, address), grpc.aio.insecure_channel(address) as chan:
        yield chan


async def _error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


async def test_component_not_found_per_service(channel: grpc.aio.Channel) -> None:
    cases: list[tuple[Any, str]] = [
        (
            cryption_pb2_grpc.CryptionServiceStub(channel).Encrypt(cryption_pb2.EncryptRequest(component_name="x")),
            "cryption",
        ),
        (
            cryption_pb2_grpc.CryptionServiceStub(channel).Decrypt(cryption_pb2.DecryptRequest(component_name="x")),
            "cryption",
        ),
        (
            delay_queue_pb2_grpc.DelayQueueStub(channel).PublishDelayMessage(
                delay_queue_pb2.DelayMessageRequest(component_name="x", topic="t")
            ),
            "delay_queue",
        ),
        (email_pb2_grpc.EmailServiceStub(channel).SendEmail(email_pb2.SendEmailRequest(component_name="x")), "email"),
        (
            email_pb2_grpc.EmailServiceStub(channel).SendEmailWithTemplate(
                email_pb2.SendEmailWithTemplateRequest(component_name="x")
            ),
            "email",
        ),
        (
            sms_pb2_grpc.SmsServiceStub(channel).SendSmsWithTemplate(
                sms_pb2.SendSmsWithTemplateRequest(component_name="x", phone_numbers=["+100"])
            ),
            "sms",
        ),
        (
            phone_pb2_grpc.PhoneCallServiceStub(channel).SendVoiceWithTemplate(
                phone_pb2.SendVoiceWithTemplateRequest(component_name="x", to_mobile=["+100"])
            ),
            "phone",
        ),
    ]
    for call, kind in cases:
        err = await _error(call)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details() == f"component not found. kind: {kind} , name: x"


async def test_object_storage_unknown_store(channel: grpc.aio.Channel) -> None:
    stub = oss_pb2_grpc.ObjectStorageServiceStub(channel)
    err = await _error(stub.HeadObject(oss_pb2.HeadObjectInput(store_name="notexists", bucket="b", key="k")))
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "not supported store type: notexists")

    async def uploads() -> AsyncIterator[oss_pb2.UploadPartInput]:
        yield oss_pb2.UploadPartInput(store_name="notexists", body=b"x")

    err = await _error(stub.UploadPart(uploads()))
    assert err.details() == "not supported store type: notexists"


async def test_sms_and_phone_components_are_not_available() -> None:
    # No provider is reachable here, so the blocks have no component types: a configured entry
    # is skipped with a warning and calls get the not-found error.
    config = {"sms": {"tx": {"type": "tencentcloud.sms", "metadata": {}}}}
    async with running_sidecar(config) as (sidecar, address), grpc.aio.insecure_channel(address) as chan:
        assert any("'sms' building block is not available" in w for w in sidecar.config.warnings)
        err = await _error(
            sms_pb2_grpc.SmsServiceStub(chan).SendSmsWithTemplate(
                sms_pb2.SendSmsWithTemplateRequest(component_name="tx")
            )
        )
        assert err.details() == "component not found. kind: sms , name: tx"


async def test_object_storage_refuses_what_no_local_store_has_a_meaning_for(tmp_path: Any) -> None:
    config = {"oss": {"files": {"type": "local", "metadata": {"rootPath": str(tmp_path)}}}}
    async with running_sidecar(config) as (_, address), grpc.aio.insecure_channel(address) as chan:
        stub = oss_pb2_grpc.ObjectStorageServiceStub(chan)
        calls = {
            "GetObjectCannedAcl": stub.GetObjectCannedAcl(oss_pb2.GetObjectCannedAclInput(store_name="files")),
            "PutObjectCannedAcl": stub.PutObjectCannedAcl(oss_pb2.PutObjectCannedAclInput(store_name="files")),
            "RestoreObject": stub.RestoreObject(oss_pb2.RestoreObjectInput(store_name="files")),
            "ListObjectVersions": stub.ListObjectVersions(oss_pb2.ListObjectVersionsInput(store_name="files")),
            "SignURL": stub.SignURL(oss_pb2.SignURLInput(store_name="files")),
            "UpdateDownloadBandwidthRateLimit": stub.UpdateDownloadBandwidthRateLimit(
                oss_pb2.UpdateBandwidthRateLimitInput(store_name="files")
            ),
            "UpdateUploadBandwidthRateLimit": stub.UpdateUploadBandwidthRateLimit(
                oss_pb2.UpdateBandwidthRateLimitInput(store_name="files")
            ),
        }
        for rpc, call in calls.items():
            err = await _error(call)
            assert (err.code(), err.details()) == (
                grpc.StatusCode.UNIMPLEMENTED,
                f"{rpc} is not supported by the local object store",
            )
        # An unknown store is named first, as for every other operation.
        err = await _error(stub.SignURL(oss_pb2.SignURLInput(store_name="nope")))
        assert err.details() == "not supported store type: nope"
        # A missing object fails while opening it, in upstream's words.
        get = stub.GetObject(oss_pb2.GetObjectInput(store_name="files", bucket="bkt", key="missing"))
        err = await _error(get.read())
        assert err.details().startswith("get file fail,err: ")
