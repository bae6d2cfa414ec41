"""One model version's queue: dynamic batching onto a fixed set of runtime instances.

All queue state lives on the event loop thread. Executions run on one worker thread per instance;
a finished execution comes back to the loop with a single ``call_soon_threadsafe``. A model may opt in
to inline execution (``BatchPolicy.inline_max_ns``): a lone request on an idle model whose shape was
measured to run within that bound runs on the loop thread itself, skipping the two thread wake-ups
that dominate a fast model's latency (docs/architecture.md). It runs inline only when the model has
been idle for at least as long as the run will take (so inline runs hold the loop at most about half
the time) and at most once per loop turn (requests that arrive together are batched); a model kept
busy batches on its workers as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from inferd.errors import DeadlineExceeded, ExecutionError, InferdError, Unavailable
from inferd.runtimes.base import Runtime
from inferd.scheduler.batching import concatenate, split
from inferd.scheduler.stats import ModelStats
from inferd.scheduler.tracehook import RequestTrace

log = logging.getLogger(__name__)

Outputs = dict[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """``max_batch_size`` 0: the model has no batch dimension and every request runs alone."""

    max_batch_size: int
    dynamic: bool = False
    max_queue_delay_ns: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    # Requests allowed to wait at once (0: unbounded); beyond it a request is refused with 503 at once.
    max_queue_size: int = 0
    # A lone request on an idle model runs on the event-loop thread when executions of its shape were
    # measured to take at most this long; 0: every execution runs on a worker thread.
    inline_max_ns: int = 0

    @property
    def merges(self) -> bool:
        return self.dynamic and self.max_batch_size > 0


@dataclass(slots=True, eq=False)
class _Pending:
    inputs: Outputs
    rows: int
    group: Hashable
    future: asyncio.Future[Outputs]
    enqueued_ns: int
    trace: RequestTrace | None = None
    # Triton's order: 1 before 2 before ...; 0 when the model has no priority levels.
    priority: int = 0
    # perf_counter_ns after which the request is dropped unexecuted; 0: none.
    deadline_ns: int = 0
    expiry: asyncio.TimerHandle | None = None


@dataclass(frozen=True, slots=True)
class _Executed:
    results: list[Outputs | InferdError]
    input_ns: int
    infer_ns: int
    output_ns: int


# Weight of the newest execution in a shape's running estimate: one slow run (a preempted thread)
# does not stop inline execution, a model that really got slower stops it within a few runs.
_ESTIMATE_WEIGHT = 0.25
# Shapes whose execution time is remembered; past it the table starts over (shapes that vary a lot,
# such as sequence lengths, are then measured again on the worker).
_ESTIMATED_SHAPES = 256


class Batcher:
    def __init__(self, runtime: Runtime, policy: BatchPolicy, stats: ModelStats, name: str) -> None:
        self._runtime = runtime
        self._policy = policy
        self._stats = stats
        self._name = name
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._free_instances = list(range(runtime.instances))
        self._in_flight = 0
        self._executor = ThreadPoolExecutor(max_workers=runtime.instances, thread_name_prefix=f"run-{name}")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatch_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due_ns = 0
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        # Running estimate of a lone request's execution time by (group, rows), for inline execution,
        # with the number of runs behind it.
        self._lone_run_ns: dict[tuple[Hashable, int], tuple[float, int]] = {}
        # When the last execution finished (perf_counter_ns): how long the model has been idle.
        self._idle_since_ns = 0
        # Set by an inline run until the loop's next turn: the requests parsed in the same turn as
        # an inline one arrived together, so they queue and batch instead of running inline in turn.
        self._ran_inline_this_turn = False

    @property
    def pending(self) -> int:
        return len(self._queue) + self._in_flight

    async def infer(
        self,
        inputs: Outputs,
        rows: int,
        group: Hashable = (),
        trace: RequestTrace | None = None,
        priority: int = 0,
        deadline_ns: int = 0,
    ) -> Outputs:
        """Queue one validated request; ``group`` keys its non-batch shapes (only equal groups merge).

        ``priority``: 1 is served first, then 2, ...; 0 for a model without priority levels.
        ``deadline_ns``: a ``time.perf_counter_ns()`` after which the request is dropped unexecuted.
        """
        if self._closing:
            raise Unavailable(f"model '{self._name}' is shutting down")
        queue = self._queue
        limit = self._policy.max_queue_size
        if limit and len(queue) >= limit:
            self._stats.rejected_queue_full += 1
            raise Unavailable(f"model '{self._name}': exceeds maximum queue size {limit}")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        now = time.perf_counter_ns()
        idle = not queue and not self._in_flight and not self._dispatch_scheduled
        if idle and not self._ran_inline_this_turn and self._fits_inline(group, rows, now):
            self._ran_inline_this_turn = True
            loop.call_soon(self._next_turn)
            return self._run_inline(inputs, rows, group, trace, now)
        future: asyncio.Future[Outputs] = loop.create_future()
        item = _Pending(inputs, rows, group, future, now, trace, priority, deadline_ns)
        if priority and queue and queue[-1].priority > priority:
            self._insert_by_priority(item)
        else:
            queue.append(item)
        if deadline_ns:
            item.expiry = loop.call_later(max(0, deadline_ns - now) / 1e9, self._expire, item)
        self._queued_rows += rows
        self._idle.clear()
        # Deferring by one loop turn lets requests parsed in the same turn share an execution.
        if not self._dispatch_scheduled:
            self._dispatch_scheduled = True
            loop.call_soon(self._dispatch)
        return await future

    def _next_turn(self) -> None:
        self._ran_inline_this_turn = False

    def _insert_by_priority(self, item: _Pending) -> None:
        """Behind every queued request of the same or a higher priority (FIFO within a level)."""
        queue = self._queue
        index = len(queue)
        while index and queue[index - 1].priority > item.priority:
            index -= 1
        queue.insert(index, item)

    def _expire(self, item: _Pending) -> None:
        """The deadline passed while the request still waited: answer now, never run it."""
        item.expiry = None
        if item.future.done():
            return
        try:
            self._queue.remove(item)
        except ValueError:
            return  # already taken into a batch
        self._queued_rows -= item.rows
        self._reject_expired(item)
        self._update_idle()

    def _reject_expired(self, item: _Pending) -> None:
        self._stats.deadline_exceeded += 1
        waited_us = (time.perf_counter_ns() - item.enqueued_ns) // 1000
        item.future.set_exception(
            DeadlineExceeded(
                f"model '{self._name}': request timeout expired after {waited_us} us in the queue"
            )
        )

    async def close(self) -> None:
        """Stop taking requests, finish everything queued or running, then release the threads."""
        self._closing = True
        await self._idle.wait()
        self._executor.shutdown(wait=True)

    def _dispatch(self) -> None:
        self._dispatch_scheduled = False
        while self._free_instances and self._queue:
            if not self._ready_to_run():
                self._arm_timer()
                return
            batch = self._take_batch()
            if not batch:
                continue
            if (
                len(batch) == 1
                and not self._queue
                and self._in_flight == 0
                and self._fits_inline(batch[0].group, batch[0].rows, time.perf_counter_ns())
            ):
                self._answer_inline(batch[0])
            else:
                self._launch(self._free_instances.pop(), batch)
        self._update_idle()

    def _fits_inline(self, group: Hashable, rows: int, now_ns: int) -> bool:
        """Whether a lone request may run on the loop thread now (the model is idle: the caller checks)."""
        limit = self._policy.inline_max_ns
        if not limit:
            return False
        measured = self._lone_run_ns.get((group, rows))
        if measured is None:
            return False  # an unmeasured shape runs on a worker first: its time there decides
        estimate = measured[0]
        # A model idle for less than one run is under load: it batches on its workers instead.
        return estimate <= limit and now_ns - self._idle_since_ns >= estimate

    def _ready_to_run(self) -> bool:
        policy = self._policy
        if not policy.merges or self._in_flight == 0:
            # A lone request on an idle model runs at once: batching never adds latency at low load.
            return True
        rows = self._queued_rows
        if rows >= policy.max_batch_size or rows in policy.preferred_batch_sizes:
            return True
        return time.perf_counter_ns() - self._queue[0].enqueued_ns >= policy.max_queue_delay_ns

    def _arm_timer(self) -> None:
        assert self._loop is not None
        due_ns = self._queue[0].enqueued_ns + self._policy.max_queue_delay_ns
        if self._timer is not None:
            if self._timer_due_ns == due_ns:
                return
            self._timer.cancel()
        self._timer_due_ns = due_ns
        delay_s = max(0, due_ns - time.perf_counter_ns()) / 1e9
        self._timer = self._loop.call_later(delay_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _take_batch(self) -> list[_Pending]:
        """The oldest live request plus later ones of the same group, up to max_batch_size rows."""
        queue = self._queue
        head = queue.popleft()
        self._queued_rows -= head.rows
        if head.future.done():  # the client went away while it waited
            return []
        if head.deadline_ns and time.perf_counter_ns() >= head.deadline_ns:
            self._reject_expired(head)  # its timer has not fired yet, but it must not run
            return []
        batch = [head]
        if not self._policy.merges:
            return batch
        limit = self._policy.max_batch_size
        rows = head.rows
        kept: deque[_Pending] = deque()
        while queue and rows < limit:
            item = queue.popleft()
            if item.future.done():
                self._queued_rows -= item.rows
            elif item.deadline_ns and time.perf_counter_ns() >= item.deadline_ns:
                self._queued_rows -= item.rows
                self._reject_expired(item)
            elif item.group == head.group and rows + item.rows <= limit:
                batch.append(item)
                rows += item.rows
                self._queued_rows -= item.rows
            else:
                kept.append(item)
        kept.extend(queue)
        self._queue = kept
        return batch

    def _launch(self, instance: int, batch: list[_Pending]) -> None:
        loop = self._loop
        assert loop is not None
        self._in_flight += 1
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
        done = self._executor.submit(self._execute, instance, inputs, rows)

        def finished(future: Future[_Executed]) -> None:
            # RuntimeError: the loop closed during shutdown; nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._complete, instance, batch, future, now, traced)

        done.add_done_callback(finished)

    def _answer_inline(self, item: _Pending) -> None:
        """A request that waited one loop turn alone: run it inline and settle its future."""
        if item.expiry is not None:
            item.expiry.cancel()
            item.expiry = None
        try:
            result = self._run_inline(item.inputs, item.rows, item.group, item.trace, item.enqueued_ns)
        except InferdError as exc:
            item.future.set_exception(exc)
        except Exception as exc:  # a bug, not the model's failure: answer the request, keep serving
            log.exception("model %s: inline execution crashed", self._name)
            item.future.set_exception(_execution_error(self._name, exc))
        else:
            item.future.set_result(result)

    def _run_inline(
        self, inputs: Outputs, rows: int, group: Hashable, trace: RequestTrace | None, enqueued_ns: int
    ) -> Outputs:
        """Run one request on the loop thread: the model is idle and this shape is known to be fast."""
        now = time.perf_counter_ns()
        self._stats.record_queue(now - enqueued_ns)
        traced: list[RequestTrace] = []
        if trace is not None:
            trace.queued(enqueued_ns, now)
            traced.append(trace)
        executed = self._execute(self._free_instances[-1], [inputs], [rows])
        self._stats.inline_executions += 1
        self._record(executed, rows, 1, now, traced, (group, rows))
        self._idle_since_ns = time.perf_counter_ns()
        result = executed.results[0]
        if isinstance(result, InferdError):
            raise result
        return result

    def _execute(self, instance: int, inputs: list[Outputs], rows: list[int]) -> _Executed:
        """Worker thread: merge, run, split. Errors stay with the requests that caused them."""
        start = time.perf_counter_ns()
        merged = concatenate(inputs)
        ready = time.perf_counter_ns()
        try:
            outputs = self._runtime.run(instance, merged)
            ran = time.perf_counter_ns()
            results: list[Outputs | InferdError] = list(
                split(outputs, rows) if self._policy.max_batch_size > 0 else [outputs]
            )
        except Exception as exc:
            ran = time.perf_counter_ns()
            results = self._isolate_failure(instance, inputs, rows, exc)
        return _Executed(results, ready - start, ran - ready, time.perf_counter_ns() - ran)

    def _isolate_failure(
        self, instance: int, inputs: list[Outputs], rows: list[int], exc: Exception
    ) -> list[Outputs | InferdError]:
        if len(inputs) == 1:
            return [_execution_error(self._name, exc)]
        # One request may have poisoned a merged batch: rerun each alone so only it fails.
        results: list[Outputs | InferdError] = []
        for request_inputs, count in zip(inputs, rows, strict=True):
            try:
                results.append(split(self._runtime.run(instance, request_inputs), [count])[0])
            except Exception as single_exc:
                results.append(_execution_error(self._name, single_exc))
        return results

    def _complete(
        self,
        instance: int,
        batch: list[_Pending],
        done: Future[_Executed],
        launched_ns: int,
        traced: list[RequestTrace],
    ) -> None:
        self._free_instances.append(instance)
        self._in_flight -= 1
        if not self._in_flight:
            self._idle_since_ns = time.perf_counter_ns()
        try:
            executed = done.result()
        except Exception as exc:  # a bug in _execute itself: fail the batch, keep serving
            log.exception("model %s: execution crashed", self._name)
            error = _execution_error(self._name, exc)
            executed = _Executed([error] * len(batch), 0, 0, 0)
        rows = sum(item.rows for item in batch)
        lone = (batch[0].group, rows) if len(batch) == 1 else None
        self._record(executed, rows, len(batch), launched_ns, traced, lone)
        for item, result in zip(batch, executed.results, strict=True):
            if item.future.done():
                continue
            if isinstance(result, InferdError):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)
        self._dispatch()

    def _record(
        self,
        executed: _Executed,
        rows: int,
        requests: int,
        launched_ns: int,
        traced: list[RequestTrace],
        lone: tuple[Hashable, int] | None,
    ) -> None:
        """Statistics and the trace span of one execution; ``lone``: its (group, rows) if it ran alone."""
        if lone is not None and self._policy.inline_max_ns and executed.infer_ns:
            self._estimate(lone, executed.input_ns + executed.infer_ns + executed.output_ns)
        self._stats.record_execution(rows, requests, executed.input_ns, executed.infer_ns, executed.output_ns)
        if traced:
            # One execution span, parented by the first traced request and linked to all of them.
            traced[0].executed(traced, launched_ns, time.perf_counter_ns(), rows)

    def _estimate(self, key: tuple[Hashable, int], run_ns: int) -> None:
        estimates = self._lone_run_ns
        measured = estimates.get(key)
        if measured is None:
            if len(estimates) >= _ESTIMATED_SHAPES:
                estimates.clear()
            estimates[key] = (run_ns, 1)
        elif measured[1] == 1:
            estimates[key] = (run_ns, 2)  # a shape's first run is often a cold one: drop it
        else:
            estimate = measured[0]
            estimates[key] = (estimate + _ESTIMATE_WEIGHT * (run_ns - estimate), measured[1] + 1)

    def _update_idle(self) -> None:
        if not self._queue and self._in_flight == 0:
            self._idle.set()


def _execution_error(model: str, exc: Exception) -> InferdError:
    if isinstance(exc, InferdError):
        return exc
    log.warning("model %s: execution failed: %s", model, exc)
    return ExecutionError(f"model '{model}' failed to execute: {exc}")
