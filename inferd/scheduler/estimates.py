"""What the adaptive batcher measures: execution time as a line over batch size, and the arrival rate.

Both are cheap O(1) updates on the event loop thread, with no clock of their own: callers pass the
time, so a test drives them with a simulated one.
"""

from __future__ import annotations

# Weight the fit keeps of the past at each execution: about the last 30 executions count, so a model
# that gets slower (another tenant on the machine) is followed within a few tens of batches.
_FIT_DECAY = 0.97
# Weight of the newest prediction error in the running mean absolute deviation.
_DEVIATION_WEIGHT = 0.1
# Planning adds this many mean deviations to a prediction: executions that jitter get headroom.
_DEVIATION_MARGIN = 3.0
# Batch sizes whose (weighted) variance is below this (rows²) are one size: no slope can be fitted.
_SIZE_VARIANCE = 0.01
# An execution counts as at most this many times its prediction: one preempted or paused run (GC,
# a noisy neighbour) nudges the line instead of throwing it; a model that really got slower still
# moves the line geometrically, within a few executions.
_OUTLIER_FACTOR = 3.0
# Weight of one closed window's rate in the arrival rate estimate.
_RATE_WEIGHT = 0.5


class ExecutionFit:
    """t(b) = intercept + slope·b, least squares with exponentially decaying weights (Nexus's
    batching profile, learned online instead of profiled ahead). ``decay``: the weight the fit keeps
    of the past at each observation (about ``1 / (1 - decay)`` observations count)."""

    __slots__ = (
        "_b",
        "_bb",
        "_bt",
        "_decay",
        "_t",
        "_w",
        "count",
        "deviation_ns",
        "intercept_ns",
        "slope_ns",
    )

    def __init__(self, decay: float = _FIT_DECAY) -> None:
        self._decay = decay
        self._w = self._b = self._bb = self._t = self._bt = 0.0
        self.count = 0
        self.intercept_ns = 0.0
        self.slope_ns = 0.0
        self.deviation_ns = 0.0

    def observe(self, rows: int, ns: int) -> None:
        if self.count:
            predicted = self.predict(rows)
            if predicted > 0:
                ns = min(ns, int(_OUTLIER_FACTOR * predicted))
            error = abs(ns - predicted)
            self.deviation_ns += _DEVIATION_WEIGHT * (error - self.deviation_ns)
        d = self._decay
        self._w = self._w * d + 1.0
        self._b = self._b * d + rows
        self._bb = self._bb * d + rows * rows
        self._t = self._t * d + ns
        self._bt = self._bt * d + rows * ns
        self.count += 1
        self._refit()

    def _refit(self) -> None:
        mean_b = self._b / self._w
        mean_t = self._t / self._w
        variance = self._bb / self._w - mean_b * mean_b
        if variance > _SIZE_VARIANCE:
            slope = (self._bt / self._w - mean_b * mean_t) / variance
            intercept = mean_t - slope * mean_b
        else:
            slope, intercept = mean_t / mean_b, 0.0  # one size seen: cost proportional to rows
        if slope < 0:  # noise: a bigger batch never runs faster
            slope, intercept = 0.0, mean_t
        elif intercept < 0:
            slope, intercept = mean_t / mean_b, 0.0
        self.slope_ns = slope
        self.intercept_ns = intercept

    def predict(self, rows: int) -> float:
        return self.intercept_ns + self.slope_ns * rows

    def bound(self, rows: int) -> float:
        """A prediction with headroom for jitter: what planning uses."""
        return self.predict(rows) + _DEVIATION_MARGIN * self.deviation_ns


class ArrivalRate:
    """Rows per nanosecond, averaged over fixed windows; a window with no arrivals counts as zero."""

    __slots__ = ("_rows", "_start_ns", "_window_ns", "per_ns")

    def __init__(self, window_ns: int) -> None:
        self._window_ns = window_ns
        self._start_ns: int | None = None
        self._rows = 0
        self.per_ns = 0.0

    def observe(self, now_ns: int, rows: int) -> bool:
        """Count an arrival; True when a window closed (the estimate changed)."""
        closed = self._roll(now_ns)
        self._rows += rows
        return closed

    def _roll(self, now_ns: int) -> bool:
        if self._start_ns is None:
            self._start_ns = now_ns
            return False
        elapsed = now_ns - self._start_ns
        if elapsed < self._window_ns:
            return False
        # k windows closed at once: the older ones were empty, so the period's mean rate carries
        # the weight of k windows (a long silence forgets the old rate almost entirely).
        windows = min(elapsed // self._window_ns, 32)
        weight = 1.0 - (1.0 - _RATE_WEIGHT) ** windows
        self.per_ns += weight * (self._rows / elapsed - self.per_ns)
        self._start_ns = now_ns
        self._rows = 0
        return True
