"""Generated protobuf/gRPC stubs; regenerate with scripts/gen-protos."""
