"""The decision a lone request on an idle model faces: run inline, hop to a worker, or wait for company.

A request that finds its model idle (nothing queued, nothing executing) can:
- run inline on the event-loop thread: no thread wake-ups, which dominate a fast model's latency when
  the server is otherwise quiet (a lone client);
- hop to the instance's worker thread: the loop stays free for other work;
- wait for company: queue for a short while so that requests arriving next share its execution. A
  model that is busy already batches what queues behind the running execution (the batcher's queue
  delay); this is the idle model's case, which matters for gRPC: grpc.aio hands the loop one call per
  turn, so under load gRPC calls reach an idle model one by one and would each run alone.

What decides it is measured on the loop thread by the batcher that owns this object:
- ``run``: a lone execution's time per shape (non-batch dims, rows), a running average (a shape's
  first, often cold, run is dropped);
- ``hop``: what the hand-off costs: the time from launch to the result being back on the loop, less
  the execution itself, tracked low (a busy loop runs the result late: that is lag, not hop);
- ``lag``: how long a callback the batcher queued on the loop waited before it ran, i.e. the other
  work the loop had. The loop is *loaded* when the median of the last ``_LAGS`` waits exceeds
  ``LAG_RATIO`` times the shortest wait seen (the loop's own floor: one request's tail and the next
  one's parse): other requests are in progress. One slow turn (a preempted thread) is not load.

The rules, for a lone request on an idle model:
- inline when the loop is not loaded, its shape was measured to run within the bound (a fixed
  ``inline_execution_max_us``, or in auto mode ``HOP_FACTOR`` hops within ``[AUTO_MIN_NS,
  AUTO_MAX_NS]``: the run saves one hop, and a request arriving during it waits for it), and the model
  has been idle for at least that long (inline runs then take at most about half the loop's time); the
  batcher adds: at most one inline run per model per loop turn;
- otherwise, on a loaded loop, wait for company up to ``company_wait_ns`` (``COMPANY_TURNS`` loop
  turns as recently measured, at most the model's ``max_queue_delay`` when it sets one, else
  ``COMPANY_MAX_NS``), or until a full batch is queued. Waits that gather nobody twice in a row stop
  waits for the next ``_REPROBE`` lone requests, so a misjudged loop costs a lone client little;
- otherwise hop.
"""

from __future__ import annotations

from collections.abc import Hashable

# BatchPolicy.inline_max_ns: derive the bound from the measured hop (the default for ONNX models).
INLINE_AUTO = -1
# Auto mode: an inline run may take up to this many hops, within these bounds.
HOP_FACTOR = 8
AUTO_MIN_NS = 200_000
AUTO_MAX_NS = 1_000_000
# The loop is loaded while the batcher's callbacks keep waiting longer than this many times its floor.
LAG_RATIO = 3
# A lone request on a loaded loop waits for company for up to this many loop turns, at most this long.
COMPANY_TURNS = 32
COMPANY_MAX_NS = 2_000_000
# Until a hop is measured (no worker execution yet), assume this one (a 2-core VM's, docs/architecture.md).
_UNMEASURED_HOP_NS = 50_000
# Recent lag samples kept: the loop counts as loaded when most of them were long.
_LAGS = 3
# Lone requests that skip the company wait after two waits in a row gathered nobody.
_REPROBE = 64
# Weight of a longer lag sample in the floor (only while the loop is not loaded).
_FLOOR_RISE = 1 / 256

# Weight of the newest run in a shape's running estimate: one slow run (a preempted thread) does not
# stop inline execution, a model that really got slower stops it within a few runs.
_WEIGHT = 0.25
# Weight of a longer hop sample: a machine that really got slower is followed within tens of runs.
_HOP_RISE = 1 / 256
# Shapes whose execution time is remembered; past it the table starts over (shapes that vary a lot,
# such as sequence lengths, are then measured again).
_SHAPES = 256

Shape = tuple[Hashable, int]


