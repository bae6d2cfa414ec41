"""Open- and closed-loop load over a Submitter, recorded without coordinated omission.

Every request has a *scheduled* time: in the open loop it comes from a Poisson schedule fixed before
the run; in the closed loop it is when the previous request of that worker finished. Latency is
measured from that time, so a server that stalls cannot hide the queue that built up behind it. Only
requests scheduled inside the measurement window (after the warm-up) are counted; requests still
unanswered when the drain time runs out count as failures ("no answer").
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from inferd.bench.clients import CONNECT_FAILED, CONNECTION_LOST, Submitter
from inferd.bench.endpoint import BenchError

NO_ANSWER = "no answer"
OVERLOADED = "not sent: too many outstanding"

# A server that died refuses every connection at once, so a closed loop would retry as fast as the CPU
# allows. The run stops when nothing but failed connects came back for this long, or this many times
# in a row (whichever first; a connection lost mid-request neither counts nor breaks the run of them).
GONE_AFTER_S = 2.0
GONE_AFTER_CONNECTS = 200


class ServerGone(BenchError):
    """The server stopped accepting connections during a run."""


@dataclass(slots=True)
class LoadResult:
    """What one process measured in one run; ``merge`` adds up runs from several processes."""

    window_s: float
    latencies_s: npt.NDArray[np.float64]
    errors: dict[str, int]
    completed_in_window: int
    # How late the generator sent requests against their schedule (open loop only).
    send_lag_s: npt.NDArray[np.float64]
    generator_cpu_s: float
    generator_wall_s: float
    error_samples: dict[str, str] = field(default_factory=dict)
    processes: int = 1

    @property
    def throughput(self) -> float:
        """Successful completions per second inside the window."""
        return self.completed_in_window / self.window_s if self.window_s > 0 else 0.0

    @property
    def sent(self) -> int:
        return len(self.latencies_s) + sum(self.errors.values())

    @staticmethod
    def merge(parts: list[LoadResult]) -> LoadResult:
        errors: Counter[str] = Counter()
        samples: dict[str, str] = {}
        for part in parts:
            errors.update(part.errors)
            for kind, text in part.error_samples.items():
                samples.setdefault(kind, text)
        window = sum(p.window_s for p in parts) / len(parts)
        return LoadResult(
            window_s=window,
            latencies_s=np.concatenate([p.latencies_s for p in parts]),
            errors=dict(errors),
            # Each process counted over its own (near-identical) window; rescale to the mean one.
            completed_in_window=round(sum(p.throughput for p in parts) * window),
            send_lag_s=np.concatenate([p.send_lag_s for p in parts]),
            generator_cpu_s=sum(p.generator_cpu_s for p in parts),
            generator_wall_s=max(p.generator_wall_s for p in parts),
            error_samples=samples,
            processes=sum(p.processes for p in parts),
        )


class _Recorder:
    __slots__ = (
        "completed",
        "end",
        "errors",
        "failed_connects",
        "first_failed_connect",
        "gone",
        "latencies",
        "outstanding",
        "start",
    )

    def __init__(self, start: float, end: float) -> None:
        self.start = start
        self.end = end
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.completed = 0
        self.outstanding = 0
        # Failed connects since the last other outcome, and when the first of them came back.
        self.failed_connects = 0
        self.first_failed_connect = 0.0
        self.gone = asyncio.Event()

    def _watch_connects(self, kind: str | None, now: float) -> None:
        if kind == CONNECT_FAILED:
            if self.failed_connects == 0:
                self.first_failed_connect = now
            self.failed_connects += 1
            if self.failed_connects >= GONE_AFTER_CONNECTS or now - self.first_failed_connect >= GONE_AFTER_S:
                self.gone.set()
        elif kind != CONNECTION_LOST:
            self.failed_connects = 0

    def done(self, scheduled: float, kind: str | None, now: float) -> None:
        self.outstanding -= 1
        self._watch_connects(kind, now)
        if kind is None and self.start <= now < self.end:
            self.completed += 1
        if self.start <= scheduled < self.end:
            if kind is None:
                self.latencies.append(now - scheduled)
            else:
                self.errors[kind] += 1


def poisson_schedule(rate: float, duration_s: float, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Send offsets in seconds from 0 for Poisson arrivals at ``rate`` per second over ``duration_s``."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be positive")
    expected = rate * duration_s
    # Enough draws that running short is ~10 standard deviations away; the tail is cut off below.
    count = int(expected + 10 * math.sqrt(expected) + 10)
    offsets = np.cumsum(rng.exponential(1.0 / rate, size=count))
    while offsets[-1] < duration_s:  # astronomically rare; keep the schedule honest anyway
        more = offsets[-1] + np.cumsum(rng.exponential(1.0 / rate, size=count))
        offsets = np.concatenate([offsets, more])
    return offsets[offsets < duration_s]


async def _drain(recorder: _Recorder, idle: asyncio.Event, drain_s: float) -> None:
    if recorder.outstanding > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(idle.wait(), timeout=drain_s)


async def _until(deadline: float, gone: asyncio.Event) -> None:
    """Sleep until the perf_counter() ``deadline``, or until the server is found gone."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(gone.wait(), timeout=max(0.0, deadline - time.perf_counter()))


