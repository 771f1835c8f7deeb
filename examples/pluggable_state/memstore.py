"""A pluggable state store in Python: a dict, served to the sidecar on a Unix socket.

    python examples/pluggable_state/memstore.py &
    layotto start --resources-path examples/pluggable_state/components

The socket's file name is the component type (`state.memstore`); see docs/extending.md.
"""

import asyncio
import os

import grpc
from grpc_reflection.v1alpha import reflection

from layotto_proto.dapr.proto.components.v1 import common_pb2, state_pb2, state_pb2_grpc


class MemStore(state_pb2_grpc.StateStoreServicer):
    def __init__(self):
        self.items = {}

    async def Init(self, request, context):  # request.metadata.properties: the component's metadata
        return state_pb2.InitResponse()

    async def Features(self, request, context):  # optional powers: "ETAG", "TRANSACTIONAL", "TTL"
        return common_pb2.FeaturesResponse(features=[])

    async def Ping(self, request, context):
        return common_pb2.PingResponse()

    async def Get(self, request, context):  # a missing key: no data, no etag
        return state_pb2.GetResponse(data=self.items.get(request.key, b""))

    async def Set(self, request, context):
        self.items[request.key] = request.value
        return state_pb2.SetResponse()

    async def Delete(self, request, context):
        self.items.pop(request.key, None)
        return state_pb2.DeleteResponse()


async def main():
    folder = os.environ.get("DAPR_COMPONENTS_SOCKETS_FOLDER", "/tmp/dapr-components-sockets")
    os.makedirs(folder, exist_ok=True)
    server = grpc.aio.server()
    state_pb2_grpc.add_StateStoreServicer_to_server(MemStore(), server)
    # The sidecar asks each socket what it serves through gRPC reflection.
    reflection.enable_server_reflection(["dapr.proto.components.v1.StateStore", reflection.SERVICE_NAME], server)
    server.add_insecure_port(f"unix:{folder}/memstore.sock")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main())
