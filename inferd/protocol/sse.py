"""Server-sent events (text/event-stream): one ``data:`` line per JSON document, a blank line after."""

from __future__ import annotations

from typing import Any

import orjson

CONTENT_TYPE = b"text/event-stream; charset=utf-8"
# OpenAI's streams end with this sentinel event.
DONE = b"data: [DONE]\n\n"


def event(document: Any) -> bytes:
    # orjson never emits a raw newline (it escapes them in strings), so one data line is always whole.
    return b"data: " + orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n\n"
