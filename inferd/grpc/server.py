"""The grpc.aio servers hosting InferenceServicer on the shared event loop.

grpc.aio accepts calls with one loop per server: it asks grpc-core for the next call only once the
previous one has reached Python, so under load calls reach the event loop about one per loop turn,
each finding its model idle, and run unbatched. ``accept_loops`` servers share the port
(SO_REUSEPORT: the kernel spreads connections over them) and the servicer; each accepts on its own,
so a poller wake-up can hand the loop as many calls as there are servers, and calls parsed in the
same turn share an execution (docs/architecture.md "gRPC front-end"). A client multiplexing all
its calls over one connection still reaches a single server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
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
# Each server takes at least this many connections of the cap: the kernel spreads connections over
# the servers unevenly, so a small cap gets fewer servers (one below twice this: the cap stays exact).
MIN_CONNECTIONS_PER_LOOP = 32


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
        accept_loops: int = 1,
    ) -> None:
        self._tls = tls
        loops = accept_loops_for(accept_loops, max_connections)
        # A second server on the same port must fail, not silently share it (start() checks the
        # port first); the workers of `inferd serve --workers N` share theirs on purpose.
        self._exclusive = not reuse_port
        # No interceptor at all when the gate is off, so calls pay nothing for it.
        interceptors = [GateInterceptor(gate)] if gate is not None else None
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.so_reuseport", int(reuse_port or loops > 1)),
            *_connection_options(
                max_connections // loops if max_connections is not None else None, handshake_timeout_s
            ),
        ]
        self._servers = [grpc.aio.server(interceptors=interceptors, options=options) for _ in range(loops)]
        self._servicer = InferenceServicer(dataplane)
        for server in self._servers:
            add_servicer(self._servicer, server)

    async def start(self, host: str, port: int) -> int:
        """Bind and start; returns the bound port (useful with port 0: the first server picks it,
        the others join it)."""
        if len(self._servers) > 1 and self._exclusive and port:
            _check_free(host, port)  # SO_REUSEPORT would otherwise let us share another server's port
        for server in self._servers:
            port = self._bind(server, host, port)
        for server in self._servers:
            await server.start()
        return port

    def _bind(self, server: grpc.aio.Server, host: str, port: int) -> int:
        try:
            if self._tls is None:
                bound = server.add_insecure_port(f"{host}:{port}")
            else:
                bound = server.add_secure_port(f"{host}:{port}", _credentials(self._tls))
        except RuntimeError as exc:
            raise OSError(f"cannot bind gRPC to {host}:{port}: {exc}") from None
        if bound == 0:
            raise OSError(f"cannot bind gRPC to {host}:{port}")
        return int(bound)

    async def stop(self, grace_s: float) -> None:
        """Refuse new inference calls (UNAVAILABLE) while accepted ones finish, then stop; at most
        ``grace_s`` seconds in all, after which calls still running are cancelled."""
        started = time.monotonic()
        self._servicer.refuse_new_calls()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._servicer.quiesce(_QUIET_S), grace_s)
        left = max(0.0, grace_s - (time.monotonic() - started))
        await asyncio.gather(*(server.stop(left) for server in self._servers))


def accept_loops_for(wanted: int, max_connections: int | None) -> int:
    """How many servers accept calls: ``wanted``, fewer when the connection cap is too small to give
    each ``MIN_CONNECTIONS_PER_LOOP`` of it."""
    if max_connections is not None:
        wanted = min(wanted, max_connections // MIN_CONNECTIONS_PER_LOOP)
    return max(1, wanted)


def _check_free(host: str, port: int) -> None:
    """Fail as a bind would if another socket listens on the port (even one with SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT leftover is free
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(f"cannot bind gRPC to {host}:{port}: {exc.strerror}") from None


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