def _check_gone(recorder: _Recorder, submitter: Submitter) -> None:
    if recorder.gone.is_set():
        why = submitter.error_samples.get(CONNECT_FAILED, "")
        raise ServerGone(
            f"the server stopped accepting connections, so the run stopped: {recorder.failed_connects} "
            "connection attempts in a row failed" + (f" ({why})" if why else "")
        )


def _result(
    recorder: _Recorder,
    window_s: float,
    lags: list[float],
    submitter: Submitter,
    cpu0: float,
    wall0: float,
    unanswered: int,
) -> LoadResult:
    errors = dict(recorder.errors)
    if unanswered:
        errors[NO_ANSWER] = errors.get(NO_ANSWER, 0) + unanswered
    return LoadResult(
        window_s=window_s,
        latencies_s=np.asarray(recorder.latencies, dtype=np.float64),
        errors=errors,
        completed_in_window=recorder.completed,
        send_lag_s=np.asarray(lags, dtype=np.float64),
        generator_cpu_s=time.process_time() - cpu0,
        generator_wall_s=time.perf_counter() - wall0,
        error_samples=dict(submitter.error_samples),
    )


async def closed_loop(
    submitter: Submitter, concurrency: int, warmup_s: float, duration_s: float, drain_s: float
) -> LoadResult:
    """``concurrency`` workers, each sending its next request as soon as the previous one finishes."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    start = time.perf_counter() + warmup_s
    recorder = _Recorder(start, start + duration_s)
    idle = asyncio.Event()
    in_window_unanswered: dict[int, float] = {}

    def issue(worker: int) -> None:
        scheduled = time.perf_counter()
        recorder.outstanding += 1
        in_window_unanswered[worker] = scheduled
        submitter.submit(lambda kind, arrived: finished(worker, scheduled, kind, arrived))

    def finished(worker: int, scheduled: float, kind: str | None, arrived: float) -> None:
        recorder.done(scheduled, kind, arrived)
        del in_window_unanswered[worker]
        if time.perf_counter() < recorder.end and not recorder.gone.is_set():
            issue(worker)
        elif recorder.outstanding == 0:
            idle.set()

    for worker in range(concurrency):
        issue(worker)
    await _until(recorder.end, recorder.gone)
    _check_gone(recorder, submitter)
    await _drain(recorder, idle, drain_s)
    unanswered = sum(1 for t in in_window_unanswered.values() if recorder.start <= t < recorder.end)
    return _result(recorder, duration_s, [], submitter, cpu0, wall0, unanswered)


async def open_loop(
    submitter: Submitter,
    schedule: npt.NDArray[np.float64],
    warmup_s: float,
    duration_s: float,
    drain_s: float,
    max_outstanding: int,
) -> LoadResult:
    """Send at the ``schedule`` offsets (seconds) whatever the server does; the first ``warmup_s``
    seconds are not counted. Requests over ``max_outstanding`` in flight fail as not sent."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    origin = time.perf_counter()
    recorder = _Recorder(origin + warmup_s, origin + warmup_s + duration_s)
    idle = asyncio.Event()
    pending: set[float] = set()
    lags: list[float] = []
    schedule_done = False

    def finished(scheduled: float, kind: str | None, arrived: float) -> None:
        pending.discard(scheduled)
        recorder.done(scheduled, kind, arrived)
        if schedule_done and recorder.outstanding == 0:
            idle.set()

    times = (origin + schedule).tolist()
    index, count = 0, len(times)
    while index < count:
        now = time.perf_counter()
        # Send everything that is due: if the loop woke late, the late ones go out at once and their
        # lateness stays in their latency.
        while index < count and times[index] <= now:
            scheduled = times[index]
            index += 1
            if recorder.start <= scheduled < recorder.end:
                lags.append(now - scheduled)
            recorder.outstanding += 1
            if recorder.outstanding > max_outstanding:
                recorder.done(scheduled, OVERLOADED, now)
                continue
            pending.add(scheduled)
            submitter.submit(functools.partial(finished, scheduled))
        _check_gone(recorder, submitter)  # a flag test: the send loop stays as cheap as it was
        if index < count:
            await asyncio.sleep(times[index] - time.perf_counter())
    schedule_done = True
    await _until(recorder.end, recorder.gone)
    _check_gone(recorder, submitter)
    if recorder.outstanding == 0:
        idle.set()
    await _drain(recorder, idle, drain_s)
    unanswered = sum(1 for t in pending if recorder.start <= t < recorder.end)
    return _result(recorder, duration_s, lags, submitter, cpu0, wall0, unanswered)
