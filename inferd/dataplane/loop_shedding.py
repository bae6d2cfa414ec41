"""Front-end shedding: refuse a request before its body is decoded when it would be answered late.

On a fast model the Python front-end, not the model, is what limits: parsing, decoding, encoding
and the loop's own turns take longer than the execution. When that event loop is saturated every
request waits behind the work of the requests ahead of it, and the adaptive batcher
(inferd/scheduler/adaptive.py), which sees a request only once it was decoded and queued, can
neither tell the lateness apart nor refuse cheaply. So the front-end asks first, for a model with
``target_p99_ms``, and predicts when the request would be answered (docs/adaptive-batching.md, step 6):

    predicted = L + max(line⁺(N + 1), min(batcher, T/2)),  refused when predicted > 0.9·T

- ``L``: the loop's lag, how long a callback queued now waits for the work ahead of it: about what
  this request already waited between its bytes arriving and this check (``LoopLag``).
- ``line⁺(N + 1)``: the time requests take in the server (decode, batcher, encode) against how many
  were in it when they started, themselves included, fitted online on answered requests
  (``ExecutionFit``, the same estimator as the batcher's execution line) with its jitter margin
  (``LINE_MARGIN`` mean deviations, at most the prediction itself): the queue of front-end work
  ahead of this request, as the server actually drained it lately.
- ``batcher``: the adaptive controller's completion for a row arriving at the model's batcher now
  (rounds of the batches queued ahead, then its own batch), from the one execution-time line the
  controller plans with. The larger of the two counts: the answer waits for both. It counts for
  half the target ``T`` at most: a model slower than its target is the batcher's to judge.

Past ``TARGET_SHARE`` of the target the request is refused at once (503 / UNAVAILABLE), before its
body is decoded. A loop whose lag is under ``MIN_LAG_NS`` never refuses: the front-end is not what
limits there, and the batcher's own shedding judges the model.

The lag is sampled while such requests arrive: a timer every ``SAMPLE_INTERVAL_NS`` queues a
callback with ``call_soon`` and measures how long it waited (on an idle loop: microseconds; a timer's
own lateness would add the timer's millisecond granularity). The decision reads the median of the
last ``SAMPLES`` samples, so one stall (a GC pause, a metrics scrape, a model load) is not load: only
a loop that lags turn after turn sheds. Without requests for a model with a target the sampler
stops after ``IDLE_TICKS`` ticks and forgets its samples; models without a target never start it,
and the line is fitted only while the sampler runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from inferd.errors import Unavailable
from inferd.scheduler.adaptive import AdaptiveBatching
from inferd.scheduler.estimates import ExecutionFit

# How often the lag is sampled while requests for models with a target arrive.
SAMPLE_INTERVAL_NS = 1_000_000
# Samples the decision reads (their median): fewer than half of them long is not load.
SAMPLES = 5
# A loop whose turns wait less than this is not lagging, whatever the target: a 2-core machine's turn
# holding a few requests, or the process preempted for a timeslice by another (a loaded CI runner).
MIN_LAG_NS = 2_000_000
# Ticks without a request for a model with a target before the sampler stops (about a second).
IDLE_TICKS = 1000
# Weight the line of time in the server keeps of the past at each answer: about the last 200 answers
# count (a few hundredths of a second near a fast model's capacity, a second or two at light load).
ANSWER_DECAY = 0.995
# Answers the line needs before it predicts; until then only the batcher's completion counts.
ANSWERS_WARM = 50
# Mean deviations of the line added to its prediction. Fewer than the batcher's 3: a request's time
# in the server varies with what arrives after it (later requests' parsing delays its encoding),
# which the deviation counts as noise; the target's share below keeps the headroom.
LINE_MARGIN = 2.0
# The share of the target a prediction may reach: the rest is left for what the server cannot see
# (a request's time in its socket before the loop reads it, the client's own turns).
TARGET_SHARE = 0.9


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
    """The front-end's question for a model with a target: refuse this request now? Loop thread only.

    It also keeps the count of requests in the server and the line of their time in it: the data
    plane calls ``enter`` when it starts serving a request and ``leave`` when it is done."""

    __slots__ = ("_clock", "in_server", "lag", "line")

    def __init__(self, lag: LoopLag | None = None, clock: Callable[[], int] = time.perf_counter_ns) -> None:
        self.lag = lag or LoopLag(clock)
        self._clock = clock
        self.in_server = 0
        # Time in the server (ns) against the requests in it when one started, itself included.
        self.line = ExecutionFit(ANSWER_DECAY)

    def enter(self) -> tuple[int, int]:
        """A request starts being served; returns its ticket for ``leave``."""
        ahead = self.in_server
        self.in_server = ahead + 1
        # Timed only while the sampler runs: a server without targets pays two attribute reads.
        return ahead, self._clock() if self.lag.running else 0

    def leave(self, ticket: tuple[int, int], answered: bool) -> None:
        """The request is done; an answered one teaches the line (a refusal or a failure does not:
        their short times say nothing of how long an answer takes)."""
        self.in_server -= 1
        ahead, start = ticket
        if answered and start:
            self.line.observe(ahead + 1, self._clock() - start)

    def predicted_ns(
        self, adaptive: AdaptiveBatching, backlog: tuple[int, int], counted: bool = False
    ) -> float:
        """When a request checked now would be answered, from now plus what it already waited (the
        lag); ``backlog``: the model's batcher's queued rows and running executions; ``counted``:
        the request is one of ``in_server`` already."""
        line = self.line
        front = 0.0
        if line.count >= ANSWERS_WARM:
            # The margin is at most the prediction itself: the deviation is one for the whole line,
            # and a few answers stalled by a GC pause or a descheduled process (tens of ms) would
            # otherwise refuse every request, even with nothing ahead, until answers bring it down.
            predicted = line.predict(self.in_server + (0 if counted else 1))
            front = predicted + min(LINE_MARGIN * line.deviation_ns, predicted)
        # A model slower than its target is the batcher's to judge (it never refuses a request that
        # runs at once): its share counts for half the target at most.
        batcher = min(adaptive.completion_ns(1, *backlog), adaptive.target_ns / 2)
        return self.lag.window.lag_ns + max(front, batcher)

    def refusal(
        self, model: str, adaptive: AdaptiveBatching, backlog: tuple[int, int] = (0, 0), counted: bool = False
    ) -> Unavailable | None:
        """The error to answer with when a request for ``model`` is predicted to be answered past
        its target; None to serve it. ``counted``: the request is one of ``in_server`` already (over
        gRPC the check runs once its serving began; over REST before)."""
        self.lag.touch()
        if self.lag.window.lag_ns < MIN_LAG_NS:
            return None
        predicted_ns = self.predicted_ns(adaptive, backlog, counted)
        if predicted_ns <= TARGET_SHARE * adaptive.target_ns:
            return None
        return Unavailable(
            f"model '{model}' is overloaded: request shed before decoding, predicted to be answered "
            f"in {predicted_ns / 1e6:.1f} ms with {self.in_server} requests in the server, past "
            f"{TARGET_SHARE:g} of the {adaptive.target_ns / 1e6:g} ms target "
            "(dynamic_batching.target_p99_ms); retry later"
        )
