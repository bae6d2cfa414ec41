"""Inline execution: one request run on the event-loop thread itself, skipping the two thread
wake-ups of a worker hand-off that dominate a fast model's latency. The batcher decides when
(inferd/scheduler/lone.py holds the rules); this runs it, records it, and keeps a crash inside it
from reaching the loop."""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable

from inferd.errors import InferdError
from inferd.runtimes.request_parameters import ModelParameters
from inferd.scheduler.execution import Executor, execution_error
from inferd.scheduler.lone import LoneDecision
from inferd.scheduler.queue import Outputs, Pending
from inferd.scheduler.recording import Record
from inferd.scheduler.stats import ModelStats
from inferd.scheduler.tracehook import RequestTrace

log = logging.getLogger(__name__)


class InlineRunner:
    """``free``: the model's free instances (inferd/scheduler/instances.py); an inline run borrows the
    last one, which no worker runs on meanwhile: the loop thread is busy with this run."""

    __slots__ = ("_executor", "_free", "_lone", "_name", "_record", "_stats")

    def __init__(
        self,
        executor: Executor,
        stats: ModelStats,
        lone: LoneDecision,
        record: Record,
        free: list[int],
        name: str,
    ) -> None:
        self._executor = executor
        self._stats = stats
        self._lone = lone
        self._record = record
        self._free = free
        self._name = name

    def answer(self, item: Pending) -> None:
        """A request that waited one loop turn alone: run it inline and settle its future."""
        if item.expiry is not None:
            item.expiry.cancel()
            item.expiry = None
        try:
            result = self.run(
                item.inputs,
                item.rows,
                item.group,
                item.trace,
                item.enqueued_ns,
                item.outputs,
                item.parameters,
            )
        except InferdError as exc:
            item.future.set_exception(exc)
        else:
            item.future.set_result(result)

    def run(
        self,
        inputs: Outputs,
        rows: int,
        group: Hashable,
        trace: RequestTrace | None,
        enqueued_ns: int,
        outputs: frozenset[str] | None,
        parameters: ModelParameters | None,
    ) -> Outputs:
        """Run one request on the loop thread: the model is idle and this shape is known to be fast.
        Raises only InferdError: the model's own, or one standing for a crash here."""
        try:
            now = time.perf_counter_ns()
            self._stats.record_queue(now - enqueued_ns)
            traced: list[RequestTrace] = []
            if trace is not None:
                trace.queued(enqueued_ns, now)
                traced.append(trace)
            executed = self._executor.execute(self._free[-1], [inputs], [rows], outputs, parameters)
            self._stats.inline_executions += 1
            self._record(executed, rows, 1, now, traced, (group, rows))
            self._lone.idle_since_ns = time.perf_counter_ns()
            result = executed.results[0]
        except InferdError:
            raise
        except Exception as exc:  # a bug, not the model's failure: answer the request, keep serving
            log.exception("model %s: inline execution crashed", self._name)
            raise execution_error(self._name, exc) from None
        if isinstance(result, InferdError):
            raise result
        return result
