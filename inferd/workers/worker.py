"""One worker process of ``inferd serve --workers N``: a whole inferd Server (its own models, batchers
and event loop) on the REST socket the supervisor bound and handed down, and on the shared gRPC port
(SO_REUSEPORT). Started by the supervisor as ``python -m inferd.workers.worker RUNDIR INDEX FD``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

import orjson

from inferd.app import Server
from inferd.cores import set_worker_count
from inferd.errors import InferdError, InvalidRequest, ModelLoadError
from inferd.http.pages import Page
from inferd.logging_setup import FIELDS, configure_logging
from inferd.metrics.registry import CONTENT_TYPE
from inferd.settings import Settings
from inferd.workers import wire
from inferd.workers.cluster import ClusterDataPlane, SupervisorLink
from inferd.workers.wire import SETTINGS_FILE, SUPERVISOR_SOCKET, control_socket

log = logging.getLogger("inferd.workers.worker")  # also when run as __main__


class WorkerServer(Server):
    dataplane_class = ClusterDataPlane
    grpc_reuse_port = True

    def __init__(self, settings: Settings, rundir: Path, index: int, http_fd: int) -> None:
        super().__init__(settings)
        self.index = index
        self._rundir = rundir
        self._http_fd = http_fd
        self._supervisor = str(rundir / SUPERVISOR_SOCKET)
        self._cluster: ClusterDataPlane = self.dataplane  # type: ignore[assignment]
        # A load may take the load timeout, then its warm-up; the supervisor answers after every worker.
        self._cluster.control.link = SupervisorLink(
            self._supervisor, settings.lifecycle.load_timeout_s * 2 + 30
        )
        # Control calls apply one at a time, and never before the journal replayed at start.
        self._apply_lock = asyncio.Lock()
        self._hold: asyncio.Task[None] | None = None
        self._control: asyncio.Server | None = None

    def _listen_first(self) -> socket.socket:
        return socket.socket(fileno=self._http_fd)

    async def load_models_async(self) -> None:
        self._control = await wire.serve(str(control_socket(self._rundir, self.index)), self._handle)
        await super().load_models_async()
        await self._join()

    async def _join(self) -> None:
        """Register with the supervisor and replay the control calls made before this worker started
        (a restarted worker loads what the load API loaded since); from then on, every call reaches it."""
        async with self._apply_lock:
            reader, writer = await asyncio.open_unix_connection(self._supervisor, limit=wire.LINE_LIMIT)
            hello = {"op": "hello", "index": self.index, "pid": os.getpid()}
            writer.write(orjson.dumps(hello) + b"\n")
            answer = orjson.loads(await reader.readline())
            for call in answer["result"]["journal"]:
                try:
                    await self._cluster.control.apply(call["call"], call)
                except InferdError as exc:  # serve on (not ready, if the model is missing): no crash loop
                    log.error(
                        "worker %d: replaying %s %s failed: %s", self.index, call["call"], call["name"], exc
                    )
        self._hold = asyncio.create_task(self._hold_connection(reader, writer))

    async def _hold_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The connection stays open while the supervisor lives; when it dies, this worker stops."""
        with contextlib.suppress(ConnectionError):
            await reader.read()
        log.warning("worker %d: the supervisor went away; stopping", self.index)
        writer.close()
        self.request_stop()

    async def _serving(self) -> None:
        log.info("worker %d (pid %d) serving", self.index, os.getpid())
        await self._cluster.control._link().ask("serving", index=self.index)

    def pages(self) -> dict[str, Page]:
        pages = super().pages()
        link = self._cluster.control._link()

        async def metrics() -> tuple[bytes, bytes]:
            return CONTENT_TYPE.encode(), str(await link.ask("metrics")).encode()

        async def snapshot() -> tuple[bytes, bytes]:
            return b"application/json", orjson.dumps(await link.ask("snapshot"))

        async def workers() -> tuple[bytes, bytes]:
            return b"application/json", orjson.dumps(await link.ask("workers"))

        if "/metrics" in pages:
            pages["/metrics"] = metrics
        if "/dashboard/data" in pages:
            pages["/dashboard/data"] = snapshot
        pages["/workers"] = workers
        return pages

    async def _handle(self, request: dict[str, Any]) -> Any:
        """This worker's own part, asked for by the supervisor."""
        op = request.get("op")
        dp = self._cluster
        if op == "apply":
            async with self._apply_lock:
                return await dp.control.apply(str(request["call"]), request)
        if op == "ready":
            return dp.ready()
        if op == "stats":
            return dp.control.model_statistics(request.get("name"), request.get("version"))
        if op == "metrics":
            return self.metrics.exposition()[1].decode() if self.metrics is not None else ""
        if op == "snapshot":
            from inferd.dashboard.snapshot import snapshot

            return snapshot(self.repository)
        if op == "info":
            served = [m for e in self.repository.entries() for m in e.served.values()]
            return {
                "index": self.index,
                "pid": os.getpid(),
                "ready": dp.ready(),
                # This worker's own share: which worker served what (the /workers page).
                "models": sorted({m.name for m in served}),
                "requests": sum(m.stats.success.count + m.stats.fail.count for m in served),
                "success": {f"{m.name}/{m.version}": m.stats.success.count for m in served},
            }
        raise InvalidRequest(f"unknown worker request {op!r}")

    async def serve(self) -> None:
        try:
            await super().serve()
        finally:
            if self._hold is not None:
                self._hold.cancel()
            if self._control is not None:
                self._control.close()


class _WorkerField(logging.Filter):
    def __init__(self, index: int) -> None:
        super().__init__()
        self._index = index

    def filter(self, record: logging.LogRecord) -> bool:
        fields = getattr(record, FIELDS, None)
        setattr(record, FIELDS, {"worker": self._index, **(fields if isinstance(fields, dict) else {})})
        return True


def _tag_log_lines(index: int, log_format: str) -> None:
    """Every line this worker logs says which worker wrote it: a "worker" field in JSON, after the
    level in text."""
    for handler in logging.getLogger().handlers:
        if log_format == "json":
            handler.addFilter(_WorkerField(index))
        else:
            handler.setFormatter(
                logging.Formatter(f"%(asctime)s %(levelname)s [worker {index}] %(name)s: %(message)s")
            )


def main(argv: list[str]) -> int:
    rundir, index, http_fd = Path(argv[0]), int(argv[1]), int(argv[2])
    document = orjson.loads((rundir / SETTINGS_FILE).read_bytes())
    settings = Settings(**document["settings"])
    set_worker_count(int(document["workers"]))
    configure_logging(settings.log_level, settings.logs.format)
    _tag_log_lines(index, settings.logs.format)
    server = WorkerServer(settings, rundir, index, http_fd)
    try:
        import uvloop

        uvloop.run(server.serve())
    except (ModelLoadError, FileNotFoundError) as exc:  # one line, as `inferd serve` says it
        print(f"inferd: worker {index}: cannot load the model repository: {exc}", file=sys.stderr)
        return 1
    except Exception:
        log.exception("worker %d failed", index)
        return 1
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    from inferd.repository.deadline import abandoned_loads
    from inferd.scheduler.worker import stuck_threads

    if abandoned_loads() or stuck_threads():  # as inferd.cli._exit: never tear ONNX Runtime down under them
        logging.shutdown()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
