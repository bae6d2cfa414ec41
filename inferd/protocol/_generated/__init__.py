"""Generated protobuf / gRPC code for proto/grpc_service.proto; regenerate with scripts/gen-proto."""
