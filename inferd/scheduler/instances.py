"""The model's runtime instances: one worker thread each, which ones are free, and the execution
running on each. A batch the batcher formed is handed to a free instance here; its result comes back
to the loop with a single ``call_soon_threadsafe`` and answers the batch's requests.

An execution that outlives ``BatchPolicy.execution_timeout_ns`` fails its requests (504) and its
instance gets a new worker thread; the stuck thread is abandoned and its late result dropped (a
runtime that can interrupt an execution is told to: a worker process is killed and restarts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from inferd.errors import ExecutionTimeout, InferdError
from inferd.runtimes.base import Interruptible, Runtime
from inferd.scheduler.adaptive import AdaptiveBatching
from inferd.scheduler.execution import Executed, Executor, execution_error, outputs_wanted
from inferd.scheduler.lone import LoneDecision
from inferd.scheduler.queue import Pending
from inferd.scheduler.recording import Record
from inferd.scheduler.stats import ModelStats
from inferd.scheduler.tracehook import RequestTrace
from inferd.scheduler.worker import Worker

log = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class Run:
    """One execution on a worker; an instance's current run is the only one whose result counts."""

    batch: list[Pending]
    launched_ns: int
    traced: list[RequestTrace]
    timer: asyncio.TimerHandle | None = None


class Instances:
    """``free`` and ``running`` are read by the batcher as they are (its idle and load checks);
    only this class changes them. ``on_free``: called once an instance is free again."""

    def __init__(
        self,
        runtime: Runtime,
        executor: Executor,
        execution_timeout_ns: int,
        stats: ModelStats,
        lone: LoneDecision,
        adaptive: AdaptiveBatching | None,
        record: Record,
        name: str,
        on_free: Callable[[], None],
    ) -> None:
        self._runtime = runtime
        self._executor = executor
        self._timeout_ns = execution_timeout_ns
        self._stats = stats
        self._lone = lone
        self._adaptive = adaptive
        self._record = record
        self._name = name
        self._on_free = on_free
        self.free = list(range(runtime.instances))
        # The execution running on each busy instance: as many as are in flight.
        self.running: dict[int, Run] = {}
        self._workers = [self._new_worker(i) for i in range(runtime.instances)]
        self._loop: asyncio.AbstractEventLoop | None = None

    def _new_worker(self, instance: int) -> Worker[Executed]:
        return Worker(f"run-{self._name}-{instance}")

    def stop(self) -> None:
        """Release the worker threads (once nothing runs, or what runs was abandoned)."""
        for worker in self._workers:
            worker.stop()

    def launch(self, batch: list[Pending]) -> None:
        """Run ``batch`` on a free instance (the caller checked there is one)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        instance = self.free.pop()
        now = time.perf_counter_ns()
        record_queue = self._stats.record_queue
        traced: list[RequestTrace] = []
        for item in batch:
            record_queue(now - item.enqueued_ns)
            if item.expiry is not None:
                item.expiry.cancel()
                item.expiry = None
            if item.trace is not None:
                item.trace.queued(item.enqueued_ns, now)
                traced.append(item.trace)
        inputs = [item.inputs for item in batch]
        rows = [item.rows for item in batch]
        wanted = outputs_wanted(batch)
        parameters = batch[0].parameters  # the batch's group holds their key: all are equal
        run = Run(batch, now, traced)
        self.running[instance] = run
        timeout_ns = self._timeout_ns
        if timeout_ns:
            run.timer = loop.call_later(timeout_ns / 1e9, self._timed_out, instance, run)

        def finished(result: Executed | BaseException) -> None:
            # RuntimeError: the loop closed during shutdown; nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._complete, instance, run, result)

        self._workers[instance].submit(
            lambda: self._executor.execute(instance, inputs, rows, wanted, parameters), finished
        )

    def _timed_out(self, instance: int, run: Run) -> None:
        """The execution outlived the model's execution timeout: fail it, replace the instance's thread."""
        if self.running.get(instance) is not run:
            return
        self._stats.execution_timeouts += 1
        limit_s = self._timeout_ns / 1e9
        log.error(
            "model %s: execution on instance %d exceeded the %g s execution timeout; its %d requests "
            "fail and the instance gets a new thread (the stuck one is abandoned)",
            self._name,
            instance,
            limit_s,
            len(run.batch),
        )
        error = ExecutionTimeout(
            f"model '{self._name}' did not finish executing within its {limit_s:g} s execution "
            "timeout (execution_timeout_s)"
        )
        self.abandon(instance, run, error)
        self._on_free()

    def abandon(self, instance: int, run: Run, error: InferdError) -> None:
        """Give up on a running execution: its requests get ``error``; a later result is dropped."""
        del self.running[instance]
        if run.timer is not None:
            run.timer.cancel()
        if isinstance(self._runtime, Interruptible):
            # A worker process is killed (and restarted): the thread waiting on it returns at once.
            self._runtime.interrupt(instance)
        self._workers[instance].abandon()
        self._workers[instance] = self._new_worker(instance)
        self.free.append(instance)
        for item in run.batch:
            if not item.future.done():
                item.future.set_exception(error)

    def _complete(self, instance: int, run: Run, result: Executed | BaseException) -> None:
        if self.running.get(instance) is not run:
            log.warning("model %s: dropped the late result of an abandoned execution", self._name)
            return
        del self.running[instance]
        if run.timer is not None:
            run.timer.cancel()
        batch = run.batch
        self.free.append(instance)
        now = time.perf_counter_ns()
        if not self.running:
            self._lone.idle_since_ns = now
        if isinstance(result, Executed):
            # The hand-off's cost: launch to result on the loop, less the execution itself.
            ran_ns = result.input_ns + result.infer_ns + result.output_ns
            self._lone.record_hop(now - run.launched_ns - ran_ns)
        else:  # a bug in Executor.execute itself: fail the batch, keep serving
            log.error("model %s: execution crashed", self._name, exc_info=result)
            error = execution_error(self._name, result)
            result = Executed([error] * len(batch), 0, 0, 0)
        rows = sum(item.rows for item in batch)
        lone = (batch[0].group, rows) if len(batch) == 1 else None
        self._record(result, rows, len(batch), run.launched_ns, run.traced, lone)
        if self._adaptive is not None:
            self._adaptive.completed(time.perf_counter_ns(), [item.enqueued_ns for item in batch])
        for item, outcome in zip(batch, result.results, strict=True):
            if item.future.done():
                continue
            if isinstance(outcome, InferdError):
                item.future.set_exception(outcome)
            else:
                item.future.set_result(outcome)
        self._on_free()
