"""The grpc.aio server hosting InferenceServicer on the shared event loop."""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc

from inferd.dataplane.dataplane import DataPlane
from inferd.grpc.access import GateInterceptor
from inferd.grpc.handlers import add_servicer
from inferd.grpc.servicer import InferenceServicer
from inferd.security.gate import Gate
from inferd.security.tls import TlsFiles

# While draining, the server stops only once no inference call has arrived for this long, so the
# calls grpc-core has accepted but not yet handed over are answered (UNAVAILABLE), not cancelled.
_QUIET_S = 0.25


class GrpcServer:
    def __init__(
        self,
        dataplane: DataPlane,
        max_message_bytes: int,
        gate: Gate | None = None,
        tls: TlsFiles | None = None,
        max_connections: int | None = None,
        handshake_timeout_s: float | None = None,
        reuse_port: bool = False,
    ) -> None:
        self._tls = tls
        self._server = grpc.aio.server(
            # No interceptor at all when the gate is off, so calls pay nothing for it.
            interceptors=[GateInterceptor(gate)] if gate is not None else None,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
                # A second server on the same port must fail, not silently share it; the workers of
                # `inferd serve --workers N` share theirs on purpose (inferd/workers).
                ("grpc.so_reuseport", int(reuse_port)),
                *_connection_options(max_connections, handshake_timeout_s),
            ],
        )
        self._servicer = InferenceServicer(dataplane)
        add_servicer(self._servicer, self._server)

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
        """Refuse new inference calls (UNAVAILABLE) while accepted ones finish, then stop; at most
        ``grace_s`` seconds in all, after which calls still running are cancelled."""
        started = time.monotonic()
        self._servicer.refuse_new_calls()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._servicer.quiesce(_QUIET_S), grace_s)
        await self._server.stop(max(0.0, grace_s - (time.monotonic() - started)))


def _connection_options(
    max_connections: int | None, handshake_timeout_s: float | None
) -> list[tuple[str, int]]:
    """Bounds on connections (docs/hardening.md#connection-limits): beyond the cap gRPC closes new
    connections; one that has not finished its TLS and HTTP/2 handshake in time is closed."""
    options = []
    if max_connections is not None:
        options.append(("grpc.max_allowed_incoming_connections", max_connections))
    if handshake_timeout_s is not None:
        options.append(("grpc.server_handshake_timeout_ms", max(1, round(handshake_timeout_s * 1000))))
    return options


def _credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    root = tls.client_ca_file.read_bytes() if tls.client_ca_file is not None else None
    return grpc.ssl_server_credentials(
        [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
        root_certificates=root,
        require_client_auth=root is not None,
    )
