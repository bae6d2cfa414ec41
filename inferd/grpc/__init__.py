"""gRPC front-end (grpc.aio): GRPCInferenceService methods translated to data-plane calls."""
