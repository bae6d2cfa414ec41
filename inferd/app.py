"""Composition root: build every part from Settings, serve REST and gRPC on one event loop, drain, stop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import json
import logging
import math
import resource
import signal
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from inferd.cache.factory import build_cache
from inferd.dashboard.pages import dashboard_pages
from inferd.dataplane.dataplane import DataPlane
from inferd.drift.monitor import DriftConfig, DriftMonitor
from inferd.grpc.server import GrpcServer
from inferd.http.app import RestApp
from inferd.http.pages import Page, PagesApp
from inferd.http.protocol import ConnectionLimits, bounded_protocol
from inferd.metrics.registry import Metrics
from inferd.repository.loader import SchedulerDefaults
from inferd.repository.manager import ModelRepository
from inferd.repository.single import serving_root
from inferd.runtimes import generative
from inferd.security.metrics import SecurityCollector
from inferd.security.service import Security
from inferd.security.tls import TlsFiles
from inferd.settings import Settings

if TYPE_CHECKING:
    from inferd.tracing.tracer import Tracing

log = logging.getLogger(__name__)


class Server:
    """One inferd process: model repository, data plane, REST and gRPC front-ends."""

    # inferd/workers swaps in its data plane (the control plane and sums span the workers) and shares
    # the gRPC port between worker processes.
    dataplane_class: type[DataPlane] = DataPlane
    grpc_reuse_port = False

    def __init__(self, settings: Settings, tracing: Tracing | None = None) -> None:
        """``tracing``: spans go there; by default, when settings.tracing is on, an OTLP exporter
        configured from the OTEL_* variables."""
        self.settings = settings
        self.tracing = tracing if tracing is not None else _tracing(settings)
        root = serving_root(settings.model_repository, settings.model_name)
        self.repository = ModelRepository(
            root,
            lazy=settings.lifecycle.lazy,
            max_loaded_models=settings.lifecycle.max_loaded_models,
            inline_execution_max_us=settings.scheduling.inline_execution_max_us,
            scheduler_defaults=SchedulerDefaults(
                settings.scheduling.max_queue_size,
                settings.scheduling.execution_timeout_s,
                settings.drain_timeout_s,
            ),
            load_timeout_s=settings.lifecycle.load_timeout_s,
        )
        self.security = Security(settings.security)
        self.drift = _drift_monitor(settings, root)
        cache = settings.cache
        self.cache = build_cache(cache.backend, cache.memory_bytes, cache.ttl_s, cache.key_prefix)
        self.dataplane = self.dataplane_class(
            self.repository,
            self.cache,
            settings.admission.default_timeout_us,
            settings.limits.max_tensor_elements,
            settings.limits.max_bytes_length,
            access_log=settings.logs.access_log,
            drift=self.drift,
            model_control=settings.lifecycle.model_control,
            tracing=self.tracing,
            cache_shared_across_keys=cache.share_across_keys,
        )
        metrics = settings.metrics
        self.metrics = (
            Metrics(
                self.repository,
                price_per_hour=metrics.effective_price_per_hour,
                energy_interval_s=metrics.energy_interval_s,
            )
            if metrics.enabled
            else None
        )
        if self.metrics is not None and self.drift is not None:
            self.metrics.register(self.drift)
        if self.metrics is not None and self.security.gate is not None:
            self.metrics.register(SecurityCollector(self.security.gate))
        self.http_port: int | None = None
        self.grpc_port: int | None = None
        self.metrics_port: int | None = None
        self._stop = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._models_loaded = False
        self.connection_limits = _connection_limits(settings)

    def load_models(self) -> None:
        """Load what the model control mode asks for now, blocking (call it outside an event loop,
        before ``serve``; otherwise ``serve`` loads them). Raises ModelLoadError naming the file when
        exit_on_error is set."""
        asyncio.run(self.load_models_async())
        self._models_loaded = True

    async def load_models_async(self) -> None:
        """``load_models`` on a running event loop."""
        lifecycle = self.settings.lifecycle
        names: list[str] | None = None
        if lifecycle.model_control == "explicit":
            names = None if "*" in lifecycle.load_models else list(lifecycle.load_models)
        await self.repository.load_initial(names, exit_on_error=self.settings.exit_on_error)

    def request_stop(self) -> None:
        self._stop.set()

    async def serve(self) -> None:
        http_socket = self._listen_first()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        if self.security.keys is not None:  # otherwise SIGHUP keeps its default meaning
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGHUP, self.security.reload_keys)
        self.security.start()

        settings = self.settings
        if not self._models_loaded:
            await self.load_models_async()
        _freeze_startup_heap()
        self.watch_repository()
        self.http_port = http_socket.getsockname()[1]
        rest = RestApp(self.dataplane, settings.http.max_body_bytes, self.pages(), self.security.gate)
        config = uvicorn.Config(
            rest,
            loop="none",
            http=bounded_protocol(self.connection_limits),
            lifespan="off",
            access_log=False,
            log_config=None,
            # X-Forwarded-* rewriting is a middleware call per request; behind a proxy, turn it on there.
            proxy_headers=False,
            # An int, and never None (which would mean waiting forever): 0 really means no grace.
            timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s),
            backlog=4096,
            ssl_context_factory=_ssl_factory(self.security.tls),
        )
        http_server = uvicorn.Server(config)
        grpc_server = None
        if settings.grpc.enabled:
            grpc_server = GrpcServer(
                self.dataplane,
                settings.grpc.max_message_bytes,
                self.security.gate,
                self.security.tls,
                max_connections=self.connection_limits.max_connections,
                handshake_timeout_s=self.connection_limits.header_timeout_s,
                reuse_port=self.grpc_reuse_port,
                accept_loops=settings.grpc.accept_loops,
            )
            self.grpc_port = await grpc_server.start(settings.grpc.host, settings.grpc.port)
        # uvicorn's serve() would install its own signal handlers; its steps are driven here instead,
        # so both front-ends drain in one order.
        config.load()
        http_server.lifespan = config.lifespan_class(config)
        await http_server.startup(sockets=[http_socket])
        http_loop = asyncio.create_task(http_server.main_loop())
        metrics_server = await self._start_metrics_server()
        if self.metrics is not None:
            self.metrics.start()
        if self.drift is not None:
            self.drift.start()
        grpc_address = f"{settings.grpc.host}:{self.grpc_port}" if grpc_server else "off"
        log.info(
            "inferd serving: REST on %s:%s, gRPC on %s%s",
            settings.http.host,
            self.http_port,
            grpc_address,
            " (TLS)" if self.security.tls else "",
        )
        await self._serving()

        await self._stop.wait()
        log.info("stopping: draining in-flight requests")
        self.dataplane.start_draining()
        # Generative models refuse new sequences now; their running streams drain with the front-ends.
        generative.stop_accepting(m.runtime for e in self.repository.entries() for m in e.versions.values())
        http_server.should_exit = True
        await http_loop
        # Both front-ends stop accepting at once and finish what they have already accepted.
        stopping = [http_server.shutdown(sockets=[http_socket])]
        if grpc_server:
            stopping.append(grpc_server.stop(settings.drain_timeout_s))
        await asyncio.gather(*stopping)
        if metrics_server is not None:
            await metrics_server.stop()
        await self.close_components()
        http_socket.close()
        log.info("stopped")

    def watch_repository(self) -> None:
        """Poll the repository (poll mode) and evaluate running rollouts, until ``close_components``."""
        lifecycle = self.settings.lifecycle
        poll_interval = lifecycle.poll_interval_s if lifecycle.model_control == "poll" else None
        self._watcher = asyncio.create_task(
            self.repository.watch(poll_interval, lifecycle.rollout_check_interval_s)
        )

    async def close_components(self) -> None:
        """Everything behind the front-ends, once they have stopped: the repository watcher, batchers
        and models, background monitors, exporters and connections (also a Ray replica's shutdown)."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self.dataplane.close()
        if self.metrics is not None:
            await self.metrics.stop()
        if self.drift is not None:
            await self.drift.stop()
        await self.repository.close()
        if self.tracing is not None:
            self.tracing.shutdown()  # flushes spans still waiting for the exporter
        if self.cache is not None:
            await self.cache.close()
        await self.security.close()

    async def _serving(self) -> None:
        """Called once both front-ends accept requests."""
        if self.settings.port_file:
            _write_port_file(self.settings.port_file, self.http_port, self.grpc_port, self.metrics_port)

    def _listen_first(self) -> socket.socket:
        """Bind REST and check that the gRPC and metrics ports are free before any model loads, so a
        port in use fails at once, in one line naming the flag (ListenError)."""
        settings = self.settings
        checks = [(settings.grpc.host, settings.grpc.port, "--grpc-port")] if settings.grpc.enabled else []
        if self.metrics is not None and settings.metrics.port is not None:
            checks.append((settings.http.host, settings.metrics.port, "--metrics-port"))
        http_socket = _bind(settings.http.host, settings.http.port, "--http-port")
        try:
            for host, port, flag in checks:
                if port != 0:
                    _bind(host, port, flag).close()
        except ListenError:
            http_socket.close()
            raise
        return http_socket

    def pages(self) -> dict[str, Page]:
        """GET pages served beside the V2 API on the REST port."""
        pages: dict[str, Page] = {}
        if self.metrics is not None:
            pages["/metrics"] = self.metrics.exposition
            if self.settings.metrics.dashboard:
                pages.update(dashboard_pages(self.repository))
        return pages

    async def _start_metrics_server(self) -> _PagesServer | None:
        port = self.settings.metrics.port
        if self.metrics is None or port is None:
            return None
        server = _PagesServer({"/metrics": self.metrics.exposition}, self.connection_limits)
        self.metrics_port = await server.start(self.settings.http.host, port)
        log.info("metrics on %s:%s/metrics", self.settings.http.host, self.metrics_port)
        return server


class _PagesServer:
    """A second uvicorn listener on the same event loop, serving only pages (--metrics-port)."""

    def __init__(self, pages: dict[str, Page], limits: ConnectionLimits) -> None:
        self._config = uvicorn.Config(
            PagesApp(pages),
            loop="none",
            http=bounded_protocol(limits),
            lifespan="off",
            access_log=False,
            log_config=None,
        )
        self._server = uvicorn.Server(self._config)
        self._socket: socket.socket | None = None
        self._loop: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> int:
        self._socket = _bind(host, port, "--metrics-port")
        self._config.load()
        self._server.lifespan = self._config.lifespan_class(self._config)
        await self._server.startup(sockets=[self._socket])
        self._loop = asyncio.create_task(self._server.main_loop())
        bound: int = self._socket.getsockname()[1]
        return bound

    async def stop(self) -> None:
        assert self._socket is not None and self._loop is not None
        self._server.should_exit = True
        await self._loop
        await self._server.shutdown(sockets=[self._socket])
        self._socket.close()


def _tracing(settings: Settings) -> Tracing | None:
    if not settings.tracing.enabled:
        return None
    try:
        from inferd.tracing.tracer import Tracing
    except ImportError as exc:
        raise RuntimeError(
            f"tracing is on but OpenTelemetry is not installed ({exc}): pip install 'inferd[tracing]'"
        ) from None
    return Tracing.from_environment()


# Open files kept out of the connection caps: model files, logs, Redis, the metrics listener, threads.
_RESERVED_FILES = 256


def _connection_limits(settings: Settings) -> ConnectionLimits:
    """The configured limits, with the connection cap lowered so that the REST and gRPC listeners
    together stay inside the open-file limit: past it, accept fails and new clients are reset."""
    wanted = settings.connections
    cap = wanted.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and cap > (fitting := max(1, (soft - _RESERVED_FILES) // 2)):
        # Worth a warning only when the operator asked for more; the default is fitted silently.
        asked = "max_connections" in wanted.model_fields_set
        log.log(
            logging.WARNING if asked else logging.DEBUG,
            "max connections per listener lowered from %d to %d to fit the open-file limit of %d (ulimit -n)",
            cap,
            fitting,
            soft,
        )
        cap = fitting
    return ConnectionLimits(wanted.max_header_bytes, wanted.max_headers, wanted.header_timeout_s, cap)


def _drift_monitor(settings: Settings, root: Path) -> DriftMonitor | None:
    drift = settings.drift
    if not drift.enabled or not root.is_dir():
        return None
    config = DriftConfig(
        sample_every=drift.sample_every,
        window_rows=drift.window_rows,
        interval_s=drift.interval_s,
        psi_threshold=drift.psi_threshold,
        ks_threshold=drift.ks_threshold,
        min_rows=drift.min_rows,
    )
    return DriftMonitor.from_repository(root, config)


def _ssl_factory(tls: TlsFiles | None) -> Callable[..., ssl.SSLContext] | None:
    """uvicorn's hook for our own context (TLS 1.2+, client CA for mTLS), or None for plain HTTP."""
    if tls is None:
        return None

    def factory(config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return tls.ssl_context()

    return factory


class ListenError(OSError):
    """A port cannot be listened on; the message names it and the flag that changes it."""


def _bind(host: str, port: int, flag: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(f"port {port} is in use: pass {flag}") from None
        raise ListenError(f"cannot listen on {host}:{port} ({exc.strerror}): see --host and {flag}") from None
    sock.set_inheritable(True)
    return sock


def _write_port_file(
    path: Path, http_port: int | None, grpc_port: int | None, metrics_port: int | None = None
) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps({"http": http_port, "grpc": grpc_port, "metrics": metrics_port}))
    temporary.replace(path)  # atomic: readers never see a half-written file


def _freeze_startup_heap() -> None:
    """Move everything alive after start-up (modules, sessions, configs) out of the collector's reach.

    Without it every full collection walks that heap while serving: at concurrency 64 the pauses set
    p99 at ~45 ms against ~10 ms with it, and cost ~20% of throughput (docs/performance.md).
    """
    gc.collect()
    gc.freeze()
