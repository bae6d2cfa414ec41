"""Run an inferd ``Server`` on its own event loop in a thread of the test process.

For tests that need what only the process itself can give (an in-memory span exporter, the server
object's state); the rest start a real process with ``serverctl.start_server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from inferd.app import Server

START_TIMEOUT_S = 60


@dataclass(frozen=True)
class ServingThread:
    http: str  # host:port of REST
    grpc: str  # host:port of gRPC
    request_stop: Callable[[], None]  # begin the graceful stop (from any thread)


@contextlib.contextmanager
def serve_in_thread(server: Server, port_file: Path) -> Iterator[ServingThread]:
    """Serve ``server`` (its settings write ``port_file``) until the block ends, then stop it cleanly."""
    loops: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        loops.append(asyncio.get_running_loop())
        await server.serve()

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not port_file.exists():
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    ports = json.loads(port_file.read_text())

    def request_stop() -> None:
        loops[0].call_soon_threadsafe(server.request_stop)

    try:
        yield ServingThread(f"127.0.0.1:{ports['http']}", f"127.0.0.1:{ports['grpc']}", request_stop)
    finally:
        request_stop()
        thread.join(timeout=START_TIMEOUT_S)
        assert not thread.is_alive(), "server did not stop"
