"""The supervisor of ``inferd serve --workers N``: binds the ports, starts N worker processes, restarts
one that dies, coordinates the control plane over unix sockets, and drains them all on SIGTERM.

It serves no request itself. The REST socket is bound and listening here and handed to every worker
(one accept queue: a connection waiting there survives the death of any one worker); gRPC cannot take
a socket, so each worker binds the port with SO_REUSEPORT and the kernel spreads connections over them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import Metric

from inferd.errors import Unavailable
from inferd.settings import Settings
from inferd.workers import wire
from inferd.workers.merge import merge_documents, merge_metrics
from inferd.workers.wire import SETTINGS_FILE, SUPERVISOR_SOCKET, control_socket

log = logging.getLogger(__name__)

# A worker that dies sooner than this after starting waits before its restart, longer each time in a
# row (a crash loop must not spin the CPU); one that ran longer is restarted at once.
_STABLE_S = 10.0
_MAX_BACKOFF_S = 30.0
# Reads fanned out to the workers (readiness, statistics, metrics).
_READ_TIMEOUT_S = 10.0
# After the drain timeout, how long workers get to close before they are killed.
_EXIT_GRACE_S = 15.0
# Calls a restarted worker replays so that it serves what the others serve.
_JOURNALED = ("load", "unload")


class ListenError(OSError):
    """A port cannot be listened on; the message names it and the flag that changes it."""


class StartupError(Exception):
    """A worker exited before every worker was serving (a model that cannot load, a bad key file)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"a worker exited with status {code} while starting")
        self.code = code


