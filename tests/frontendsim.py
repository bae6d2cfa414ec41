"""A discrete-event simulation of a server whose event loop, not its model, is what limits.

Simulated time only (integer nanoseconds), seeded arrivals and a seeded jitter: every run is
deterministic. One event loop runs its work first in, first out (asyncio's ready queue): each
request's head and body (the shedding check, then decoding and queueing for the batcher), later its
answer's encoding. Requests arrive in bursts (``burst`` at a time, Poisson between bursts), as a loop
turn reads several sockets at once: the loop then lags a burst's work while each request waits only
for the part ahead of it. One model instance runs what queued while it ran (``AdaptiveBatching``'s cap,
no delay with one instance, as inferd/scheduler/batcher.py does). The shedding rule under test is the
real ``LoopShedding``, with its lag sampler on the simulated loop and clock.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from inferd.dataplane.loop_shedding import LagWindow, LoopLag, LoopShedding
from inferd.scheduler.adaptive import AdaptiveBatching

MS = 1_000_000


@dataclass(frozen=True)
class Costs:
    """Event-loop time per request, and the model's execution time per batch."""

    head_ns: int = 50_000  # reading the head, routing, the shedding check
    refuse_ns: int = 30_000  # answering a refused request (its head was read already)
    decode_ns: int = 200_000  # reading the body, decoding, queueing for the batcher
    encode_ns: int = 100_000  # encoding and sending the answer
    fixed_ns: int = 150_000  # one execution: fixed_ns + per_row_ns·rows, on another core
    per_row_ns: int = 5_000
    jitter: float = 0.1

    @property
    def capacity_per_s(self) -> float:
        """What the loop serves when every request is answered."""
        return 1e9 / (self.head_ns + self.decode_ns + self.encode_ns)


@dataclass
class Result:
    latencies_ns: list[int] = field(default_factory=list)
    shed: int = 0
    offered: int = 0
    batch_rows: list[int] = field(default_factory=list)
    lags_ns: list[int] = field(default_factory=list)

    def p99_ns(self) -> float:
        ordered = sorted(self.latencies_ns)
        return float(ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)])

    def within(self, target_ns: int) -> int:
        return sum(1 for latency in self.latencies_ns if latency <= target_ns)


class _Loop:
    """What LoopLag asks of an event loop, on the simulation's loop."""

    def __init__(self, simulation: FrontEndSimulation) -> None:
        self._simulation = simulation

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> None:
        simulation = self._simulation
        simulation.push(simulation.now + int(delay_s * 1e9), "timer", callback)

    def call_soon(self, callback: Callable[..., None], *args: Any) -> None:
        self._simulation.on_loop(0, _call(callback, *args))


class _RecordingWindow(LagWindow):
    """The lag window, keeping every sample in the simulation's result too."""

    def __init__(self, simulation: FrontEndSimulation) -> None:
        super().__init__()
        self._simulation = simulation

    def record(self, lag_ns: int) -> None:
        self._simulation.result.lags_ns.append(lag_ns)
        super().record(lag_ns)


