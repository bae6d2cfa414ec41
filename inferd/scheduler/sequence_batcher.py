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
from collections import OrderedDict, deque
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from inferd.errors import ExecutionError, InferdError, InvalidRequest, Unavailable
from inferd.runtimes.base import Runtime
from inferd.scheduler.batcher import BatchPolicy
from inferd.scheduler.sequences import (
    Outputs,
    Row,
    Sequence,
    SequenceId,
    SequencePlan,
    Step,
    StepFlags,
    check_corrid,
    feed,
    step_flags,
)
from inferd.scheduler.stats import ModelStats
from inferd.scheduler.tracehook import RequestTrace
from inferd.scheduler.worker import Worker

log = logging.getLogger(__name__)

# Ids of sequences that ended or were freed, remembered (with why) to explain a late step.
_REMEMBERED = 4096


@dataclass(frozen=True, slots=True)
class _Executed:
    results: list[tuple[Outputs, dict[str, Any]] | InferdError]
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
        self._workers = [Worker[_Executed](f"seq-{name}-{i}") for i in range(runtime.instances)]
        self._free_instances = list(range(runtime.instances))
        self._live: dict[SequenceId, Sequence] = {}
        self._free_slots = list(range(plan.slots - 1, -1, -1))  # popped lowest first
        self._backlog: deque[Sequence] = deque()
        self._gone: OrderedDict[SequenceId, str] = OrderedDict()
        self._queued = 0
        self._running = 0
        # Each instance's running rows: failed at once if the drain times out.
        self._in_flight: dict[int, list[Row]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatch_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def plan(self) -> SequencePlan:
        return self._plan

    @property
    def pending(self) -> int:
        return self._queued + self._running

    @property
    def live_sequences(self) -> int:
        return len(self._live)

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
        sequence = self._admit(flags)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Outputs] = loop.create_future()
        step = Step(inputs, group, flags.start, flags.end, future, time.perf_counter_ns(), outputs, trace)
        sequence.steps.append(step)
        sequence.ended = flags.end
        self._queued += 1
        self._idle.clear()
        if sequence.idle_timer is not None:
            sequence.idle_timer.cancel()
            sequence.idle_timer = None
        self._schedule_dispatch()
        try:
            return await future
        except asyncio.CancelledError:
            # The caller went away: a step not yet running never runs (its sequence keeps its state).
            if step in sequence.steps:
                sequence.steps.remove(step)
                self._queued -= 1
                self._stats.cancelled += 1
                self._settle(sequence)
                self._update_idle()
            raise

    def _admit(self, flags: StepFlags) -> Sequence:
        """The live sequence this step belongs to (a new one on sequence_start), or a 400 naming it."""
        sequence_id = flags.sequence_id
        sequence = self._live.get(sequence_id)
        if flags.start:
            if sequence is not None:
                still = "is finishing its last step" if sequence.ended else "is still active"
                raise InvalidRequest(
                    f"model '{self._name}': sequence {flags.shown} {still}; a sequence_start for it "
                    "is accepted once it has ended (sequence_end) or been freed"
                )
            check_corrid(self._name, self._plan, flags)
            return self._open(flags)
        if sequence is None or sequence.ended:
            why = (
                "has ended (sequence_end was sent)"
                if sequence is not None
                else self._why_unknown(sequence_id)
            )
            raise InvalidRequest(
                f"model '{self._name}': sequence {flags.shown} {why}; start a sequence with "
                "sequence_start=true on its first request"
            )
        return sequence

    def _why_unknown(self, sequence_id: SequenceId) -> str:
        reason = self._gone.get(sequence_id)
        if reason is not None:
            return reason
        return (
            "is not active (never started with sequence_start, or dropped when this model was "
            "reloaded or replaced)"
        )

    def _open(self, flags: StepFlags) -> Sequence:
        plan = self._plan
        if not self._free_slots and len(self._backlog) >= plan.backlog:
            waiting = f" and {len(self._backlog)} wait for one (max_sequence_backlog)" if plan.backlog else ""
            limit = "max_candidate_sequences" if plan.strategy == "oldest" else "max_batch_size x instances"
            raise InvalidRequest(
                f"model '{self._name}': cannot start sequence {flags.shown}: all {plan.slots} sequence "
                f"slots ({limit}) are taken{waiting}; retry once a sequence ends or idles out"
            )
        state = {s.input_name: s.initial.copy() for s in plan.states}
        sequence = Sequence(flags.sequence_id, state)
        self._gone.pop(flags.sequence_id, None)
        self._live[flags.sequence_id] = sequence
        if self._free_slots:
            sequence.slot = self._free_slots.pop()
        else:
            self._backlog.append(sequence)
        return sequence

    def _release(self, sequence: Sequence, reason: str) -> None:
        """Free a sequence's slot (handing it to the oldest backlogged sequence) and forget it."""
        if self._live.get(sequence.id) is not sequence:
            return
        del self._live[sequence.id]
        if sequence.idle_timer is not None:
            sequence.idle_timer.cancel()
            sequence.idle_timer = None
        self._gone[sequence.id] = reason
        if len(self._gone) > _REMEMBERED:
            self._gone.popitem(last=False)
        if sequence.slot is None:
            with contextlib.suppress(ValueError):
                self._backlog.remove(sequence)
            return
        if self._backlog:
            self._backlog.popleft().slot = sequence.slot
            self._schedule_dispatch()
        else:
            self._free_slots.append(sequence.slot)
            self._free_slots.sort(reverse=True)

    def _settle(self, sequence: Sequence) -> None:
        """After a step finished or was withdrawn: end the sequence, or start its idle clock."""
        if sequence.running or sequence.steps:
            return
        if sequence.ended:
            self._release(sequence, "has ended (sequence_end was sent)")
        elif self._loop is not None and sequence.idle_timer is None:
            sequence.idle_timer = self._loop.call_later(self._plan.idle_ns / 1e9, self._idle_out, sequence)

    def _idle_out(self, sequence: Sequence) -> None:
        sequence.idle_timer = None
        if sequence.running or sequence.steps:
            return
        log.info(
            "model %s: sequence %r freed after max_sequence_idle_microseconds idle", self._name, sequence.id
        )
        idle_us = self._plan.idle_ns // 1000
        self._release(
            sequence, f"was freed after {idle_us} us without a request (max_sequence_idle_microseconds)"
        )

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
        if plan.strategy == "direct":
            first = instance * plan.rows_per_instance
            mine = [
                s
                for s in self._live.values()
                if s.slot is not None and first <= s.slot < first + plan.rows_per_instance
            ]
            ready = sorted((s for s in mine if s.ready), key=lambda s: s.slot or 0)
            if not ready:
                return None, 0
            rows = self._same_group(ready, lambda s: (s.slot or 0) - first)
            full = len(ready) == len(mine) or (
                plan.minimum_slot_utilization > 0
                and len(ready) >= plan.minimum_slot_utilization * plan.rows_per_instance
            )
            total = max(row.index for row in rows) + 1 if plan.batched else 1
        else:
            ready = sorted((s for s in self._live.values() if s.ready), key=lambda s: s.steps[0].enqueued_ns)
            if not ready:
                return None, 0
            ready = ready[: plan.rows_per_instance * 64]  # bounds the work of one pick
            rows = self._same_group(ready, None)[: plan.rows_per_instance]
            total = len(rows)
            full = total >= plan.rows_per_instance or total in plan.preferred_batch_sizes
        oldest_ns = min(row.step.enqueued_ns for row in rows)
        delay = plan.max_queue_delay_ns
        if full or not delay or now - oldest_ns >= delay:
            return (rows, total), 0
        return None, oldest_ns + delay

    @staticmethod
    def _same_group(ready: list[Sequence], index: Any) -> list[Row]:
        """Rows of the first ready sequence's input shapes (others wait for a later execution)."""
        group = ready[0].steps[0].group
        rows = []
        for position, sequence in enumerate(s for s in ready if s.steps[0].group == group):
            row = index(sequence) if index is not None else position
            rows.append(Row(row, sequence, sequence.steps[0], sequence.state))
        return rows

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
            results: list[tuple[Outputs, dict[str, Any]] | InferdError] = [
                self._split(outputs, row, total) for row in rows
            ]
        except Exception as exc:
            ran = time.perf_counter_ns()
            log.warning("model %s: sequence execution failed: %s", self._name, exc)
            error = (
                exc
                if isinstance(exc, InferdError)
                else ExecutionError(f"model '{self._name}' failed to execute: {exc}")
            )
            results = [error] * len(rows)
        return _Executed(results, ready - start, ran - ready, time.perf_counter_ns() - ran)

    def _split(self, outputs: Outputs, row: Row, total: int) -> tuple[Outputs, dict[str, Any]]:
        plan = self._plan
        if plan.batched:
            for name, array in outputs.items():
                if array.ndim == 0 or array.shape[0] != total:
                    raise ExecutionError(
                        f"the model returned output '{name}' with shape {list(array.shape)} for a batch of "
                        f"{total} rows; a batching model must return one row per input row"
                    )
            picked = {name: array[row.index : row.index + 1] for name, array in outputs.items()}
        else:
            picked = outputs
        state: dict[str, Any] = {}
        for feed_ in plan.states:
            value = picked[feed_.output_name]
            value = value[0] if plan.batched else value
            if value.shape != feed_.initial.shape:
                raise ExecutionError(
                    f"model '{self._name}' returned state '{feed_.output_name}' with shape "
                    f"{list(value.shape)}, expected {list(feed_.initial.shape)}"
                )
            state[feed_.input_name] = value.astype(feed_.dtype, copy=True)  # not a view of the batch
        wanted = row.step.outputs
        served = [spec.name for spec in plan.served.outputs]
        return {name: picked[name] for name in served if wanted is None or name in wanted}, state

    def _complete(
        self,
        instance: int,
        rows: list[Row],
        launched: int,
        traced: list[RequestTrace],
        result: _Executed | BaseException,
    ) -> None:
        if self._in_flight.get(instance) is not rows:
            return  # failed when the drain timed out; the instance was not given back
        del self._in_flight[instance]
        self._free_instances.append(instance)
        self._running -= len(rows)
        if isinstance(result, BaseException):  # a bug in _execute itself: fail the steps, keep serving
            log.error("model %s: sequence execution crashed", self._name, exc_info=result)
            error = ExecutionError(f"model '{self._name}' failed to execute: {result}")
            result = _Executed([error] * len(rows), 0, 0, 0)
        self._stats.record_execution(len(rows), len(rows), result.input_ns, result.infer_ns, result.output_ns)
        if traced:
            traced[0].executed(traced, launched, time.perf_counter_ns(), len(rows))
        for row, outcome in zip(rows, result.results, strict=True):
            sequence = row.sequence
            sequence.running = False
            if not isinstance(outcome, InferdError):
                sequence.state.update(outcome[1])
            # Settled before the answer goes out: a client that sends sequence_start again right
            # after its sequence_end's answer finds the id free.
            self._settle(sequence)
            if row.step.future.done():
                continue
            if isinstance(outcome, InferdError):
                row.step.future.set_exception(outcome)
            else:
                row.step.future.set_result(outcome[0])
        self._update_idle()
        self._dispatch()

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
            for rows in self._in_flight.values():
                for row in rows:
                    if not row.step.future.done():
                        row.step.future.set_exception(
                            Unavailable(f"model '{self._name}' shut down before its execution finished")
                        )
        for sequence in list(self._live.values()):
            for step in sequence.steps:
                if not step.future.done():
                    step.future.set_exception(
                        Unavailable(f"model '{self._name}' shut down before sequence {sequence.id!r} ran")
                    )
            sequence.steps.clear()
            self._release(sequence, "was dropped when this model version was unloaded")
        if self._timer is not None:
            self._timer.cancel()
        for worker in self._workers:
            worker.stop()