class Supervisor:
    def __init__(self, settings: Settings, workers: int) -> None:
        self.settings = settings
        self.workers = workers
        self.restarts = 0
        self._rundir = Path()  # made once the ports are bound
        self._pids: dict[int, int] = {}
        self._joined: set[int] = set()
        self._serving: set[int] = set()
        self._announced = False
        self._journal: dict[str, dict[str, Any]] = {}
        self._control_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._failed: StartupError | None = None
        self._processes: dict[int, asyncio.subprocess.Process] = {}

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the exit status (0 once every worker drained and exited)."""
        http = _listen(self.settings.http.host, self.settings.http.port)
        grpc_hold = None
        settings = self.settings
        http_port = http.getsockname()[1]
        grpc_port = None
        if settings.grpc.enabled:
            grpc_hold = _reserve(settings.grpc.host, settings.grpc.port)
            grpc_port = grpc_hold.getsockname()[1]
        self._rundir = Path(tempfile.mkdtemp(prefix="inferd-workers-"))
        worker_settings = settings.model_copy(
            update={
                "http": settings.http.model_copy(update={"port": http_port}),
                "grpc": settings.grpc.model_copy(update={"port": grpc_port or 0}),
                "port_file": None,
            }
        )
        document = {"workers": self.workers, "settings": worker_settings.model_dump(mode="json")}
        settings_file = self._rundir / SETTINGS_FILE
        settings_file.touch(mode=0o600)  # may hold inline API keys
        settings_file.write_bytes(orjson.dumps(document))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        if settings.security.api_keys_file is not None:  # as one process: SIGHUP reloads the key file
            loop.add_signal_handler(signal.SIGHUP, self._forward, signal.SIGHUP)
        control = await wire.serve(str(self._rundir / SUPERVISOR_SOCKET), self._handle)
        log.info("starting %d workers (REST port %s, gRPC port %s)", self.workers, http_port, grpc_port)
        keepers = [asyncio.create_task(self._keep(i, http.fileno())) for i in range(self.workers)]
        await self._stopping.wait()
        log.info("stopping: draining %d workers", len(self._processes))
        http.close()  # the workers' copies keep the socket open until each has drained
        codes = await self._stop_all()
        for keeper in keepers:
            keeper.cancel()
        await asyncio.gather(*keepers, return_exceptions=True)
        control.close()
        if grpc_hold is not None:
            grpc_hold.close()
        shutil.rmtree(self._rundir, ignore_errors=True)
        if self._failed is not None:
            return self._failed.code if self._failed.code > 0 else 1
        log.info("stopped (%d worker restarts)", self.restarts)
        return 0 if all(code == 0 for code in codes) else 1

    async def _keep(self, index: int, http_fd: int) -> None:
        """Run worker ``index`` until the server stops, restarting it whenever it dies."""
        quick_deaths = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "inferd.workers.worker",
                str(self._rundir),
                str(index),
                str(http_fd),
                pass_fds=(http_fd,),
            )
            self._processes[index] = process
            self._pids[index] = process.pid
            code = await process.wait()
            self._processes.pop(index, None)
            self._joined.discard(index)
            self._serving.discard(index)
            if self._stopping.is_set():
                return
            if not self._announced:
                log.error("worker %d (pid %d) exited with status %s while starting", index, process.pid, code)
                self._failed = StartupError(code)
                self._stopping.set()
                return
            self.restarts += 1
            ran_s = time.monotonic() - started
            quick_deaths = quick_deaths + 1 if ran_s < _STABLE_S else 0
            delay = min(_MAX_BACKOFF_S, 0.5 * 2 ** (quick_deaths - 1)) if quick_deaths else 0.0
            log.error(
                "worker %d (pid %d) died (%s) after %.1f s; restarting it%s (%d restarts; the others serve)",
                index,
                process.pid,
                _describe(code),
                ran_s,
                f" in {delay:.1f} s" if delay else "",
                self.restarts,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    def _forward(self, sig: signal.Signals) -> None:
        for process in self._processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)

    async def _stop_all(self) -> list[int]:
        processes = list(self._processes.values())
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = self.settings.drain_timeout_s + _EXIT_GRACE_S
        codes = []
        for process in processes:
            try:
                codes.append(await asyncio.wait_for(process.wait(), deadline))
            except TimeoutError:
                log.error(
                    "worker pid %d did not exit %.0f s after SIGTERM: killing it", process.pid, deadline
                )
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                codes.append(await process.wait())
        return codes

    # The control channel --------------------------------------------------------------------------
    async def _handle(self, request: dict[str, Any]) -> Any:
        op = request.get("op")
        if op == "hello":
            async with self._control_lock:  # from here on every control call reaches this worker
                self._joined.add(int(request["index"]))
                return {"journal": list(self._journal.values())}
        if op == "serving":
            self._serving.add(int(request["index"]))
            if len(self._serving) == self.workers and not self._announced:
                self._announce()
            return None
        if op == "control":
            return await self._control(request)
        if op == "ready":
            if len(self._serving) < self.workers:
                return False
            return all(r is True for r in await self._each("ready"))
        if op == "stats":
            return merge_documents(
                await self._read("stats", name=request.get("name"), version=request.get("version"))
            )
        if op == "snapshot":
            return merge_documents(await self._read("snapshot"))
        if op == "metrics":
            texts = await self._read("metrics")
            return merge_metrics(texts, self._own_metrics()).decode()
        if op == "workers":
            infos = [r for r in await self._each("info") if isinstance(r, dict)]
            return {
                "workers": self.workers,
                "restarts": self.restarts,
                "serving": sorted(infos, key=lambda i: i["index"]),
            }
        raise Unavailable(f"unknown supervisor request {op!r}")

    async def _each(self, op: str, timeout_s: float = _READ_TIMEOUT_S, **args: Any) -> list[Any]:
        """Ask every joined worker; each answer, or the exception it raised."""
        sockets = [str(control_socket(self._rundir, i)) for i in sorted(self._joined)]
        calls = [wire.call(path, op, timeout_s, **args) for path in sockets]
        return list(await asyncio.gather(*calls, return_exceptions=True))

    async def _read(self, op: str, **args: Any) -> list[Any]:
        """Every worker's answer; a worker's own error (NotFound for an unknown model) is raised; a
        worker that went away meanwhile is left out of the sum."""
        answers = await self._each(op, **args)
        for answer in answers:
            if isinstance(answer, wire.RemoteError):
                raise answer
        found = [a for a in answers if not isinstance(a, BaseException)]
        if not found:
            raise Unavailable("no worker is serving")
        return found

    async def _control(self, request: dict[str, Any]) -> Any:
        """Apply one repository call on every worker, one call at a time; answer after all of them."""
        call = str(request["call"])
        async with self._control_lock:
            timeout = self.settings.lifecycle.load_timeout_s * 2 + 15
            answers = await self._each("apply", timeout, **{k: v for k, v in request.items() if k != "op"})
            errors = [a for a in answers if isinstance(a, wire.RemoteError)]
            if errors:
                raise errors[0]
            done = [a for a in answers if not isinstance(a, BaseException)]
            if len(done) < len(answers):
                # A worker died during the call: its replacement replays the journal.
                log.warning(
                    "%s %s: %d worker(s) went away during the call",
                    call,
                    request.get("name"),
                    len(answers) - len(done),
                )
            if not done:
                raise Unavailable("no worker is serving")
            if call in _JOURNALED:
                name = str(request["name"])
                self._journal.pop(name, None)
                self._journal[name] = {k: v for k, v in request.items() if k != "op"}
            return done[0]

    def _own_metrics(self) -> list[Metric]:
        workers = Metric("inferd_workers", "Worker processes serving (inferd serve --workers)", "gauge")
        workers.add_sample("inferd_workers", {}, float(len(self._serving)))
        restarts = Metric("inferd_worker_restarts", "Worker processes restarted after they died", "counter")
        restarts.add_sample("inferd_worker_restarts_total", {}, float(self.restarts))
        return [workers, restarts]

    def _announce(self) -> None:
        self._announced = True
        port_file = self.settings.port_file
        log.info("inferd serving with %d workers (pids %s)", self.workers, sorted(self._pids.values()))
        if port_file is None:
            return
        document = orjson.loads((self._rundir / SETTINGS_FILE).read_bytes())["settings"]
        grpc = document["grpc"]["port"] if document["grpc"]["enabled"] else None
        temporary = port_file.with_suffix(port_file.suffix + ".tmp")
        temporary.write_bytes(orjson.dumps({"http": document["http"]["port"], "grpc": grpc, "metrics": None}))
        temporary.replace(port_file)


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ListenError(f"port {port} is in use: pass --http-port ({exc.strerror})") from None
    sock.listen(4096)
    sock.set_inheritable(True)
    return sock


def _reserve(host: str, port: int) -> socket.socket:
    """Hold the gRPC port (bound, not listening: the kernel sends it no connection) with SO_REUSEPORT,
    so every worker can bind it too and port 0 resolves to one port for all of them."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ListenError(f"port {port} is in use: pass --grpc-port ({exc.strerror})") from None
    return sock


def run(settings: Settings, workers: int) -> int:
    """The process's exit status."""
    return asyncio.run(Supervisor(settings, workers).run())
