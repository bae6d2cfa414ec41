"""What the batcher tells a traced request; implemented by inferd/tracing (OpenTelemetry).

Times are ``time.perf_counter_ns()`` values, the batcher's clock; the implementation converts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class RequestTrace(Protocol):
    def queued(self, start_ns: int, end_ns: int) -> None:
        """The request waited in the queue from ``start_ns`` to ``end_ns``."""
        ...

    def executed(self, batch: Sequence[RequestTrace], start_ns: int, end_ns: int, rows: int) -> None:
        """An execution of ``rows`` rows ran for this request and every traced request in ``batch``."""
        ...
