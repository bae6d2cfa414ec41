"""Logging configuration, applied by the CLI only (importing inferd configures nothing).

JSON format: one object per line with ``ts``, ``level``, ``logger``, ``message``, then any structured
fields a caller passed as ``extra={"fields": {...}}`` (the access log's request id, model, status,
latency). Tensor data is never logged.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

FIELDS = "fields"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            document.update(fields)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        # default=str: a field orjson cannot encode is logged as text rather than losing the line.
        return orjson.dumps(document, default=str).decode()


def text_formatter() -> logging.Formatter:
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


def configure_logging(level: str, log_format: str = "json") -> None:
    """Send every inferd (and library) log record to stderr, one line per event."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(text_formatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn configures its own loggers unless told not to (app.py passes log_config=None);
    # its records then propagate here.
