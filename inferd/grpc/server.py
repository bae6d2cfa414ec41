"""The grpc.aio server hosting InferenceServicer on the shared event loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from inferd.dataplane.dataplane import DataPlane
from inferd.grpc.servicer import InferenceServicer
from inferd.protocol._generated import grpc_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from inferd.tracing.tracer import Tracing


class GrpcServer:
    def __init__(self, dataplane: DataPlane, max_message_bytes: int, tracing: Tracing | None = None) -> None:
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
                # A second server on the same port must fail, not silently share it.
                ("grpc.so_reuseport", 0),
            ]
        )
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            InferenceServicer(dataplane, tracing), self._server
        )

    async def start(self, host: str, port: int) -> int:
        """Bind and start; returns the bound port (useful with port 0)."""
        try:
            bound = self._server.add_insecure_port(f"{host}:{port}")
        except RuntimeError as exc:
            raise OSError(f"cannot bind gRPC to {host}:{port}: {exc}") from None
        if bound == 0:
            raise OSError(f"cannot bind gRPC to {host}:{port}")
        await self._server.start()
        return int(bound)

    async def stop(self, grace_s: float) -> None:
        await self._server.stop(grace_s)
