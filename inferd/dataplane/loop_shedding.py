"""Front-end shedding: refuse a request before its body is decoded when the event loop lags.

On a fast model the Python front-end, not the model, is what limits: parsing, decoding, encoding
and the loop's own turns take longer than the execution. When that event loop is saturated every
request waits several of its turns, and the adaptive batcher (inferd/scheduler/adaptive.py), which
sees a request only once it was decoded and queued, can neither tell the lateness apart nor refuse
cheaply. So the front-end asks first, for a model with ``target_p99_ms``: with the loop's current
lag ``L`` (how long a callback queued now waits for the work ahead of it), a new request needs about
``TURNS·L`` on the loop plus its execution; past the target it is refused at once (503 /
UNAVAILABLE), before its body is decoded. Only the loop refuses here: the execution counts for at
most half the target, and a lag under ``MIN_LAG_NS`` never refuses.

The lag is sampled while such requests arrive: a timer every ``SAMPLE_INTERVAL_NS`` queues a
callback with ``call_soon`` and measures how long it waited (on an idle loop: microseconds; a timer's
own lateness would add the timer's millisecond granularity). The decision reads the median of the
last ``SAMPLES`` samples, so one stall (a GC pause, a metrics scrape, a model load) is not load: only
a loop that lags turn after turn sheds. Without requests for a model with a target the sampler
stops after ``IDLE_TICKS`` ticks and forgets its samples; models without a target never start it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from inferd.errors import Unavailable
from inferd.scheduler.adaptive import AdaptiveBatching

# How often the lag is sampled while requests for models with a target arrive.
SAMPLE_INTERVAL_NS = 1_000_000
# Samples the decision reads (their median): fewer than half of them long is not load.
SAMPLES = 5
# Loop turns a request spends before its answer is sent: its bytes read, its task run (decode, queue),
# its execution's result back on the loop, its task resumed (encode, send).
TURNS = 4
# A loop whose turns wait less than this is not lagging, whatever the target: a 2-core machine's turn
# holding a few requests, or the process preempted for a timeslice by another (a loaded CI runner).
MIN_LAG_NS = 2_000_000
# Ticks without a request for a model with a target before the sampler stops (about a second).
IDLE_TICKS = 1000


class LagWindow:
    """The last ``SAMPLES`` lag samples; the estimate is their median. No clock: callers pass samples."""

    __slots__ = ("_at", "_samples", "lag_ns")

    def __init__(self) -> None:
        self._samples = [0] * SAMPLES
        self._at = 0
        # The median, kept up to date here (a sample arrives at most once a millisecond) rather than
        # computed on each request's path.
        self.lag_ns = 0

    def record(self, lag_ns: int) -> None:
        self._samples[self._at] = max(0, lag_ns)
        self._at = (self._at + 1) % SAMPLES
        self.lag_ns = sorted(self._samples)[SAMPLES // 2]

    def clear(self) -> None:
        self._samples = [0] * SAMPLES
        self.lag_ns = 0


def answers_in_time(lag_ns: int, execution_ns: float, target_ns: int) -> bool:
    """Whether a request arriving on a loop lagging ``lag_ns`` per turn, whose execution takes
    ``execution_ns``, can be answered within ``target_ns`` as far as the loop is concerned.

    The execution counts for at most half the target: a model slower than its target is the
    batcher's to judge (it never refuses a request that runs at once), so here only a loop whose own
    turns take at least half the target refuses. A turn under ``MIN_LAG_NS`` is not lag at all."""
    if lag_ns < MIN_LAG_NS:
        return True
    return TURNS * lag_ns + min(execution_ns, target_ns / 2) <= target_ns


class LoopLag:
    """Samples the event loop's lag while it is asked about (``touch``); loop thread only.

    ``clock``: nanoseconds, monotonic; ``loop``: the running loop's finder. Both injectable: a test
    drives the sampler in simulated time with a loop of its own."""

    __slots__ = ("_clock", "_idle_ticks", "_loop", "_loop_of", "_touched", "window")

    def __init__(
        self,
        clock: Callable[[], int] = time.perf_counter_ns,
        loop: Callable[[], asyncio.AbstractEventLoop] = asyncio.get_running_loop,
    ) -> None:
        self._clock = clock
        self._loop_of = loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._touched = False
        self._idle_ticks = 0
        self.window = LagWindow()

    @property
    def running(self) -> bool:
        return self._loop is not None

    def touch(self) -> None:
        """A request for a model with a target arrived: keep sampling (start if stopped)."""
        self._touched = True
        if self._loop is None:
            self._loop = self._loop_of()
            self._idle_ticks = 0
            self._loop.call_later(SAMPLE_INTERVAL_NS / 1e9, self.tick)

    def tick(self) -> None:
        """The sampling timer: queue the probe behind the loop's ready work, or stop when idle."""
        loop = self._loop
        if loop is None:
            return
        if self._touched:
            self._touched = False
            self._idle_ticks = 0
        else:
            self._idle_ticks += 1
            if self._idle_ticks >= IDLE_TICKS:
                self._loop = None
                self.window.clear()  # a later burst starts from an unloaded loop
                return
        loop.call_soon(self.measured, self._clock())

    def measured(self, queued_ns: int) -> None:
        """The probe ran: record how long it waited, and arm the next tick."""
        self.window.record(self._clock() - queued_ns)
        if self._loop is not None:
            self._loop.call_later(SAMPLE_INTERVAL_NS / 1e9, self.tick)


class LoopShedding:
    """The front-end's question for a model with a target: refuse this request now?"""

    __slots__ = ("lag",)

    def __init__(self, lag: LoopLag | None = None) -> None:
        self.lag = lag or LoopLag()

    def refusal(self, model: str, adaptive: AdaptiveBatching) -> Unavailable | None:
        """The error to answer with when a request for ``model`` cannot be answered within its
        target on the loop as it lags now; None to serve it. Loop thread only."""
        self.lag.touch()
        lag_ns = self.lag.window.lag_ns
        if lag_ns < MIN_LAG_NS:
            return None
        # Its own execution, as the controller predicts it at the batch size the load forms (0 until
        # the controller is warm: a cold model is never refused for its execution).
        execution_ns = adaptive.fit.bound(adaptive.plan.needed) if adaptive.warm else 0.0
        if answers_in_time(lag_ns, execution_ns, adaptive.target_ns):
            return None
        return Unavailable(
            f"model '{model}' is overloaded: request shed before decoding, the server's event loop "
            f"lags {lag_ns / 1e6:.1f} ms a turn, past the {adaptive.target_ns / 1e6:g} ms target "
            "(dynamic_batching.target_p99_ms); retry later"
        )
