"""A discrete-event simulation of the batcher's dispatch rules around AdaptiveBatching.

Simulated time only (integer nanoseconds), seeded Poisson arrivals and a model whose execution time
is a line over batch size with seeded jitter: every run is deterministic. The rules mirror
inferd/scheduler/batcher.py: a request on an idle model runs at once; with an execution running, a
free instance waits until the queue holds ``cap`` rows or the oldest has waited ``delay_ns``; the
oldest requests that are hopeless behind a backlog are shed first; arrivals the controller does not
admit are shed at once.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass, field

from inferd.scheduler.adaptive import AdaptiveBatching

MS = 1_000_000


@dataclass(frozen=True)
class LinearModel:
    """Execution time fixed_ns + per_row_ns·rows, times a seeded jitter in [1 - jitter, 1 + jitter]."""

    fixed_ns: int
    per_row_ns: int
    jitter: float = 0.05

    def capacity_per_s(self, rows: int, instances: int) -> float:
        return instances * rows / ((self.fixed_ns + self.per_row_ns * rows) / 1e9)


@dataclass
class Phase:
    """Poisson arrivals of one row each at ``rate_per_s`` for ``seconds`` of simulated time."""

    rate_per_s: float
    seconds: float


@dataclass
class PhaseResult:
    latencies_ns: list[int] = field(default_factory=list)
    batch_rows: list[int] = field(default_factory=list)
    shed: int = 0
    offered: int = 0
    delays_ns: list[int] = field(default_factory=list)

    def p99_ns(self) -> float:
        ordered = sorted(self.latencies_ns)
        return float(ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)])

    def mean_batch(self) -> float:
        return sum(self.batch_rows) / len(self.batch_rows)


class Simulation:
    def __init__(
        self, controller: AdaptiveBatching, model: LinearModel, instances: int, seed: int = 1
    ) -> None:
        self.controller = controller
        self.model = model
        self._random = random.Random(seed)
        self._free = instances
        self._in_flight = 0
        self._queue: deque[int] = deque()  # enqueue times; every request is one row
        self._events: list[tuple[int, int, str, object]] = []
        self._sequence = 0
        self._timer_due: int | None = None
        self.now = 0
        self._result = PhaseResult()

    def run(self, phase: Phase) -> PhaseResult:
        """Run one phase from the current state (queue and estimates carry over between phases)."""
        self._result = result = PhaseResult()
        end = self.now + int(phase.seconds * 1e9)
        arrival = self.now + self._gap(phase.rate_per_s)
        self._push(arrival, "arrive", None)
        while self._events:
            when, _, kind, data = heapq.heappop(self._events)
            if kind == "arrive" and when >= end:
                break
            self.now = when
            if kind == "arrive":
                self._arrive()
                self._push(when + self._gap(phase.rate_per_s), "arrive", None)
            elif kind == "done":
                assert isinstance(data, tuple)
                self._done(*data)
            elif when == self._timer_due:
                self._timer_due = None
                self._dispatch()
        # Leftover arrivals of this phase are dropped; executions and timers carry over.
        self._events = [event for event in self._events if event[2] != "arrive"]
        heapq.heapify(self._events)
        self.now = max(self.now, end)
        return result

    def _gap(self, rate_per_s: float) -> int:
        return max(1, int(self._random.expovariate(rate_per_s) * 1e9))

    def _push(self, when: int, kind: str, data: object) -> None:
        self._sequence += 1
        heapq.heappush(self._events, (when, self._sequence, kind, data))

    def _arrive(self) -> None:
        ctl = self.controller
        self._result.offered += 1
        ctl.arrived(self.now, 1)
        if not ctl.admits(1, len(self._queue), self._in_flight):
            self._result.shed += 1
            return
        self._queue.append(self.now)
        self._dispatch()

    def _dispatch(self) -> None:
        ctl = self.controller
        queue = self._queue
        if self._free:
            while queue and ctl.hopeless(self.now - queue[0], len(queue), self._free):
                queue.popleft()
                self._result.shed += 1
        while self._free and queue:
            plan = ctl.plan
            self._result.delays_ns.append(plan.delay_ns)
            ready = self._in_flight == 0 or len(queue) >= plan.cap or self.now - queue[0] >= plan.delay_ns
            if not ready:
                due = queue[0] + plan.delay_ns
                if self._timer_due != due:
                    self._timer_due = due
                    self._push(due, "timer", None)
                return
            batch = [queue.popleft() for _ in range(min(plan.cap, len(queue)))]
            model = self.model
            jitter = 1 + model.jitter * (2 * self._random.random() - 1)
            run_ns = int((model.fixed_ns + model.per_row_ns * len(batch)) * jitter)
            self._free -= 1
            self._in_flight += 1
            self._push(self.now + run_ns, "done", (batch, run_ns))

    def _done(self, batch: list[int], run_ns: int) -> None:
        self._free += 1
        self._in_flight -= 1
        ctl = self.controller
        ctl.executed(len(batch), run_ns)
        ctl.completed(self.now, batch)
        self._result.batch_rows.append(len(batch))
        self._result.latencies_ns.extend(self.now - start for start in batch)
        self._dispatch()
