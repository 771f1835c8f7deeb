"""The few messages of Dapr's gRPC API (dapr.proto.runtime.v1.Dapr) the SDK sends: sidecar
metadata, shutdown and bulk publish, which the Layotto API has no RPCs for and which layotto
serves on the same port.

They are declared here field for field as Dapr's protos number them, in a private descriptor
pool: the SDK needs no Dapr package, and an app that imports Dapr's own stubs beside it sees no
clash of names. Fields the SDK does not read are left out; protobuf skips them on the wire.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SERVICE = "/dapr.proto.runtime.v1.Dapr/"
_PACKAGE = "dapr.proto.runtime.v1"

_T = descriptor_pb2.FieldDescriptorProto
_STRING, _BYTES, _MESSAGE = _T.TYPE_STRING, _T.TYPE_BYTES, _T.TYPE_MESSAGE
_ONE, _MANY = _T.LABEL_OPTIONAL, _T.LABEL_REPEATED

#: message -> [(field, number, type, label, message type of the field)]; "map" marks a
#: map<string, string>.
_MESSAGES: dict[str, list[tuple[str, int, int, int, str]]] = {
    "GetMetadataRequest": [],
    "GetMetadataResponse": [
        ("id", 1, _STRING, _ONE, ""),
        ("registered_components", 3, _MESSAGE, _MANY, "RegisteredComponents"),
        ("extended_metadata", 4, _MESSAGE, _MANY, "map"),
        ("subscriptions", 5, _MESSAGE, _MANY, "PubsubSubscription"),
        ("runtime_version", 8, _STRING, _ONE, ""),
        ("enabled_features", 9, _STRING, _MANY, ""),
    ],
    "RegisteredComponents": [
        ("name", 1, _STRING, _ONE, ""),
        ("type", 2, _STRING, _ONE, ""),
        ("version", 3, _STRING, _ONE, ""),
        ("capabilities", 4, _STRING, _MANY, ""),
    ],
    "PubsubSubscription": [
        ("pubsub_name", 1, _STRING, _ONE, ""),
        ("topic", 2, _STRING, _ONE, ""),
        ("metadata", 3, _MESSAGE, _MANY, "map"),
        ("dead_letter_topic", 5, _STRING, _ONE, ""),
    ],
    "SetMetadataRequest": [("key", 1, _STRING, _ONE, ""), ("value", 2, _STRING, _ONE, "")],
    "ShutdownRequest": [],
    "Empty": [],
    "BulkPublishRequest": [
        ("pubsub_name", 1, _STRING, _ONE, ""),
        ("topic", 2, _STRING, _ONE, ""),
        ("entries", 3, _MESSAGE, _MANY, "BulkPublishRequestEntry"),
        ("metadata", 4, _MESSAGE, _MANY, "map"),
    ],
    "BulkPublishRequestEntry": [
        ("entry_id", 1, _STRING, _ONE, ""),
        ("event", 2, _BYTES, _ONE, ""),
        ("content_type", 3, _STRING, _ONE, ""),
        ("metadata", 4, _MESSAGE, _MANY, "map"),
    ],
    "BulkPublishResponse": [("failedEntries", 1, _MESSAGE, _MANY, "BulkPublishResponseFailedEntry")],
    "BulkPublishResponseFailedEntry": [("entry_id", 1, _STRING, _ONE, ""), ("error", 2, _STRING, _ONE, "")],
}


def _map_entry(name: str) -> descriptor_pb2.DescriptorProto:
    entry = descriptor_pb2.DescriptorProto(name=name)
    entry.options.map_entry = True
    for field, number in (("key", 1), ("value", 2)):
        entry.field.add(name=field, number=number, type=_STRING, label=_ONE)
    return entry


def _classes() -> dict[str, Any]:
    file = descriptor_pb2.FileDescriptorProto(name="layotto_sdk/dapr_subset.proto", package=_PACKAGE, syntax="proto3")
    for message, fields in _MESSAGES.items():
        proto = file.message_type.add(name=message)
        for field, number, kind, label, of in fields:
            added = proto.field.add(name=field, number=number, type=kind, label=label)
            if of == "map":
                entry = "".join(part.capitalize() for part in field.split("_")) + "Entry"
                proto.nested_type.append(_map_entry(entry))
                added.type_name = f".{_PACKAGE}.{message}.{entry}"
            elif of:
                added.type_name = f".{_PACKAGE}.{of}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}")) for name in _MESSAGES
    }


MESSAGES = _classes()
