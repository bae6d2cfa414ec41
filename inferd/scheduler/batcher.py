"""One model version's queue: dynamic batching onto a fixed set of runtime instances.

All queue state lives on the event loop thread. Executions run on one worker thread per instance;
a finished execution comes back to the loop with a single ``call_soon_threadsafe``. A model may opt in
A lone request on an idle model may instead run on the loop thread itself (inline execution,
``BatchPolicy.inline_max_ns``, measured by default), skipping the two thread wake-ups that dominate a
fast model's latency; inferd/scheduler/lone.py decides, from the measured run, hop and loop lag. At
most one request of a model runs inline per loop turn (requests that arrive together are batched); a
model kept busy, or a loop with other work waiting, batches on the workers as before.

An execution that outlives ``BatchPolicy.execution_timeout_ns`` fails its requests (504) and its
instance gets a new worker thread; the stuck thread is abandoned and its late result dropped (a runtime
that can interrupt an execution is told to: a worker process is killed and restarts). ``close`` waits
at most ``drain_timeout_ns`` for queued and running work, then fails what is left (503).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass

from inferd.errors import (
    DeadlineExceeded,
    ExecutionTimeout,
    InferdError,
    Unavailable,
)
from inferd.runtimes.base import Interruptible, Runtime
from inferd.runtimes.request_parameters import ModelParameters
from inferd.scheduler.adaptive import AdaptiveBatching
from inferd.scheduler.execution import Executed, Executor, execution_error, outputs_wanted
from inferd.scheduler.lone import LoneDecision
from inferd.scheduler.queue import Outputs, Pending, RequestQueue
from inferd.scheduler.sequence_plan import SequencePlan
from inferd.scheduler.stats import ModelStats
from inferd.scheduler.tracehook import RequestTrace
from inferd.scheduler.worker import Worker

log = logging.getLogger(__name__)

# Lone requests in a row that may run inline at once (``alone``); the next one takes the queued path,
# whose dispatch turn is the loop-lag sample the load rule needs (inferd/scheduler/lone.py): without
# it, calls reaching the loop one per turn (gRPC under load) would never be seen as load.
ALONE_STREAK = 8


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
    # measured to take at most this long; 0: every execution runs on a worker thread; INLINE_AUTO: a
    # bound derived from the measured hop (inferd/scheduler/lone.py).
    inline_max_ns: int = 0
    # An execution running longer fails its requests and its instance is replaced; 0: no limit.
    execution_timeout_ns: int = 0
    # close() waits this long for queued and running work, then fails the rest; 0: no limit.
    drain_timeout_ns: int = 0
    # A stateful model's sequence batching (inferd/scheduler/sequence_batcher.py); None: this batcher.
    sequence: SequencePlan | None = None
    # dynamic_batching.target_p99_ms: the delay and batch cap adapt to hold it, and requests that
    # would miss it are shed (inferd/scheduler/adaptive.py); max_queue_delay_ns is then a ceiling.
    target_p99_ns: int = 0

    @property
    def merges(self) -> bool:
        return self.dynamic and self.max_batch_size > 0


@dataclass(slots=True, eq=False)
class _Run:
    """One execution on a worker; an instance's current run is the only one whose result counts."""

    batch: list[Pending]
    launched_ns: int
    traced: list[RequestTrace]
    timer: asyncio.TimerHandle | None = None


