"""The local control channel between the supervisor and its workers: unix sockets in a private
directory, one JSON object per line each way, one answer per request.

An answer is ``{"ok": true, "result": ...}`` or ``{"ok": false, "kind": ..., "message": ...}``; the
caller raises the error as an InferdError of that kind, so a failed load on a worker reaches the
client with the status it would have had on a single process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from inferd.errors import ErrorKind, InferdError, Unavailable

log = logging.getLogger(__name__)

# Metrics text of many models, or a model configuration, fits in one line well below this.
LINE_LIMIT = 256 * 1024 * 1024

Handler = Callable[[dict[str, Any]], Awaitable[Any]]

# In the supervisor's private run directory (mode 0700).
SETTINGS_FILE = "settings.json"
SUPERVISOR_SOCKET = "supervisor.sock"


def control_socket(rundir: Path, index: int) -> Path:
    return rundir / f"worker-{index}.sock"


class RemoteError(InferdError):
    """An error raised on the other end of the channel, with its kind."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _answer_error(answer: dict[str, Any]) -> InferdError:
    try:
        kind = ErrorKind(answer.get("kind"))
    except ValueError:
        kind = ErrorKind.INTERNAL
    return RemoteError(kind, str(answer.get("message", "")))


async def call(path: str, op: str, timeout_s: float, **args: Any) -> Any:
    """Send one request to the server at ``path`` and return its result (or raise its error);
    Unavailable when nothing answers in ``timeout_s`` seconds or the peer goes away."""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_unix_connection(path, limit=LINE_LIMIT)
            try:
                writer.write(orjson.dumps({"op": op, **args}) + b"\n")
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
    except (OSError, TimeoutError) as exc:
        raise Unavailable(f"worker control channel: {op} failed ({exc or type(exc).__name__})") from None
    if not line:
        raise Unavailable(f"worker control channel: {op} got no answer (the process went away)")
    answer = orjson.loads(line)
    if answer.get("ok"):
        return answer.get("result")
    raise _answer_error(answer)


async def serve(path: str, handler: Handler) -> asyncio.Server:
    """Answer requests on the unix socket ``path`` with ``handler`` (requests on one connection are
    answered in order; connections run concurrently)."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(orjson.dumps(await _handle(handler, line)) + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    return await asyncio.start_unix_server(connection, path, limit=LINE_LIMIT)


async def _handle(handler: Handler, line: bytes) -> dict[str, Any]:
    try:
        request = orjson.loads(line)
        if not isinstance(request, dict):
            raise ValueError("a request must be a JSON object")
        return {"ok": True, "result": await handler(request)}
    except InferdError as exc:
        return {"ok": False, "kind": exc.kind.value, "message": exc.message}
    except Exception as exc:
        log.exception("worker control request failed")
        return {"ok": False, "kind": ErrorKind.INTERNAL.value, "message": f"{type(exc).__name__}: {exc}"}
