from __future__ import annotations

import json
import logging

from inferd.logging_setup import JsonFormatter


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("inferd.x", logging.WARNING, __file__, 1, "model %s failed", ("m",), None)
    for key, item in extra.items():
        setattr(record, key, item)
    return record


def test_a_record_is_one_json_line_with_its_fields() -> None:
    line = JsonFormatter().format(_record(fields={"model": "m", "latency_ms": 1.5}))
    assert "\n" not in line
    document = json.loads(line)
    assert document["level"] == "warning"
    assert document["logger"] == "inferd.x"
    assert document["message"] == "model m failed"
    assert document["model"] == "m" and document["latency_ms"] == 1.5
    assert document["ts"].endswith("+00:00")


def test_exceptions_stay_on_the_same_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_unencodable_fields_are_logged_as_text() -> None:
    document = json.loads(JsonFormatter().format(_record(fields={"path": object()})))
    assert document["path"].startswith("<object object")
