"""Composition root: build every part from Settings, serve REST and gRPC on one event loop, drain, stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import uvicorn

from inferd.dataplane.dataplane import DataPlane
from inferd.grpc.server import GrpcServer
from inferd.http.app import RestApp
from inferd.repository.manager import ModelRepository
from inferd.security.service import Security
from inferd.security.tls import TlsFiles
from inferd.settings import Settings

log = logging.getLogger(__name__)


class Server:
    """One inferd process: model repository, data plane, REST and gRPC front-ends."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.repository = ModelRepository(settings.model_repository)
        self.dataplane = DataPlane(self.repository)
        self.security = Security(settings.security)
        self.http_port: int | None = None
        self.grpc_port: int | None = None
        self._stop = asyncio.Event()

    def load_models(self) -> None:
        """Load the repository; raises ModelLoadError naming the file when exit_on_error is set."""
        self.repository.load_all(exit_on_error=self.settings.exit_on_error)

    def request_stop(self) -> None:
        self._stop.set()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        if self.security.keys is not None:  # otherwise SIGHUP keeps its default meaning
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGHUP, self.security.reload_keys)
        self.security.start()

        settings = self.settings
        http_socket = _bind(settings.http.host, settings.http.port)
        self.http_port = http_socket.getsockname()[1]
        rest = RestApp(self.dataplane, settings.http.max_body_bytes, self.security.gate)
        config = uvicorn.Config(
            rest,
            loop="none",
            http="httptools",
            lifespan="off",
            access_log=False,
            log_config=None,
            # X-Forwarded-* rewriting is a middleware call per request; behind a proxy, turn it on there.
            proxy_headers=False,
            timeout_graceful_shutdown=int(settings.drain_timeout_s) or None,
            backlog=4096,
            ssl_context_factory=_ssl_factory(self.security.tls),
        )
        http_server = uvicorn.Server(config)
        grpc_server = None
        if settings.grpc.enabled:
            grpc_server = GrpcServer(
                self.dataplane, settings.grpc.max_message_bytes, self.security.gate, self.security.tls
            )
            self.grpc_port = await grpc_server.start(settings.grpc.host, settings.grpc.port)
        # uvicorn's serve() would install its own signal handlers; its steps are driven here instead,
        # so both front-ends drain in one order.
        config.load()
        http_server.lifespan = config.lifespan_class(config)
        await http_server.startup(sockets=[http_socket])
        http_loop = asyncio.create_task(http_server.main_loop())
        grpc_address = f"{settings.grpc.host}:{self.grpc_port}" if grpc_server else "off"
        log.info(
            "inferd serving: REST on %s:%s, gRPC on %s%s",
            settings.http.host,
            self.http_port,
            grpc_address,
            " (TLS)" if self.security.tls else "",
        )
        if settings.port_file:
            _write_port_file(settings.port_file, self.http_port, self.grpc_port)

        await self._stop.wait()
        log.info("stopping: draining in-flight requests")
        self.dataplane.start_draining()
        http_server.should_exit = True
        await http_loop
        # Both front-ends stop accepting at once and finish what they have already accepted.
        stopping = [http_server.shutdown(sockets=[http_socket])]
        if grpc_server:
            stopping.append(grpc_server.stop(settings.drain_timeout_s))
        await asyncio.gather(*stopping)
        await self.repository.close()
        await self.security.close()
        http_socket.close()
        log.info("stopped")


def _ssl_factory(tls: TlsFiles | None) -> Callable[..., ssl.SSLContext] | None:
    """uvicorn's hook for our own context (TLS 1.2+, client CA for mTLS), or None for plain HTTP."""
    if tls is None:
        return None

    def factory(config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return tls.ssl_context()

    return factory


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _write_port_file(path: Path, http_port: int | None, grpc_port: int | None) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps({"http": http_port, "grpc": grpc_port}))
    temporary.replace(path)  # atomic: readers never see a half-written file
