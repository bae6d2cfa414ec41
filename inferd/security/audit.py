"""Append-only JSON-lines audit log: who called what, when, from where, and the outcome.

``record`` only appends a tuple to a list; a background task turns the list into lines and writes
them in a worker thread, so requests never wait on the disk. Tensor data is never recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from inferd.periodic import Periodic

if TYPE_CHECKING:
    from inferd.security.gate import Access

log = logging.getLogger(__name__)

_FLUSH_INTERVAL_S = 0.2
# Records held in memory at most, should the disk stall; past it new ones are counted and dropped.
_MAX_PENDING = 100_000

_Record = tuple[float, str, str | None, str, "Access", str, int | str, int | None]


class AuditLog:
    def __init__(self, path: Path, flush_interval_s: float = _FLUSH_INTERVAL_S) -> None:
        self.path = path
        self._pending: list[_Record] = []
        self._flushing = Periodic(self.flush, flush_interval_s, f"writing the audit log {path}")
        self._file = path.open("ab")  # fails at start-up, not at the first request, if not writable
        self.dropped = 0

    def record(
        self,
        protocol: str,
        key_id: str | None,
        client: str,
        access: Access,
        call: str,
        status: int | str,
        tokens: int | None = None,
    ) -> None:
        """``tokens``: on the record of a finished generation, the tokens it was charged."""
        if len(self._pending) >= _MAX_PENDING:
            self.dropped += 1
            return
        self._pending.append((time.time(), protocol, key_id, client, access, call, status, tokens))

    def start(self) -> None:
        self._flushing.start()

    async def flush(self) -> None:
        if not self._pending:
            return
        records, self._pending = self._pending, []
        await asyncio.to_thread(self._write, records)

    def _write(self, records: list[_Record]) -> None:
        lines = b"".join(
            orjson.dumps(_as_dict(record), option=orjson.OPT_APPEND_NEWLINE) for record in records
        )
        self._file.write(lines)
        self._file.flush()

    async def close(self) -> None:
        await self._flushing.stop()
        await self.flush()
        if self.dropped:
            log.error("audit log: %d records dropped because the disk did not keep up", self.dropped)
        self._file.close()


def _as_dict(record: _Record) -> dict[str, Any]:
    timestamp, protocol, key_id, client, access, call, status, tokens = record
    document = {
        "time": datetime.fromtimestamp(timestamp, UTC),  # orjson writes RFC 3339, in C
        "key_id": key_id,
        "client": client,
        "protocol": protocol,
        "call": call,
        "api": access.api.value if access.api else None,
        "model": access.model,
        "version": access.version,
        "status": status,
    }
    if tokens is not None:
        document["tokens"] = tokens
    return document
