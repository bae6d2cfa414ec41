"""W3C trace context from the wire, without importing OpenTelemetry (the front-ends use these)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_HEADERS = (b"traceparent", b"tracestate")
_KEYS = ("traceparent", "tracestate")


def carrier_from_headers(headers: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    """The trace context headers of an ASGI request (ASGI header names are lower-case)."""
    return {key.decode("latin-1"): value.decode("latin-1") for key, value in headers if key in _HEADERS}


def carrier_from_metadata(metadata: Sequence[Any] | None) -> dict[str, str]:
    """The trace context entries of gRPC invocation metadata."""
    return {
        item.key: item.value for item in metadata or () if item.key in _KEYS and isinstance(item.value, str)
    }