class Batcher:
    def __init__(self, runtime: Runtime, policy: BatchPolicy, stats: ModelStats, name: str) -> None:
        self._runtime = runtime
        self._executor = Executor(runtime, policy.max_batch_size > 0, name)
        self._policy = policy
        self._stats = stats
        self._name = name
        self._queue = RequestQueue()
        self._free_instances = list(range(runtime.instances))
        self._in_flight = 0
        self._workers = [self._new_worker(i) for i in range(runtime.instances)]
        self._running: dict[int, _Run] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatch_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due_ns = 0
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        # Inline or hop for a lone request, with the measured run, hop and loop lag behind it.
        self._lone = LoneDecision(policy.inline_max_ns, policy.max_queue_delay_ns)
        # Set by an inline run until the loop's next turn: at most one inline run per turn, so a
        # dispatch called again in the same turn (a completion, a timer) does not chain them.
        self._ran_inline_this_turn = False
        self.adaptive = (
            AdaptiveBatching(
                policy.target_p99_ns,
                policy.max_batch_size,
                runtime.instances,
                policy.max_queue_delay_ns,
                name,
            )
            if policy.target_p99_ns
            else None
        )
        # When the pending _dispatch_turn was queued: its wait is the loop's lag.
        self._dispatch_queued_ns = 0
        # A lone request is being held for company (inferd/scheduler/lone.py): its outcome is measured.
        self._waiting_for_company = False
        # Inline runs at once since the last dispatch turn (ALONE_STREAK).
        self._alone_streak = 0

    @property
    def pending(self) -> int:
        return self._queue.count + self._in_flight

    @property
    def backlog(self) -> tuple[int, int]:
        """Rows waiting and executions running: what the controller's completion estimate reads."""
        return self._queue.rows, self._in_flight

    def _new_worker(self, instance: int) -> Worker[Executed]:
        return Worker(f"run-{self._name}-{instance}")

    async def infer(
        self,
        inputs: Outputs,
        rows: int,
        group: Hashable = (),
        trace: RequestTrace | None = None,
        priority: int = 0,
        deadline_ns: int = 0,
        outputs: frozenset[str] | None = None,
        parameters: ModelParameters | None = None,
        alone: bool = False,
    ) -> Outputs:
        """Queue one validated request; ``group`` keys its non-batch shapes (only equal groups merge).

        ``parameters``: what a model taking parameters gets (``TakesParameters.run_parameters``); the
        caller puts their key in ``group``, so the requests of one execution all sent equal ones.

        ``outputs``: the outputs the client asked for (None: all). A runtime with ``run_outputs``
        computes only the union of what a batch asked for; the others compute every output.

        ``priority``: 1 is served first, then 2, ...; 0 for a model without priority levels.
        ``deadline_ns``: a ``time.perf_counter_ns()`` after which the request is dropped unexecuted.
        ``alone``: no other request is in progress in the server (the data plane counts them): one
        that may run inline runs at once, without the loop turn a queued request waits for company.
        """
        if self._closing:
            raise Unavailable(f"model '{self._name}' is shutting down")
        queue = self._queue
        limit = self._policy.max_queue_size
        if limit and queue.count >= limit:
            self._stats.rejected_queue_full += 1
            raise Unavailable(f"model '{self._name}': exceeds maximum queue size {limit}")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        now = time.perf_counter_ns()
        adaptive = self.adaptive
        if adaptive is not None:
            adaptive.arrived(now, rows)
            if not adaptive.admits(rows, queue.rows, self._in_flight):
                raise self._shed("its predicted completion is past")
        if alone and (not deadline_ns or deadline_ns > now) and self._inline_at_once(group, rows, now):
            return self._run_alone(inputs, rows, group, trace, now, outputs, parameters)
        future: asyncio.Future[Outputs] = loop.create_future()
        item = Pending(
            inputs,
            rows,
            group,
            future,
            now,
            trace,
            priority,
            deadline_ns,
            outputs=outputs,
            parameters=parameters,
        )
        queue.push(item)
        if deadline_ns:
            item.expiry = loop.call_later(max(0, deadline_ns - now) / 1e9, self._expire, item)
        self._idle.clear()
        # Deferring by one loop turn lets requests parsed in the same turn share an execution, and
        # how long that turn took tells a lone request whether the loop has other work
        # (inferd/scheduler/lone.py).
        if not self._dispatch_scheduled:
            self._dispatch_scheduled = True
            self._dispatch_queued_ns = now
            loop.call_soon(self._dispatch_turn)
        try:
            return await future
        except asyncio.CancelledError:
            # The caller went away (client disconnected, gRPC call cancelled): never run it.
            if queue.discard(item):
                self._stats.cancelled += 1
                if item.expiry is not None:
                    item.expiry.cancel()
                self._update_idle()
            raise

    def _inline_at_once(self, group: Hashable, rows: int, now: int) -> bool:
        """Whether a request with nothing else in progress in the server runs inline right away: no
        request of this model queued, running or scheduled, and the lone request rules say inline."""
        return (
            not self._queue.count
            and self._in_flight == 0
            and not self._dispatch_scheduled
            and not self._ran_inline_this_turn
            and self._alone_streak < ALONE_STREAK
            and self._lone.inline((group, rows), now)
        )

    def _run_alone(
        self,
        inputs: Outputs,
        rows: int,
        group: Hashable,
        trace: RequestTrace | None,
        now: int,
        outputs: frozenset[str] | None,
        parameters: ModelParameters | None,
    ) -> Outputs:
        """``_answer_inline`` without the queue: the one request in progress runs on the loop now."""
        assert self._loop is not None
        self._ran_inline_this_turn = True
        self._alone_streak += 1
        self._loop.call_soon(self._next_turn)
        try:
            return self._run_inline(inputs, rows, group, trace, now, outputs, parameters)
        except InferdError:
            raise
        except Exception as exc:  # a bug, not the model's failure: answer the request, keep serving
            log.exception("model %s: inline execution crashed", self._name)
            raise execution_error(self._name, exc) from None

    def _shed(self, reason: str) -> Unavailable:
        self._stats.shed += 1
        target_ms = self._policy.target_p99_ns / 1e6
        return Unavailable(
            f"model '{self._name}' is overloaded: request shed, {reason} the {target_ms:g} ms "
            "target (dynamic_batching.target_p99_ms); retry later"
        )

    def _shed_hopeless(self) -> None:
        """Under overload, answer the oldest waiting requests that will miss the target anyway."""
        adaptive = self.adaptive
        assert adaptive is not None
        queue = self._queue
        now = time.perf_counter_ns()
        head = queue.head()
        free = len(self._free_instances)
        while head is not None and adaptive.hopeless(now - head.enqueued_ns, queue.rows, free):
            queue.discard(head)
            if head.expiry is not None:
                head.expiry.cancel()
                head.expiry = None
            if not head.future.done():
                head.future.set_exception(self._shed("its wait already takes it past"))
            head = queue.head()

    def _next_turn(self) -> None:
        self._ran_inline_this_turn = False

    def _dispatch_turn(self) -> None:
        """The dispatch queued by ``infer``: one loop turn later, so requests of one turn batch."""
        self._lone.record_lag(time.perf_counter_ns() - self._dispatch_queued_ns)
        self._alone_streak = 0
        self._dispatch()

    def _expire(self, item: Pending) -> None:
        """The deadline passed while the request still waited: answer now, never run it."""
        item.expiry = None
        if self._queue.discard(item):
            self._reject_expired(item)
            self._update_idle()

    def _reject_expired(self, item: Pending) -> None:
        if item.future.done():
            return
        self._stats.deadline_exceeded += 1
        waited_us = (time.perf_counter_ns() - item.enqueued_ns) // 1000
        item.future.set_exception(
            DeadlineExceeded(
                f"model '{self._name}': request timeout expired after {waited_us} us in the queue"
            )
        )

    async def close(self) -> None:
        """Stop taking requests, finish everything queued or running (within the drain timeout, then
        fail what is left), then release the threads."""
        self._closing = True
        timeout_ns = self._policy.drain_timeout_ns
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_ns / 1e9 if timeout_ns else None)
        except TimeoutError:
            self._give_up()
        for worker in self._workers:
            worker.stop()

    def _give_up(self) -> None:
        """The drain timed out: answer every queued and running request with 503 now."""
        running = len(self._running)
        log.warning(
            "model %s: drain timed out with %d queued requests and %d executions running; failing them",
            self._name,
            self._queue.count,
            running,
        )
        for instance, run in list(self._running.items()):
            error = Unavailable(f"model '{self._name}' shut down before its execution finished")
            self._abandon(instance, run, error)
        for item in self._queue.drain():
            if item.expiry is not None:
                item.expiry.cancel()
            if not item.future.done():
                item.future.set_exception(Unavailable(f"model '{self._name}' shut down before it ran"))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._update_idle()

    def _dispatch(self) -> None:
        self._dispatch_scheduled = False
        if self.adaptive is not None and self._free_instances:
            self._shed_hopeless()
        while self._free_instances and self._queue.count:
            if not self._ready_to_run():
                self._arm_timer()
                return
            if self._waits_for_company():
                return
            batch = self._take_batch()
            if not batch:
                continue
            if self._waiting_for_company:
                self._waiting_for_company = False
                self._lone.record_wait(len(batch) > 1)
            if (
                len(batch) == 1
                and not self._queue.count
                and self._in_flight == 0
                and not self._ran_inline_this_turn
                and self._lone.inline((batch[0].group, batch[0].rows), time.perf_counter_ns())
            ):
                self._ran_inline_this_turn = True
                assert self._loop is not None
                self._loop.call_soon(self._next_turn)
                self._answer_inline(batch[0])
            else:
                self._launch(self._free_instances.pop(), batch)
        if not self._queue.count:
            self._waiting_for_company = False  # its request went away (cancelled, expired)
        self._update_idle()

    def _ready_to_run(self) -> bool:
        policy = self._policy
        if not policy.merges or self._in_flight == 0:
            # A lone request on an idle model runs at once: batching never adds latency at low load.
            return True
        rows = self._queue.rows
        if rows >= self._batch_cap() or rows in policy.preferred_batch_sizes:
            return True
        head = self._queue.head()
        assert head is not None
        return time.perf_counter_ns() - head.enqueued_ns >= self._queue_delay_ns()

    def _batch_cap(self) -> int:
        adaptive = self.adaptive
        return self._policy.max_batch_size if adaptive is None else adaptive.plan.cap

    def _queue_delay_ns(self) -> int:
        adaptive = self.adaptive
        return self._policy.max_queue_delay_ns if adaptive is None else adaptive.plan.delay_ns

    def _waits_for_company(self) -> bool:
        """An idle model on a loaded loop: hold the queue for company (inferd/scheduler/lone.py)."""
        policy = self._policy
        if self._in_flight or self._closing or not policy.merges or self._queue.rows >= self._batch_cap():
            return False
        wait_ns = self._lone.company_wait_ns()
        if not wait_ns:
            return False
        head = self._queue.head()
        assert head is not None
        if time.perf_counter_ns() - head.enqueued_ns >= wait_ns:
            return False
        self._waiting_for_company = True
        self._arm_timer(wait_ns)
        return True

    def _arm_timer(self, delay_ns: int | None = None) -> None:
        """Dispatch again once the head has waited ``delay_ns`` (default: the model's queue delay)."""
        assert self._loop is not None
        head = self._queue.head()
        assert head is not None
        due_ns = head.enqueued_ns + (self._queue_delay_ns() if delay_ns is None else delay_ns)
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

    def _take_batch(self) -> list[Pending]:
        """The oldest waiting request of the best level plus later ones of its group, up to
        max_batch_size rows (inferd/scheduler/queue.py); expired ones met on the way are answered."""
        expired: list[Pending] = []
        policy = self._policy
        batch = self._queue.take(self._batch_cap(), policy.merges, time.perf_counter_ns(), expired)
        for item in expired:
            if item.expiry is not None:
                item.expiry.cancel()
                item.expiry = None
            self._reject_expired(item)  # its timer has not fired yet, but it must not run
        return batch

    def _launch(self, instance: int, batch: list[Pending]) -> None:
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
        wanted = outputs_wanted(batch)
        parameters = batch[0].parameters  # the batch's group holds their key: all are equal
        run = _Run(batch, now, traced)
        self._running[instance] = run
        timeout_ns = self._policy.execution_timeout_ns
        if timeout_ns:
            run.timer = loop.call_later(timeout_ns / 1e9, self._timed_out, instance, run)

        def finished(result: Executed | BaseException) -> None:
            # RuntimeError: the loop closed during shutdown; nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._complete, instance, run, result)

        self._workers[instance].submit(
            lambda: self._executor.execute(instance, inputs, rows, wanted, parameters), finished
        )

    def _timed_out(self, instance: int, run: _Run) -> None:
        """The execution outlived the model's execution timeout: fail it, replace the instance's thread."""
        if self._running.get(instance) is not run:
            return
        self._stats.execution_timeouts += 1
        limit_s = self._policy.execution_timeout_ns / 1e9
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
        self._abandon(instance, run, error)
        self._dispatch()

    def _abandon(self, instance: int, run: _Run, error: InferdError) -> None:
        """Give up on a running execution: its requests get ``error``; a later result is dropped."""
        del self._running[instance]
        if run.timer is not None:
            run.timer.cancel()
        if isinstance(self._runtime, Interruptible):
            # A worker process is killed (and restarted): the thread waiting on it returns at once.
            self._runtime.interrupt(instance)
        self._workers[instance].abandon()
        self._workers[instance] = self._new_worker(instance)
        self._free_instances.append(instance)
        self._in_flight -= 1
        for item in run.batch:
            if not item.future.done():
                item.future.set_exception(error)
        self._update_idle()

    def _answer_inline(self, item: Pending) -> None:
        """A request that waited one loop turn alone: run it inline and settle its future."""
        if item.expiry is not None:
            item.expiry.cancel()
            item.expiry = None
        try:
            result = self._run_inline(
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
        except Exception as exc:  # a bug, not the model's failure: answer the request, keep serving
            log.exception("model %s: inline execution crashed", self._name)
            item.future.set_exception(execution_error(self._name, exc))
        else:
            item.future.set_result(result)

    def _run_inline(
        self,
        inputs: Outputs,
        rows: int,
        group: Hashable,
        trace: RequestTrace | None,
        enqueued_ns: int,
        outputs: frozenset[str] | None,
        parameters: ModelParameters | None,
    ) -> Outputs:
        """Run one request on the loop thread: the model is idle and this shape is known to be fast."""
        now = time.perf_counter_ns()
        self._stats.record_queue(now - enqueued_ns)
        traced: list[RequestTrace] = []
        if trace is not None:
            trace.queued(enqueued_ns, now)
            traced.append(trace)
        executed = self._executor.execute(self._free_instances[-1], [inputs], [rows], outputs, parameters)
        self._stats.inline_executions += 1
        self._record(executed, rows, 1, now, traced, (group, rows))
        self._lone.idle_since_ns = time.perf_counter_ns()
        result = executed.results[0]
        if isinstance(result, InferdError):
            raise result
        return result

    def _complete(self, instance: int, run: _Run, result: Executed | BaseException) -> None:
        if self._running.get(instance) is not run:
            log.warning("model %s: dropped the late result of an abandoned execution", self._name)
            return
        del self._running[instance]
        if run.timer is not None:
            run.timer.cancel()
        batch = run.batch
        self._free_instances.append(instance)
        self._in_flight -= 1
        now = time.perf_counter_ns()
        if not self._in_flight:
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
        if self.adaptive is not None:
            self.adaptive.completed(time.perf_counter_ns(), [item.enqueued_ns for item in batch])
        for item, outcome in zip(batch, result.results, strict=True):
            if item.future.done():
                continue
            if isinstance(outcome, InferdError):
                item.future.set_exception(outcome)
            else:
                item.future.set_result(outcome)
        self._dispatch()

    def _record(
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
        if self.adaptive is not None and executed.infer_ns:
            self.adaptive.executed(rows, executed.input_ns + executed.infer_ns + executed.output_ns)
        if traced:
            # One execution span, parented by the first traced request and linked to all of them.
            traced[0].executed(traced, launched_ns, time.perf_counter_ns(), rows)

    def _update_idle(self) -> None:
        if not self._queue.count and self._in_flight == 0:
            self._idle.set()
