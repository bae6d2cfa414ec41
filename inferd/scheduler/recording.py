"""What one execution leaves behind: the model's statistics, the estimates that steer later
executions (lone requests, adaptive batching) and the trace span. Both the worker path
(inferd/scheduler/instances.py) and the inline path (inferd/scheduler/inline.py) record here."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

from inferd.scheduler.adaptive import AdaptiveBatching
from inferd.scheduler.execution import Executed
from inferd.scheduler.lone import LoneDecision
from inferd.scheduler.stats import ModelStats
from inferd.scheduler.tracehook import RequestTrace

# ExecutionRecorder.record, as the execution paths hold it.
Record = Callable[[Executed, int, int, int, list[RequestTrace], tuple[Hashable, int] | None], None]


class ExecutionRecorder:
    __slots__ = ("_adaptive", "_lone", "_stats")

    def __init__(self, stats: ModelStats, lone: LoneDecision, adaptive: AdaptiveBatching | None) -> None:
        self._stats = stats
        self._lone = lone
        self._adaptive = adaptive

    def record(
        self,
        executed: Executed,
        rows: int,
        requests: int,
        launched_ns: int,
        traced: list[RequestTrace],
        lone: tuple[Hashable, int] | None,
    ) -> None:
        """Statistics and the trace span of one execution; ``lone``: its (group, rows) if it ran alone."""
        if lone is not None and self._lone.inlines and executed.infer_ns:
            self._lone.record_run(lone, executed.input_ns + executed.infer_ns + executed.output_ns)
        self._stats.record_execution(rows, requests, executed.input_ns, executed.infer_ns, executed.output_ns)
        if self._adaptive is not None and executed.infer_ns:
            self._adaptive.executed(rows, executed.input_ns + executed.infer_ns + executed.output_ns)
        if traced:
            # One execution span, parented by the first traced request and linked to all of them.
            traced[0].executed(traced, launched_ns, time.perf_counter_ns(), rows)
