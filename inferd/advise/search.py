"""The advisor's search: probe execution time at a few batch sizes per (version, instances, threads),
fit a line, predict the throughput each batch cap holds under the SLO, and verify only the best.

Everything that touches a model is behind two callables, so the search runs as well against a
synthetic cost model (tests/advise) as against ONNX Runtime sessions (inferd.advise.measure).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# A batch executes for t(b); a request can arrive just after a batch started on every instance, wait
# for it, then execute in the next: p99 ~ 2 t(b). The margin covers jitter the line does not model.
LATENCY_FACTOR = 2.0
SLO_MARGIN = 0.8
# Run instances at this share of their capacity: a queue fed at 100% of capacity grows without bound.
UTILIZATION = 0.8
# A winner that missed the SLO is measured again at this share of what it sustained: under overload
# the figure sustained is the capacity with an unbounded queue, well above the rate that holds a p99.
BACKOFF = 0.5
# Verifications at most: the winner at its predicted rate (then lower rates while it misses the SLO),
# then bigger caps while the p99 measured leaves room.
MAX_VERIFICATIONS = 4


@dataclass(frozen=True, slots=True, order=True)
class Layout:
    """How a version executes: ``instances`` sessions, each with ``threads`` intra-op threads."""

    version: int
    instances: int
    threads: int


@dataclass(frozen=True, slots=True)
class Config:
    layout: Layout
    batch_cap: int


@dataclass(frozen=True, slots=True)
class Verified:
    """A configuration measured under load: inferences/s it sustained and the p99 it held."""

    throughput: float
    p99_s: float


@dataclass(frozen=True, slots=True)
class Line:
    """Execution time of one batch, per instance, while every instance runs: t(b) = fixed + per_row * b."""

    fixed_s: float
    per_row_s: float

    def __call__(self, batch: int) -> float:
        return max(self.fixed_s + self.per_row_s * batch, 1e-9)


@dataclass(frozen=True, slots=True)
class Prediction:
    config: Config
    throughput: float
    p99_s: float


@dataclass(slots=True)
class Advice:
    best: Config | None
    predicted: Prediction | None
    verified: Verified | None
    predictions: list[Prediction] = field(default_factory=list)
    lines: dict[Layout, Line] = field(default_factory=dict)
    probes: int = 0
    verifications: int = 0
    # Why nothing meets the SLO; empty when ``best`` is set.
    problem: str = ""


# (layout, batch) -> seconds one batch takes per instance while all instances of the layout run.
Probe = Callable[[Layout, int], float]
# (config, offered rate) -> what a real load at that rate measured.
Verify = Callable[[Config, float], Verified]


def batch_caps(max_batch: int) -> list[int]:
    """Powers of two up to the model's cap, and the cap itself."""
    caps = {1, max_batch}
    size = 2
    while size < max_batch:
        caps.add(size)
        size *= 2
    return sorted(caps)


def layouts(versions: Sequence[int], cores: int) -> list[Layout]:
    """Instances x threads that fit the cores (powers of two, and the cores themselves)."""
    counts = sorted({c for c in (1, 2, 4, 8, 16, 32, cores) if c <= cores})
    return [
        Layout(v, instances, threads)
        for v in versions
        for instances in counts
        for threads in counts
        if instances * threads <= cores
    ]


def fit(points: Sequence[tuple[int, float]]) -> Line:
    """Least-squares line through (batch, seconds); with one point, all of it is per row."""
    if len(points) == 1:
        batch, seconds = points[0]
        return Line(0.0, seconds / batch)
    n = len(points)
    mean_b = sum(b for b, _ in points) / n
    mean_t = sum(t for _, t in points) / n
    var = sum((b - mean_b) ** 2 for b, _ in points)
    slope = sum((b - mean_b) * (t - mean_t) for b, t in points) / var if var else 0.0
    slope = max(slope, 0.0)
    return Line(max(mean_t - slope * mean_b, 0.0), slope)


def predict(layout: Layout, line: Line, caps: Sequence[int], slo_s: float) -> Prediction | None:
    """The cap with the highest throughput whose predicted p99 fits the SLO (with the margin)."""
    best = None
    for cap in caps:
        p99 = LATENCY_FACTOR * line(cap)
        if p99 > slo_s * SLO_MARGIN:
            continue
        throughput = UTILIZATION * layout.instances * cap / line(cap)
        if best is None or throughput > best.throughput:
            best = Prediction(Config(layout, cap), throughput, p99)
    return best


def probe_points(max_batch: int) -> list[int]:
    """Three batch sizes spread over the range: enough for a line and a check of it."""
    return sorted({1, max(1, int(math.sqrt(max_batch))), max_batch})


def search(
    candidates: Sequence[Layout], max_batch: int, slo_s: float, probe: Probe, verify: Verify
) -> Advice:
    advice = Advice(None, None, None)
    caps = batch_caps(max_batch)
    for layout in candidates:
        points = [(b, probe(layout, b)) for b in probe_points(max_batch)]
        advice.probes += len(points)
        line = fit(points)
        advice.lines[layout] = line
        prediction = predict(layout, line, caps, slo_s)
        if prediction is not None:
            advice.predictions.append(prediction)
    advice.predictions.sort(key=lambda p: (-p.throughput, p.config.layout))
    if not advice.predictions:
        advice.problem = f"no configuration is predicted to hold p99 under {slo_s * 1e3:g} ms on this machine"
        return advice
    return _verify(advice, caps, slo_s, verify)


def _verify(advice: Advice, caps: list[int], slo_s: float, verify: Verify) -> Advice:
    """Measure the predicted winner at its predicted rate; when it misses the SLO there, measure it
    again at half the throughput it did sustain (the prediction left out some overhead). When
    it holds, try the next bigger cap if the p99 measured leaves room for it (the margin is a guess)."""
    prediction = advice.predictions[0]
    rate = prediction.throughput
    while advice.verifications < MAX_VERIFICATIONS:
        measured = verify(prediction.config, rate)
        advice.verifications += 1
        if measured.p99_s <= slo_s:
            advice.best, advice.predicted, advice.verified = prediction.config, prediction, measured
            break
        rate = BACKOFF * min(measured.throughput, rate)
    if advice.best is None or advice.verified is None:
        advice.problem = f"the predicted best configuration missed p99 {slo_s * 1e3:g} ms when measured"
        return advice
    _climb(advice, caps, slo_s, verify)
    return advice


def _climb(advice: Advice, caps: list[int], slo_s: float, verify: Verify) -> None:
    while advice.verifications < MAX_VERIFICATIONS:
        assert advice.best is not None and advice.verified is not None
        config, line = advice.best, advice.lines[advice.best.layout]
        bigger = [c for c in caps if c > config.batch_cap]
        if not bigger:
            return
        cap = bigger[0]
        # Scale the measured p99 by the predicted growth of one execution.
        if advice.verified.p99_s * line(cap) / line(config.batch_cap) > slo_s:
            return
        layout = config.layout
        prediction = Prediction(
            Config(layout, cap), UTILIZATION * layout.instances * cap / line(cap), LATENCY_FACTOR * line(cap)
        )
        measured = verify(prediction.config, prediction.throughput)
        advice.verifications += 1
        if measured.p99_s > slo_s or measured.throughput <= advice.verified.throughput:
            return
        advice.best, advice.predicted, advice.verified = prediction.config, prediction, measured
