"""The descriptor pool of Dapr's stubs (``layotto_proto.dapr.proto...``), apart from protobuf's default one.

Dapr's Python SDK registers the same proto files (``dapr/proto/common/v1/common.proto``, ...) in
the default pool, built from whichever Dapr release that SDK tracks. protobuf takes a file twice in
one pool only when both copies are byte for byte the same, and the same symbols under another file
name never ("duplicate symbol"). So the stubs generated from ``protos/dapr`` (one Dapr release, see
NOTICE) register here, and a process may import Dapr's SDK beside the runtime whatever its release.
Nothing changes on the wire: the package, message, service and field names and numbers are Dapr's.

A pool holds every file its files import, so this one has its own copy of the well-known types
Dapr's protos use (``google.protobuf.Any``, ``Struct``, ...), with classes of their own. For code
that builds a Dapr message from the default pool's ``any_pb2.Any()``, ``struct_pb2.Struct()``, ...
(as it would with Dapr's SDK stubs), `adopt` makes the messages of this pool take those too: in
the constructor, and in ``CopyFrom``/``MergeFrom`` of the well-known types; each such value is
copied, by its serialized bytes, into this pool's class. ``repeated.add(**fields)`` and
``repeated.append`` are protobuf's own and take only this pool's classes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf import (
    any_pb2,
    descriptor,
    descriptor_pool,
    duration_pb2,
    empty_pb2,
    message,
    message_factory,
    struct_pb2,
    timestamp_pb2,
)

__all__ = ["POOL", "adopt"]

#: The well-known types imported by Dapr's protos (protos/dapr/proto/**).
_WELL_KNOWN = (any_pb2, duration_pb2, empty_pb2, struct_pb2, timestamp_pb2)

POOL = descriptor_pool.DescriptorPool()
for _module in _WELL_KNOWN:
    POOL.AddSerializedFile(_module.DESCRIPTOR.serialized_pb)

_WELL_KNOWN_FILES = frozenset(module.DESCRIPTOR.name for module in _WELL_KNOWN)


def _class(desc: descriptor.Descriptor) -> Any:
    return message_factory.GetMessageClass(desc)


def _converter(cls: Any) -> Callable[[Any], Any]:
    """Returns `value` as a `cls` when it is another pool's message of the same type."""
    name = cls.DESCRIPTOR.full_name

    def convert(value: Any) -> Any:
        if type(value) is cls or not isinstance(value, message.Message) or value.DESCRIPTOR.full_name != name:
            return value
        return cls.FromString(value.SerializeToString())

    return convert


def _field_converter(field: descriptor.FieldDescriptor) -> Callable[[Any], Any] | None:
    """What a constructor argument for `field` goes through, or None when nothing is needed."""
    kind = field.message_type
    if kind is None:
        return None
    if kind.GetOptions().map_entry:
        value = kind.fields_by_name["value"].message_type
        if value is None or value.file.name not in _WELL_KNOWN_FILES:
            return None
        item = _converter(_class(value))
        return lambda entries: {key: item(entry) for key, entry in entries.items()}
    if kind.file.name not in _WELL_KNOWN_FILES:
        return None
    one = _converter(_class(kind))
    if _is_repeated(field):
        return lambda values: [one(value) for value in values]
    return one


def _is_repeated(field: descriptor.FieldDescriptor) -> bool:
    repeated = getattr(field, "is_repeated", None)  # protobuf >= 6.31; `label` is deprecated there
    if repeated is not None:
        return bool(repeated)
    return bool(field.label == descriptor.FieldDescriptor.LABEL_REPEATED)


def _messages(types: Any) -> Iterator[descriptor.Descriptor]:
    for desc in types:
        yield desc
        yield from _messages(desc.nested_types)


def _take_other_pools(cls: Any, fields: list[tuple[str, Callable[[Any], Any]]]) -> None:
    init = cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        for name, convert in fields:
            if name in kwargs:
                kwargs[name] = convert(kwargs[name])
        init(self, *args, **kwargs)

    cls.__init__ = __init__


def _take_other_pools_in_copies(cls: Any) -> None:
    convert = _converter(cls)
    copy_from, merge_from = cls.CopyFrom, cls.MergeFrom

    def CopyFrom(self: Any, other: Any) -> None:
        copy_from(self, convert(other))

    def MergeFrom(self: Any, other: Any) -> None:
        merge_from(self, convert(other))

    cls.CopyFrom, cls.MergeFrom = CopyFrom, MergeFrom


def adopt(file: descriptor.FileDescriptor) -> None:
    """Called by each generated module once its classes are built (see scripts/gen-protos)."""
    for desc in _messages(file.message_types_by_name.values()):
        if desc.GetOptions().map_entry:
            continue
        fields = [(field.name, convert) for field in desc.fields if (convert := _field_converter(field)) is not None]
        if fields:
            _take_other_pools(_class(desc), fields)


#: This pool's well-known classes, held: protobuf keeps a class only while something refers to it,
#: and would build it anew, without the CopyFrom/MergeFrom below, for the next message using it.
_WELL_KNOWN_CLASSES = [
    _class(POOL.FindMessageTypeByName(desc.full_name))
    for module in _WELL_KNOWN
    for desc in _messages(module.DESCRIPTOR.message_types_by_name.values())
]
for _cls in _WELL_KNOWN_CLASSES:
    _take_other_pools_in_copies(_cls)
