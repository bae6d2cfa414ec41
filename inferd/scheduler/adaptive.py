"""SLO-aware adaptive batching (``dynamic_batching: {target_p99_ms: N}``): the controller.

The batcher reads two things from its ``plan``, how long the oldest request may wait for company
(``delay_ns``) and how many rows a batch may take (``cap``), and asks whether to refuse a request
(``admits`` at arrival, ``hopeless`` for the oldest waiting one at dispatch). It reports back every
arrival, every execution's (rows, ns) and every request's time in the batcher. All calls come from
the event loop thread and take the time as an argument: the controller has no clock of its own, so
a test drives it with a simulated one. docs/adaptive-batching.md gives the control law and why it
is stable.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from inferd.scheduler.estimates import ArrivalRate, ExecutionFit

log = logging.getLogger(__name__)

# Executions measured before the controller plans: until then no delay, the full cap, no shedding.
# The first one is not fitted: a model's first run is often a cold one (lazy allocations, caches).
WARM_EXECUTIONS = 8
# Utilisation the chosen batch size aims at: below 1 so a burst finds spare capacity.
TARGET_UTILISATION = 0.8
# The share of the target that planning may spend (queue wait + execution), tuned by AIMD on the
# measured misses: starts at START, grows by STEP per window met, shrinks by DECREASE per window missed.
BUDGET_START = 0.8
BUDGET_MIN = 0.2
BUDGET_MAX = 0.9
BUDGET_STEP = 0.02
BUDGET_DECREASE = 0.75
# The AIMD loop shrinks the budget on misses only while a batch at the cap takes at least this share
# of the target: misses with shorter batches are not the batch size's doing.
EXECUTION_SHARE = 0.25
# Shedding applies only while the arrivals keep the instances busy at least this share of the time.
SATURATION = 0.7
# Requests per measurement window of the AIMD loop; more than 1% of them late is a p99 miss.
MISS_WINDOW = 100
ALLOWED_MISSES = 1


@dataclass(frozen=True, slots=True)
class Plan:
    """What the controller chose, recomputed when an estimate changes; read on every dispatch."""

    cap: int
    delay_ns: int
    # Rows per batch the arrival rate needs to keep utilisation at TARGET_UTILISATION.
    needed: int
    # The arrival rate exceeds what batches of ``cap`` rows can serve.
    overloaded: bool
    # The arrivals keep the instances busy at least SATURATION of the time: the model is what
    # limits, so a queue in the batcher means late answers and shedding pays. Below it the queue
    # drains by itself and lateness comes from elsewhere (a saturated event loop), where refusing a
    # request already parsed costs the front-end nearly what answering it would.
    saturated: bool = False


class AdaptiveBatching:
    def __init__(
        self, target_ns: int, max_batch_size: int, instances: int, max_delay_ns: int = 0, name: str = ""
    ) -> None:
        """``max_delay_ns``: a ceiling over the delay it chooses (max_queue_delay_ms); 0: none.
        ``name``: the model's, for the log."""
        self.target_ns = target_ns
        self._name = name
        self._executions = 0
        self._warned = False
        self._max_rows = max(1, max_batch_size)
        self._instances = max(1, instances)
        self._max_delay_ns = max_delay_ns or target_ns
        self.fit = ExecutionFit()
        # The window is the target itself (within 1 ms .. 1 s): the rate follows the load within
        # a few targets' time, the horizon over which the target is judged.
        self.rate = ArrivalRate(min(max(target_ns, 1_000_000), 1_000_000_000))
        self.budget = BUDGET_START
        self._served = 0
        self._late = 0
        self.plan = Plan(self._max_rows, 0, 1, False)

    @property
    def warm(self) -> bool:
        return self._executions >= WARM_EXECUTIONS

    # --- what the batcher reports ---

    def arrived(self, now_ns: int, rows: int) -> None:
        if self.rate.observe(now_ns, rows):
            self._replan()

    def executed(self, rows: int, ns: int) -> None:
        self._executions += 1
        if self._executions > 1:
            self.fit.observe(rows, ns)
            self._replan()

    def completed(self, now_ns: int, enqueued_ns: list[int]) -> None:
        """Requests answered at ``now_ns``: Clipper's AIMD on the planning budget, per window."""
        target = self.target_ns
        self._late += sum(1 for start in enqueued_ns if now_ns - start > target)
        self._served += len(enqueued_ns)
        if self._served < MISS_WINDOW:
            return
        if self._late > ALLOWED_MISSES * self._served / MISS_WINDOW:
            # Smaller batches help only when their execution is a real share of the target. Below
            # it the misses come from elsewhere (a saturated event loop delays every completion):
            # shrinking the cap would add executions, load the loop more and spiral down.
            if self._long_batches():
                self.budget = max(BUDGET_MIN, self.budget * BUDGET_DECREASE)
        else:
            self.budget = min(BUDGET_MAX, self.budget + BUDGET_STEP)
        self._served = self._late = 0
        self._replan()

    # --- what the batcher asks ---

    def admits(self, rows: int, queued_rows: int, busy: int) -> bool:
        """Whether a request arriving now can finish within the target (Clockwork's admission)."""
        if not self.warm or (not queued_rows and busy < self._instances):
            return True  # it runs at once: refusing it would help nobody
        if not self.plan.saturated and not (busy >= self._instances and self._long_batches()):
            return True  # the queue drains by itself: lateness, if any, comes from elsewhere
        return self.completion_ns(rows, queued_rows, busy) <= self.target_ns

    def completion_ns(self, rows: int, queued_rows: int, busy: int) -> float:
        """The time a request of ``rows`` arriving now would spend in the batcher, with
        ``queued_rows`` waiting ahead of it and ``busy`` instances running: the rounds of full
        batches ahead, then its own batch (with the fit's jitter margin). 0 while cold."""
        if not self.warm:
            return 0.0
        cap = self.plan.cap
        total = queued_rows + rows
        batches = math.ceil(total / cap)
        rounds = math.ceil(batches / self._instances)
        fit = self.fit
        # Earlier rounds run full batches; its own batch is the last one, holding what is left.
        wait = (rounds - 1) * fit.predict(cap) + fit.bound(total - (batches - 1) * cap)
        if busy >= self._instances:
            wait += fit.predict(cap) / 2  # what is left, on average, of the running batches
        return wait

    def hopeless(self, waited_ns: int, queued_rows: int, free: int) -> bool:
        """Whether the oldest waiting request will miss the target anyway and dropping it lets a
        request that can still make it run in its place (``free``: idle instances now)."""
        cap = self.plan.cap
        # Only with a backlog: when the free instances take everything waiting, dropping the head
        # frees nothing for anyone (and a request alone on a free instance is never shed).
        if not self.warm or queued_rows <= cap * free:
            return False
        if not self.plan.saturated and not self._long_batches():
            return False
        return waited_ns + self.fit.bound(cap) > self.target_ns

    def _long_batches(self) -> bool:
        """A batch at the cap takes a real share of the target: the model, not the front-end, is
        what makes a request late once every instance is busy."""
        return self.fit.predict(self.plan.cap) >= EXECUTION_SHARE * self.target_ns

    # --- the control law ---

    def _replan(self) -> None:
        if not self.warm:
            return
        fit = self.fit
        budget_ns = self.budget * self.target_ns
        # Nexus: a request may wait for a whole batch already running, then run in the next one,
        # so a batch may take at most half the budget.
        cap = _largest_within(fit, budget_ns / 2, self._max_rows)
        rate = self.rate.per_ns
        needed = _rows_needed(fit, rate, self._instances, cap)
        delay_ns = 0
        # One instance: the batcher never holds it idle (whatever queued while it ran is the next
        # batch), so a delay would never apply; it is reported as 0 rather than as a fiction.
        if needed > 1 and rate > 0 and self._instances > 1:
            # Wait for the batch the load needs, as long as the oldest still makes the budget.
            gather_ns = (needed - 1) / rate
            delay_ns = int(max(0.0, min(gather_ns, budget_ns - fit.bound(needed), self._max_delay_ns)))
        demand = rate * fit.predict(cap)
        overloaded = demand > self._instances * cap
        saturated = demand >= SATURATION * self._instances * cap
        self.plan = Plan(cap, delay_ns, needed, overloaded, saturated)
        if not self._warned and fit.bound(1) > self.target_ns:
            self._warned = True
            log.warning(
                "model %s: one row takes about %.1f ms, beyond its target_p99_ms %g: every request "
                "that cannot start at once will be shed",
                self._name,
                fit.bound(1) / 1e6,
                self.target_ns / 1e6,
            )


def _largest_within(fit: ExecutionFit, limit_ns: float, max_rows: int) -> int:
    """The largest batch (1 .. max_rows) whose execution bound stays within ``limit_ns``."""
    if fit.bound(max_rows) <= limit_ns:
        return max_rows
    if fit.slope_ns <= 0:
        return 1
    rows = int((limit_ns - fit.bound(0)) / fit.slope_ns)
    return min(max_rows, max(1, rows))


def _rows_needed(fit: ExecutionFit, rate: float, instances: int, cap: int) -> int:
    """The smallest batch at which the instances keep up with ``rate`` at TARGET_UTILISATION:
    rate·t(b) <= u·n·b, solved on the line t(b) = a + s·b; ``cap`` when none does."""
    if rate <= 0:
        return 1
    spare = TARGET_UTILISATION * instances - rate * fit.slope_ns
    if spare <= 0:
        return cap
    rows = math.ceil(rate * fit.bound(0) / spare)
    return min(cap, max(1, rows))
