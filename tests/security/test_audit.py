"""The audit log: one JSON line per record, appended, written off the request path, no extras."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from inferd.security.apis import Api
from inferd.security.audit import AuditLog
from inferd.security.gate import Access


def test_records_become_json_lines_appended_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"earlier": true}\n')

    async def scenario() -> None:
        audit = AuditLog(path, flush_interval_s=0.01)
        audit.start()
        audit.record("http", "alice", "10.0.0.1", Access(Api.INFERENCE, "m", "2"), "POST /x", 200)
        audit.record("grpc", None, "::1", Access(None), "/svc/Unknown", "UNAUTHENTICATED")
        await audit.close()

    asyncio.run(scenario())
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"earlier": True}
    first, second = lines[1:]
    assert set(first) == {"time", "key_id", "client", "protocol", "call", "api", "model", "version", "status"}
    assert first["key_id"] == "alice" and first["api"] == "inference" and first["model"] == "m"
    assert first["version"] == "2" and first["status"] == 200 and first["time"].endswith("+00:00")
    assert second["key_id"] is None and second["api"] is None and second["status"] == "UNAUTHENTICATED"


def test_the_background_task_flushes_without_close(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"

    async def scenario() -> int:
        audit = AuditLog(path, flush_interval_s=0.01)
        audit.start()
        audit.record("http", "k", "c", Access(Api.HEALTH), "GET /v2/health/live", 200)
        for _ in range(500):  # bounded poll, no fixed sleep
            if path.read_text():
                break
            await asyncio.sleep(0.01)
        written = len(path.read_text().splitlines())
        await audit.close()
        return written

    assert asyncio.run(scenario()) == 1
