"""gRPC API layers: Layotto's (spec.proto.runtime.v1) and Dapr's, over the same components."""
