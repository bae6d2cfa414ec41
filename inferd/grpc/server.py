"""The grpc.aio server hosting InferenceServicer on the shared event loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from inferd.dataplane.dataplane import DataPlane
from inferd.grpc.access import GateInterceptor
from inferd.grpc.handlers import add_servicer
from inferd.grpc.servicer import InferenceServicer
from inferd.security.gate import Gate
from inferd.security.tls import TlsFiles

if TYPE_CHECKING:
    from inferd.tracing.tracer import Tracing


class GrpcServer:
    def __init__(
        self,
        dataplane: DataPlane,
        max_message_bytes: int,
        tracing: Tracing | None = None,
        gate: Gate | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        self._tls = tls
        self._server = grpc.aio.server(
            # No interceptor at all when the gate is off, so calls pay nothing for it.
            interceptors=[GateInterceptor(gate)] if gate is not None else None,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
                # A second server on the same port must fail, not silently share it.
                ("grpc.so_reuseport", 0),
            ],
        )
        add_servicer(InferenceServicer(dataplane, tracing), self._server)

    async def start(self, host: str, port: int) -> int:
        """Bind and start; returns the bound port (useful with port 0)."""
        try:
            if self._tls is None:
                bound = self._server.add_insecure_port(f"{host}:{port}")
            else:
                bound = self._server.add_secure_port(f"{host}:{port}", _credentials(self._tls))
        except RuntimeError as exc:
            raise OSError(f"cannot bind gRPC to {host}:{port}: {exc}") from None
        if bound == 0:
            raise OSError(f"cannot bind gRPC to {host}:{port}")
        await self._server.start()
        return int(bound)

    async def stop(self, grace_s: float) -> None:
        await self._server.stop(grace_s)


def _credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    root = tls.client_ca_file.read_bytes() if tls.client_ca_file is not None else None
    return grpc.ssl_server_credentials(
        [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
        root_certificates=root,
        require_client_auth=root is not None,
    )
