"""Generated protobuf/gRPC stubs of the Layotto API; regenerate with scripts/gen-protos.

``layotto_proto.spec.proto.runtime.v1.runtime_pb2`` and its siblings mirror the proto
paths under ``protos/``; the runtime and the SDK import them from here.
"""

__version__ = "0.2.0"