class LoneDecision:
    """Estimates and rules for one model version's lone requests; loop thread only.

    ``bound_ns``: the policy's ``inline_max_ns``: 0 never inline, ``INLINE_AUTO`` the measured bound,
    otherwise a fixed bound. ``max_queue_delay_ns``: the model's own queue delay (0: none set).
    """

    __slots__ = (
        "_bound_ns",
        "_floor_ns",
        "_hop_ns",
        "_lag_at",
        "_lags",
        "_max_wait_ns",
        "_misses",
        "_runs",
        "_skip_waits",
        "idle_since_ns",
    )

    def __init__(self, bound_ns: int, max_queue_delay_ns: int = 0) -> None:
        self._bound_ns = bound_ns
        self._max_wait_ns = max_queue_delay_ns or COMPANY_MAX_NS
        self._runs: dict[Shape, tuple[float, int]] = {}
        self._hop_ns = 0.0
        self._lags = [0] * _LAGS
        self._lag_at = 0
        self._floor_ns = 0.0
        self._misses = 0
        self._skip_waits = 0
        # When the model's last execution finished (perf_counter_ns): how long it has been idle.
        self.idle_since_ns = 0

    @property
    def inlines(self) -> bool:
        """Whether inline execution is on at all (its estimates are kept only then)."""
        return self._bound_ns != 0

    @property
    def hop_ns(self) -> float:
        return self._hop_ns or _UNMEASURED_HOP_NS

    def bound_ns(self) -> float:
        """The longest run allowed inline now."""
        if self._bound_ns != INLINE_AUTO:
            return self._bound_ns
        return min(AUTO_MAX_NS, max(AUTO_MIN_NS, HOP_FACTOR * self.hop_ns))

    def run_ns(self, shape: Shape) -> float | None:
        measured = self._runs.get(shape)
        return None if measured is None else measured[0]

    def loaded(self) -> bool:
        """Whether the loop has had other work queued on each of the last few looks."""
        return self._recent_lag() > LAG_RATIO * self._floor_ns

    def _recent_lag(self) -> int:
        a, b, c = self._lags
        return max(min(a, b), min(max(a, b), c))  # the median of three

    def inline(self, shape: Shape, now_ns: int) -> bool:
        """Whether a lone request of ``shape`` on an idle model (the caller checks) runs inline now."""
        if not self._bound_ns:
            return False
        measured = self._runs.get(shape)
        if measured is None:
            return False  # an unmeasured shape runs on a worker first: its time there decides
        estimate = measured[0]
        return (
            estimate <= self.bound_ns()
            # A model idle for less than one run is under load: it batches on its workers instead.
            and now_ns - self.idle_since_ns >= estimate
            and not self.loaded()
        )

    def company_wait_ns(self) -> int:
        """How long a lone request on an idle model waits for others to share its execution."""
        if not self.loaded():
            return 0
        if self._skip_waits:
            self._skip_waits -= 1
            return 0
        return min(self._max_wait_ns, COMPANY_TURNS * self._recent_lag())

    def record_wait(self, gathered: bool) -> None:
        """A company wait ended; ``gathered``: others joined the request."""
        if gathered:
            self._misses = 0
            return
        self._misses += 1
        if self._misses >= 2:
            self._misses = 0
            self._skip_waits = _REPROBE

    def record_run(self, shape: Shape, run_ns: int) -> None:
        """A lone execution of ``shape`` took ``run_ns`` (merge, run and split)."""
        runs = self._runs
        measured = runs.get(shape)
        if measured is None:
            if len(runs) >= _SHAPES:
                runs.clear()
            runs[shape] = (run_ns, 1)
        elif measured[1] == 1:
            runs[shape] = (run_ns, 2)  # a shape's first run is often a cold one: drop it
        else:
            estimate = measured[0]
            runs[shape] = (estimate + _WEIGHT * (run_ns - estimate), measured[1] + 1)

    def record_hop(self, hop_ns: int) -> None:
        """A worker execution's result came back ``hop_ns`` later than the execution alone took.

        The estimate follows a shorter sample at once and a longer one slowly, and only while the
        loop is not loaded: a busy loop runs the result's callback late, which is lag, not hop."""
        hop = self._hop_ns
        sample = max(0, hop_ns)
        if not hop or sample < hop:
            self._hop_ns = float(sample)
        elif not self.loaded():
            self._hop_ns = hop + _HOP_RISE * (sample - hop)

    def record_lag(self, lag_ns: int) -> None:
        """A callback the batcher queued on the loop ran ``lag_ns`` after it was queued."""
        at = self._lag_at
        self._lags[at] = lag_ns
        self._lag_at = (at + 1) % _LAGS
        floor = self._floor_ns
        if not floor or lag_ns < floor:
            self._floor_ns = float(max(1, lag_ns))
        elif not self.loaded():
            self._floor_ns = floor + _FLOOR_RISE * (lag_ns - floor)