class FrontEndSimulation:
    def __init__(
        self,
        controller: AdaptiveBatching,
        costs: Costs,
        burst: int = 1,
        seed: int = 1,
        shedding: LoopShedding | None = None,
    ) -> None:
        self.controller = controller
        self.costs = costs
        self.burst = burst
        self.now = 0
        self._random = random.Random(seed)
        self._events: list[tuple[int, int, str, Any]] = []
        self._sequence = 0
        self._work: deque[tuple[int, Callable[[], None]]] = deque()  # the loop's ready queue
        self._loop_busy = False
        # The batcher's queue: (arrival, queued at the batcher, ticket).
        self._queue: deque[tuple[int, int, tuple[int, int]]] = deque()
        self._running = False
        self.result = Result()
        loop = cast(asyncio.AbstractEventLoop, _Loop(self))
        self.shedding = shedding or LoopShedding(LoopLag(self.clock, lambda: loop), self.clock)
        self.shedding.lag.window = _RecordingWindow(self)

    def clock(self) -> int:
        return self.now

    # --- the event queue ---

    def push(self, when: int, kind: str, data: Any) -> None:
        self._sequence += 1
        heapq.heappush(self._events, (when, self._sequence, kind, data))

    def run(self, rate_per_s: float, seconds: float) -> Result:
        """Requests at ``rate_per_s`` for ``seconds``, then until every admitted one is answered."""
        self.result = result = Result()
        # The last run's next arrival is not this run's: only its work and timers carry over.
        self._events = [event for event in self._events if event[2] != "arrive"]
        heapq.heapify(self._events)
        end = self.now + int(seconds * 1e9)
        self.push(self.now + self._gap(rate_per_s), "arrive", None)
        while self._events:
            when, _, kind, data = heapq.heappop(self._events)
            if kind == "arrive" and when >= end:
                continue
            self.now = when
            if kind == "arrive":
                for _ in range(self.burst):
                    self._arrive()
                self.push(when + self._gap(rate_per_s), "arrive", None)
            elif kind == "timer":
                data()  # a timer's callback is cheap: it runs between two pieces of work
            elif kind == "loop":
                data()  # the piece of work is done: what it leads to happens now
                self._loop_next()
            elif kind == "done":
                self._done(*data)
            if kind != "arrive" and when >= end and not self._pending():
                break
        return result

    def _pending(self) -> bool:
        return bool(self._work or self._loop_busy or self._queue or self._running)

    def _gap(self, rate_per_s: float) -> int:
        return max(1, int(self._random.expovariate(rate_per_s / self.burst) * 1e9))

    # --- the event loop: one piece of work at a time, in order ---

    def on_loop(self, cost_ns: int, then: Callable[[], None]) -> None:
        """Queue ``cost_ns`` of work on the loop; ``then`` runs when it is done."""
        self._work.append((cost_ns, then))
        if not self._loop_busy:
            self._loop_next()

    def _loop_next(self) -> None:
        if not self._work:
            self._loop_busy = False
            return
        self._loop_busy = True
        cost_ns, then = self._work.popleft()
        self.push(self.now + cost_ns, "loop", then)

    # --- a request ---

    def _arrive(self) -> None:
        self.result.offered += 1
        arrival = self.now
        self.on_loop(self.costs.head_ns, lambda: self._check(arrival))

    def _check(self, arrival: int) -> None:
        backlog = (len(self._queue), 1 if self._running else 0)
        if self.shedding.refusal("m", self.controller, backlog) is not None:
            self.result.shed += 1
            self.on_loop(self.costs.refuse_ns, lambda: None)
            return
        ticket = self.shedding.enter()
        self.on_loop(self.costs.decode_ns, lambda: self._queued(arrival, ticket))

    def _queued(self, arrival: int, ticket: tuple[int, int]) -> None:
        controller = self.controller
        controller.arrived(self.now, 1)
        if not controller.admits(1, len(self._queue), 1 if self._running else 0):
            self.result.shed += 1
            self.shedding.leave(ticket, False)
            return
        self._queue.append((arrival, self.now, ticket))
        self._dispatch()

    def _dispatch(self) -> None:
        if self._running or not self._queue:
            return
        controller = self.controller
        while self._queue and controller.hopeless(self.now - self._queue[0][1], len(self._queue), 1):
            _, _, ticket = self._queue.popleft()
            self.result.shed += 1
            self.shedding.leave(ticket, False)
        if not self._queue:
            return
        batch = [self._queue.popleft() for _ in range(min(controller.plan.cap, len(self._queue)))]
        costs = self.costs
        jitter = 1 + costs.jitter * (2 * self._random.random() - 1)
        run_ns = int((costs.fixed_ns + costs.per_row_ns * len(batch)) * jitter)
        self._running = True
        self.push(self.now + run_ns, "done", (batch, run_ns))

    def _done(self, batch: list[tuple[int, int, tuple[int, int]]], run_ns: int) -> None:
        self._running = False
        controller = self.controller
        controller.executed(len(batch), run_ns)
        controller.completed(self.now, [queued for _, queued, _ in batch])
        self.result.batch_rows.append(len(batch))
        for arrival, _, ticket in batch:
            self.on_loop(self.costs.encode_ns, _call(self._answered, arrival, ticket))
        self._dispatch()

    def _answered(self, arrival: int, ticket: tuple[int, int]) -> None:
        self.shedding.leave(ticket, True)
        self.result.latencies_ns.append(self.now - arrival)


def _call(function: Callable[..., None], *args: Any) -> Callable[[], None]:
    return lambda: function(*args)
