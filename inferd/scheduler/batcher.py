"""One model version's queue: dynamic batching onto a fixed set of runtime instances.

All queue state lives on the event loop thread. This module decides when requests run and together:
it drains the queue into batches and hands each to a free instance (inferd/scheduler/instances.py:
worker threads, execution timeouts, answering a batch's requests). A lone request on an idle model
may instead run on the loop thread itself (inline execution, ``BatchPolicy.inline_max_ns``, measured
by default; inferd/scheduler/inline.py runs it), skipping the two thread wake-ups that dominate a fast
model's latency; inferd/scheduler/lone.py decides, from the measured run, hop and loop lag. At most
one request of a model runs inline per loop turn (requests that arrive together are batched); a model
kept busy, or a loop with other work waiting, batches on the workers as before.

``close`` waits at most ``drain_timeout_ns`` for queued and running work, then fails what is left
(503). What a refused request is told lives in inferd/scheduler/refusals.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Hashable

from inferd.runtimes.base import Runtime
from inferd.runtimes.request_parameters import ModelParameters
from inferd.scheduler import refusals
from inferd.scheduler.adaptive import AdaptiveBatching
from inferd.scheduler.execution import Executor
from inferd.scheduler.inline import InlineRunner
from inferd.scheduler.instances import Instances
from inferd.scheduler.lone import LoneDecision
from inferd.scheduler.policy import BatchPolicy
from inferd.scheduler.queue import Outputs, Pending, RequestQueue
from inferd.scheduler.recording import ExecutionRecorder
from inferd.scheduler.stats import ModelStats
from inferd.scheduler.tracehook import RequestTrace

log = logging.getLogger(__name__)

# Lone requests in a row that may run inline at once (``alone``); the next one takes the queued path,
# whose dispatch turn is the loop-lag sample the load rule needs (inferd/scheduler/lone.py): without
# it, calls reaching the loop one per turn (gRPC under load) would never be seen as load.
ALONE_STREAK = 8


class Batcher:
    """``lone``: the lone-request rules to follow (by default, the policy's)."""

    def __init__(
        self,
        runtime: Runtime,
        policy: BatchPolicy,
        stats: ModelStats,
        name: str,
        lone: LoneDecision | None = None,
    ) -> None:
        self._policy = policy
        self._stats = stats
        self._name = name
        self._queue = RequestQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatch_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due_ns = 0
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        # Inline or hop for a lone request, with the measured run, hop and loop lag behind it.
        self._lone = (
            lone if lone is not None else LoneDecision(policy.inline_max_ns, policy.max_queue_delay_ns)
        )
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
        executor = Executor(runtime, policy.max_batch_size > 0, name)
        record = ExecutionRecorder(stats, self._lone, self.adaptive).record
        self._instances = Instances(
            runtime,
            executor,
            policy.execution_timeout_ns,
            stats,
            self._lone,
            self.adaptive,
            record,
            name,
            self._dispatch,
        )
        # The instances' own list and table, read here as they are: free ones, and the run on each
        # busy one (as many as are in flight). Only Instances changes them.
        self._free_instances = self._instances.free
        self._running = self._instances.running
        self._launch = self._instances.launch
        inline = InlineRunner(executor, stats, self._lone, record, self._free_instances, name)
        self._run_inline = inline.run
        self._answer_inline = inline.answer

    @property
    def pending(self) -> int:
        return self._queue.count + len(self._running)

    @property
    def backlog(self) -> tuple[int, int]:
        """Rows waiting and executions running: what the controller's completion estimate reads."""
        return self._queue.rows, len(self._running)

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
            raise refusals.shutting_down(self._name)
        queue = self._queue
        limit = self._policy.max_queue_size
        if limit and queue.count >= limit:
            raise refusals.queue_full(self._stats, self._name, limit)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        now = time.perf_counter_ns()
        adaptive = self.adaptive
        if adaptive is not None:
            adaptive.arrived(now, rows)
            if not adaptive.admits(rows, queue.rows, len(self._running)):
                raise refusals.shed(
                    self._stats, self._name, self._policy.target_p99_ns, "its predicted completion is past"
                )
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
            and not self._running
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
        """``InlineRunner.answer`` without the queue: the one request in progress runs on the loop now."""
        assert self._loop is not None
        self._ran_inline_this_turn = True
        self._alone_streak += 1
        self._loop.call_soon(self._next_turn)
        return self._run_inline(inputs, rows, group, trace, now, outputs, parameters)

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
                head.future.set_exception(
                    refusals.shed(
                        self._stats, self._name, self._policy.target_p99_ns, "its wait already takes it past"
                    )
                )
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
            refusals.reject_expired(self._stats, self._name, item)
            self._update_idle()

    async def close(self) -> None:
        """Stop taking requests, finish everything queued or running (within the drain timeout, then
        fail what is left), then release the threads."""
        self._closing = True
        timeout_ns = self._policy.drain_timeout_ns
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_ns / 1e9 if timeout_ns else None)
        except TimeoutError:
            self._give_up()
        self._instances.stop()

    def _give_up(self) -> None:
        """The drain timed out: answer every queued and running request with 503 now."""
        running = self._running
        log.warning(
            "model %s: drain timed out with %d queued requests and %d executions running; failing them",
            self._name,
            self._queue.count,
            len(running),
        )
        for instance, run in list(running.items()):
            self._instances.abandon(instance, run, refusals.not_finished(self._name))
        for item in self._queue.drain():
            if item.expiry is not None:
                item.expiry.cancel()
            if not item.future.done():
                item.future.set_exception(refusals.not_run(self._name))
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
                and not self._running
                and not self._ran_inline_this_turn
                and self._lone.inline((batch[0].group, batch[0].rows), time.perf_counter_ns())
            ):
                self._ran_inline_this_turn = True
                assert self._loop is not None
                self._loop.call_soon(self._next_turn)
                self._answer_inline(batch[0])
            else:
                self._launch(batch)
        if not self._queue.count:
            self._waiting_for_company = False  # its request went away (cancelled, expired)
        self._update_idle()

    def _ready_to_run(self) -> bool:
        policy = self._policy
        if not policy.merges or not self._running:
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
        if self._running or self._closing or not policy.merges or self._queue.rows >= self._batch_cap():
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
            # Its timer has not fired yet, but it must not run.
            refusals.reject_expired(self._stats, self._name, item)
        return batch

    def _update_idle(self) -> None:
        if not self._queue.count and not self._running:
            self._idle.set()
