"""One structured line per inference request, when the access log is on (never tensor data)."""

from __future__ import annotations

import logging

log = logging.getLogger("inferd.access")


def log_request(request_id: str | None, model: str, version: str, status: str, latency_ns: int) -> None:
    log.info(
        "%s %s/%s %s",
        request_id or "-",
        model,
        version,
        status,
        extra={
            "fields": {
                "request_id": request_id,
                "model": model,
                "version": version,
                "status": status,
                "latency_ms": round(latency_ns / 1e6, 3),
            }
        },
    )
