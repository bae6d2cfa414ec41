"""One stateful model version's scheduler: Triton's sequence batcher, ``direct`` and ``oldest``.

A sequence is bound to a slot from its start to its end (or until it stays idle past
``max_sequence_idle_microseconds``); its steps run one at a time, in arrival order, each fed the
state the previous one left (implicit state) and the control inputs the model declares.
``direct``: a slot is one batch row of one instance, and an execution carries that instance's rows
(rows without a step are padding with READY false). ``oldest``: the oldest waiting steps of up to
``max_batch_size`` sequences run together on any free instance. Starts beyond the slots wait in a
bounded backlog, or are refused with 400.

All bookkeeping lives on the event loop thread; executions run on one worker thread per instance,
as in inferd/scheduler/batcher.py. ``close`` (a hot swap or unload) lets queued and running steps
finish within the drain timeout and then drops every live sequence: their next steps reach the new
version, which does not know them, and get a 400 saying so (docs/model-repository.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from inferd.errors import ExecutionError, ExecutionTimeout, InferdError, InvalidRequest, Unavailable
from inferd.runtimes.base import Interruptible, Runtime
from inferd.scheduler.policy import BatchPolicy
from inferd.scheduler.sequence_plan import SequencePlan
from inferd.scheduler.sequence_slots import SequenceSlots
from inferd.scheduler.sequences import Outputs, Row, Sequence, Step, feed, split_row, step_flags
from inferd.scheduler.stats import ModelStats
from inferd.scheduler.tracehook import RequestTrace
from inferd.scheduler.worker import Worker

log = logging.getLogger(__name__)

Results = list[tuple[Outputs, Outputs] | InferdError]


@dataclass(frozen=True, slots=True)
class _Executed:
    # Each row's (requested outputs, next state), or its error.
    results: Results
    input_ns: int
    infer_ns: int
    output_ns: int


class SequenceBatcher:
    def __init__(
        self, runtime: Runtime, plan: SequencePlan, policy: BatchPolicy, stats: ModelStats, name: str
    ) -> None:
        self._runtime = runtime
        self._plan = plan
        self._policy = policy
        self._stats = stats
        self._name = name
        self._workers = [self._new_worker(i) for i in range(runtime.instances)]
        self._free_instances = list(range(runtime.instances))
        self._slots = SequenceSlots(plan, name, self._schedule_dispatch)
        self._queued = 0
        self._running = 0
        # Each instance's running rows; a run no longer here (timed out, drain gave up) is dropped.
        self._in_flight: dict[int, list[Row]] = {}
        self._run_timers: dict[int, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatch_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()

    def _new_worker(self, instance: int) -> Worker[_Executed]:
        return Worker(f"seq-{self._name}-{instance}")

    @property
    def pending(self) -> int:
        return self._queued + self._running

    @property
    def live_sequences(self) -> int:
        return len(self._slots.live)

    async def infer(
        self,
        parameters: Mapping[str, Any],
        inputs: Outputs,
        rows: int,
        group: Hashable,
        trace: RequestTrace | None = None,
        outputs: frozenset[str] | None = None,
    ) -> Outputs:
        """Run one step of the sequence its parameters name; answers in that sequence's order."""
        if self._closing:
            raise Unavailable(f"model '{self._name}' is shutting down")
        flags = step_flags(self._name, parameters)
        if rows != 1:
            raise InvalidRequest(
                f"model '{self._name}': a request of sequence {flags.shown} must have batch size 1, "
                f"got {rows}"
            )
        limit = self._policy.max_queue_size
        if limit and self._queued >= limit:
            self._stats.rejected_queue_full += 1
            raise Unavailable(f"model '{self._name}': exceeds maximum queue size {limit}")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        sequence = self._slots.admit(flags)
        future: asyncio.Future[Outputs] = loop.create_future()
        step = Step(inputs, group, flags.start, flags.end, future, time.perf_counter_ns(), outputs, trace)
        sequence.steps.append(step)
        sequence.ended = flags.end
        self._queued += 1
        self._idle.clear()
        self._slots.touched(sequence)
        self._schedule_dispatch()
        try:
            return await future
        except asyncio.CancelledError:
            # The caller went away: a step not yet running never runs (its sequence keeps its state).
            if step in sequence.steps:
                sequence.steps.remove(step)
                self._queued -= 1
                self._stats.cancelled += 1
                self._slots.settle(sequence, loop)
                self._update_idle()
            raise

    # Dispatch -----------------------------------------------------------------------------------
    def _schedule_dispatch(self) -> None:
        if not self._dispatch_scheduled and self._loop is not None:
            self._dispatch_scheduled = True
            # One loop turn later: steps parsed in the same turn share an execution.
            self._loop.call_soon(self._dispatch)

    def _dispatch(self) -> None:
        self._dispatch_scheduled = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = time.perf_counter_ns()
        due_ns = 0
        for instance in sorted(self._free_instances):
            picked, wait_until = self._pick(instance, now)
            if picked is None:
                if wait_until:
                    due_ns = wait_until if not due_ns else min(due_ns, wait_until)
                continue
            rows, total = picked
            self._free_instances.remove(instance)
            self._launch(instance, rows, total)
        if due_ns and self._loop is not None:
            self._timer = self._loop.call_later(max(0, due_ns - now) / 1e9, self._dispatch)

    def _pick(self, instance: int, now: int) -> tuple[tuple[list[Row], int] | None, int]:
        """The rows to run next on ``instance`` and the batch size, or (None, when to look again)."""
        plan = self._plan
        live = self._slots.live.values()
        if plan.strategy == "direct":
            first = instance * plan.rows_per_instance
            mine = [
                s for s in live if s.slot is not None and first <= s.slot < first + plan.rows_per_instance
            ]
            ready = sorted((s for s in mine if s.ready), key=lambda s: s.slot or 0)
            if not ready:
                return None, 0
            rows = _same_group(ready, lambda s: (s.slot or 0) - first)
            full = len(ready) == len(mine) or (
                plan.minimum_slot_utilization > 0
                and len(ready) >= plan.minimum_slot_utilization * plan.rows_per_instance
            )
            total = max(row.index for row in rows) + 1 if plan.batched else 1
        else:
            ready = sorted((s for s in live if s.ready), key=lambda s: s.steps[0].enqueued_ns)
            if not ready:
                return None, 0
            ready = ready[: plan.rows_per_instance * 64]  # bounds the work of one pick
            rows = _same_group(ready, None)[: plan.rows_per_instance]
            total = len(rows)
            full = total >= plan.rows_per_instance or total in plan.preferred_batch_sizes
        oldest_ns = min(row.step.enqueued_ns for row in rows)
        delay = plan.max_queue_delay_ns
        if full or not delay or now - oldest_ns >= delay:
            return (rows, total), 0
        return None, oldest_ns + delay

    def _launch(self, instance: int, rows: list[Row], total: int) -> None:
        loop = self._loop
        assert loop is not None
        launched = time.perf_counter_ns()
        traced: list[RequestTrace] = []
        for row in rows:
            row.sequence.steps.popleft()
            row.sequence.running = True
            self._stats.record_queue(launched - row.step.enqueued_ns)
            if row.step.trace is not None:
                row.step.trace.queued(row.step.enqueued_ns, launched)
                traced.append(row.step.trace)
        self._queued -= len(rows)
        self._running += len(rows)
        self._in_flight[instance] = rows
        timeout_ns = self._policy.execution_timeout_ns
        if timeout_ns:
            self._run_timers[instance] = loop.call_later(timeout_ns / 1e9, self._timed_out, instance, rows)

        def finished(result: _Executed | BaseException) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
                loop.call_soon_threadsafe(self._complete, instance, rows, launched, traced, result)

        self._workers[instance].submit(lambda: self._execute(instance, rows, total), finished)

    def _execute(self, instance: int, rows: list[Row], total: int) -> _Executed:
        """Worker thread: feed, run, split into each row's outputs and next state."""
        plan = self._plan
        start = time.perf_counter_ns()
        ready = start
        try:
            inputs = feed(plan, rows, total)
            ready = time.perf_counter_ns()
            outputs = self._runtime.run(instance, inputs)
            ran = time.perf_counter_ns()
            results: Results = [split_row(plan, self._name, outputs, row, total) for row in rows]
        except Exception as exc:
            ran = time.perf_counter_ns()
            log.warning("model %s: sequence execution failed: %s", self._name, exc)
            error = exc if isinstance(exc, InferdError) else _failed(self._name, exc)
            results = [error] * len(rows)
        return _Executed(results, ready - start, ran - ready, time.perf_counter_ns() - ran)

    def _timed_out(self, instance: int, rows: list[Row]) -> None:
        """The execution outlived the model's execution timeout: fail its steps (their sequences keep
        the state they had) and give the instance a new worker thread."""
        if self._in_flight.get(instance) is not rows:
            return
        limit_s = self._policy.execution_timeout_ns / 1e9
        log.error("model %s: sequence execution on instance %d exceeded %g s", self._name, instance, limit_s)
        self._stats.execution_timeouts += 1
        if isinstance(self._runtime, Interruptible):
            self._runtime.interrupt(instance)
        self._workers[instance].abandon()
        self._workers[instance] = self._new_worker(instance)
        error = ExecutionTimeout(
            f"model '{self._name}' did not finish executing within its {limit_s:g} s execution "
            "timeout (execution_timeout_s)"
        )
        self._finish(instance, rows, [error] * len(rows))
        self._dispatch()

    def _complete(
        self,
        instance: int,
        rows: list[Row],
        launched: int,
        traced: list[RequestTrace],
        result: _Executed | BaseException,
    ) -> None:
        if self._in_flight.get(instance) is not rows:
            log.warning("model %s: dropped the late result of an abandoned execution", self._name)
            return
        if isinstance(result, BaseException):  # a bug in _execute itself: fail the steps, keep serving
            log.error("model %s: sequence execution crashed", self._name, exc_info=result)
            result = _Executed([_failed(self._name, result)] * len(rows), 0, 0, 0)
        self._stats.record_execution(len(rows), len(rows), result.input_ns, result.infer_ns, result.output_ns)
        if traced:
            traced[0].executed(traced, launched, time.perf_counter_ns(), len(rows))
        self._finish(instance, rows, result.results)
        self._dispatch()

    def _finish(self, instance: int, rows: list[Row], results: Results) -> None:
        """Give the instance back, keep each sequence's new state, answer each step."""
        loop = self._loop
        assert loop is not None
        del self._in_flight[instance]
        timer = self._run_timers.pop(instance, None)
        if timer is not None:
            timer.cancel()
        self._free_instances.append(instance)
        self._running -= len(rows)
        for row, outcome in zip(rows, results, strict=True):
            sequence = row.sequence
            sequence.running = False
            if not isinstance(outcome, InferdError):
                sequence.state.update(outcome[1])
            # Settled before the answer goes out: a client that sends sequence_start again right
            # after its sequence_end's answer finds the id free.
            self._slots.settle(sequence, loop)
            if row.step.future.done():
                continue
            if isinstance(outcome, InferdError):
                row.step.future.set_exception(outcome)
            else:
                row.step.future.set_result(outcome[0])
        self._update_idle()

    def _update_idle(self) -> None:
        if not self._queued and not self._running:
            self._idle.set()

    async def close(self) -> None:
        """Stop taking steps, let queued and running ones finish (within the drain timeout, then fail
        what is left), drop every live sequence, release the threads."""
        self._closing = True
        timeout_ns = self._policy.drain_timeout_ns
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_ns / 1e9 if timeout_ns else None)
        except TimeoutError:
            log.warning("model %s: drain timed out with %d sequence steps pending", self._name, self.pending)
            for instance, rows in list(self._in_flight.items()):
                error = Unavailable(f"model '{self._name}' shut down before its execution finished")
                self._finish(instance, rows, [error] * len(rows))
        for sequence in list(self._slots.live.values()):
            for step in sequence.steps:
                if not step.future.done():
                    step.future.set_exception(
                        Unavailable(f"model '{self._name}' shut down before sequence {sequence.id!r} ran")
                    )
            sequence.steps.clear()
            self._slots.release(sequence, "was dropped when this model version was unloaded or replaced")
        for timer in [self._timer, *self._run_timers.values()]:
            if timer is not None:
                timer.cancel()
        for worker in self._workers:
            worker.stop()


def _same_group(ready: list[Sequence], index: Any) -> list[Row]:
    """Rows of the first ready sequence's input shapes (others wait for a later execution);
    ``index``: a sequence's row (direct: its slot's row), None: in order (oldest)."""
    group = ready[0].steps[0].group
    rows = []
    for position, sequence in enumerate(s for s in ready if s.steps[0].group == group):
        row = index(sequence) if index is not None else position
        rows.append(Row(row, sequence, sequence.steps[0], sequence.state))
    return rows


def _failed(model: str, exc: BaseException) -> ExecutionError:
    return ExecutionError(f"model '{model}' failed to execute: {exc}")
