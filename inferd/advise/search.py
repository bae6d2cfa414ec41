"""The advisor's search: probe execution time at a few batch sizes per (version, instances, threads),
fit a line, predict the capacity of every batch cap whose p99 fits the SLO, and measure for real only
the best predicted cap of a few layouts, each with a search for the highest rate that holds the SLO.

Everything that touches a model is behind two callables, so the search runs as well against a
synthetic cost model (tests/advise) as against ONNX Runtime sessions (inferd.advise.measure).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

# A batch executes for t(b); a request can arrive just after a batch started on every instance, wait
# for it, then execute in the next: p99 ~ 2 t(b). The margin covers jitter the line does not model.
LATENCY_FACTOR = 2.0
SLO_MARGIN = 0.8
# Candidates verified for real: the best predicted cap of each of the CONTENDERS best layouts, if
# predicted within CONTENDER_SHARE of the top. What a layout really sustains can be half what its
# probes predict and differ from layout to layout (per-batch dispatch, threads fighting for cores),
# so one ranking by prediction is not enough to choose between layouts.
CONTENDER_SHARE = 0.5
CONTENDERS = 3
# A contender is not verified once a configuration sustained more than its predicted capacity by
# 1/OUT_OF_REACH (1.43): layouts sustain about what their probes predict or less (measured on the cnn
# on a loaded 2-core VM: 0.3-1.27 of it), so it could only win through probes that far too pessimistic.
OUT_OF_REACH = 0.7
# Caps of one layout predicted within this share of its best count as tied: the largest is verified.
TIE = 0.99
# The rate search of one configuration (the same for the advisor and for benchmarks' exhaustive grid):
# start at the capacity predicted, after a miss go down to BACKOFF of what was sustained, then bisect
# between the highest rate held and the lowest missed until they are within RESOLUTION.
BACKOFF = 0.85
RESOLUTION = 1.05
RATE_TRIES = 4
GIVE_UP = 3
# Largest batch cap whose line is probed at its two ends only.
SHORT_RANGE = 4
# Verifications at most, all configurations together.
MAX_VERIFICATIONS = 14


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
    """A configuration measured under load: inferences/s it sustained and the p99 it held, at the
    Poisson ``rate`` offered (set by ``rate_at_slo``; a short run sustains less than it was offered,
    as its figure counts the drain of the last arrivals, so the two are different currencies)."""

    throughput: float
    p99_s: float
    rate: float = 0.0


@dataclass(frozen=True, slots=True)
class Line:
    """Execution time of one batch, per instance, while every instance runs: t(b) = fixed + per_row * b."""

    fixed_s: float
    per_row_s: float

    def __call__(self, batch: int) -> float:
        return max(self.fixed_s + self.per_row_s * batch, 1e-9)


@dataclass(frozen=True, slots=True)
class Prediction:
    """``throughput`` is the capacity (every instance executing full batches back to back)."""

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
    # Every configuration verified, with the best rate it held (None: it held none tried).
    tried: dict[Config, Verified | None] = field(default_factory=dict)
    # Highest share of its predicted capacity a verified configuration held: later rate searches
    # start there instead of at the prediction, saving the miss that would tell them the same.
    realized: float = 1.0
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


def settled(rounds: Sequence[Sequence[float]], tolerance: float) -> bool:
    """Whether the two lowest round medians agree within ``tolerance`` (1.05: 5%): two rounds that
    agree ran clear of other processes' bursts alike (or under the same steady load), so another
    round would only confirm the figure. A quiet machine's probe then takes two rounds, not three."""
    medians = sorted(statistics.median(r) for r in rounds if r)
    return len(medians) >= 2 and medians[1] <= tolerance * medians[0]


def low_time(rounds: Sequence[Sequence[float]]) -> float:
    """The execution time a probe reports: the lowest of the rounds' medians. Other processes only
    ever add time, in bursts; one round that ran clear of them is the machine's own figure, and the
    median inside a round drops a lone fast or slow run."""
    return min(statistics.median(r) for r in rounds if r)


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


def capacity(layout: Layout, batch_cap: int, seconds: float) -> float:
    """Inferences/s when every instance executes full batches back to back."""
    return layout.instances * batch_cap / seconds


def predictions(layout: Layout, line: Line, caps: Sequence[int], slo_s: float) -> list[Prediction]:
    """Every cap whose predicted p99 fits the SLO (with the margin), with its predicted capacity."""
    return [
        Prediction(Config(layout, cap), capacity(layout, cap, line(cap)), LATENCY_FACTOR * line(cap))
        for cap in caps
        if LATENCY_FACTOR * line(cap) <= slo_s * SLO_MARGIN
    ]


def predict(layout: Layout, line: Line, caps: Sequence[int], slo_s: float) -> Prediction | None:
    """The cap with the highest predicted capacity whose p99 fits the SLO."""
    return max(predictions(layout, line, caps, slo_s), key=lambda p: p.throughput, default=None)


def probe_points(max_batch: int) -> list[int]:
    """Three batch sizes spread over the range: enough for a line and a check of it. Up to
    SHORT_RANGE rows, the two ends: the caps between them lie on the line they draw, and a slow
    model's probes (the cnn's: 4 images a third of a second) were a large share of its search."""
    if max_batch <= SHORT_RANGE:
        return sorted({1, max_batch})
    return sorted({1, max(1, int(math.sqrt(max_batch))), max_batch})


def rate_at_slo(
    config: Config,
    start: float,
    slo_s: float,
    verify: Verify,
    tries: int = RATE_TRIES,
    ceiling: float = 0.0,
    beat: float = 0.0,
    plateau: bool = False,
) -> tuple[Verified | None, int]:
    """The highest offered rate at which ``config`` held the p99, as (its measurement or None,
    verifications made). From ``start`` (the capacity predicted): while it holds and nothing missed
    yet, go up to ``ceiling`` (a start below the prediction), then by 1/BACKOFF (the probes may have
    been pessimistic); after a miss with nothing held, go down to BACKOFF of what was sustained; then
    bisect between the highest rate held and the lowest missed until they are within RESOLUTION.

    ``beat``: what another configuration sustained (its figure), when the question is whether this one
    sustains more. The search then stops at a run that did not sustain more than ``beat``, held or
    missed, while none of its runs did: offered at least the rate the other held (the caller starts
    there), this one served no more, so it cannot win by more than the measurements can tell apart.

    ``plateau`` (the advisor's searches; the grid's run without it): stop at a run that held at a rate
    above every rate held before yet sustained no more than the best of them: offered more, it served
    no more, so it is past its capacity and a higher rate only adds a miss (the costliest run: it
    lasts until answers are an SLO late). Its figure is then the highest of fewer runs than the
    grid's search would make, so it can only come out lower, never flattered."""
    held: Verified | None = None
    held_rate, missed_rate = 0.0, math.inf
    rate, runs = start, 0
    while runs < tries:
        measured = replace(verify(config, rate), rate=rate)
        runs += 1
        saturated = held is not None and rate > held_rate and measured.throughput <= held.throughput
        if measured.p99_s <= slo_s:
            if held is None or measured.throughput > held.throughput:
                held = measured
            held_rate = max(held_rate, rate)
        else:
            # Overloaded, it sustained its capacity: any rate above that misses too.
            missed_rate = min(missed_rate, rate, measured.throughput)
        if beat and measured.throughput <= beat and (held is None or held.throughput <= beat):
            break  # sustained no more than the other at a rate at least the other's: it lost
        if plateau and saturated and measured.p99_s <= slo_s:
            break
        if held_rate and missed_rate <= held_rate * RESOLUTION or missed_rate <= beat * RESOLUTION:
            break
        if not held_rate and runs >= GIVE_UP:
            break  # missed even well below what it sustained: its p99 does not fit at any rate
        if not held_rate:
            # Under overload the throughput sustained is the capacity: back off from it, not from
            # the rate offered, which may be far above it.
            rate = BACKOFF * min(measured.throughput, rate)
        elif missed_rate == math.inf:
            rate = ceiling if ceiling > held_rate * RESOLUTION else held_rate / BACKOFF
        else:
            rate = (held_rate + missed_rate) / 2
    return held, runs


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
        advice.predictions += predictions(layout, line, caps, slo_s)
    advice.predictions.sort(key=lambda p: (-p.throughput, p.config.layout, p.config.batch_cap))
    if not advice.predictions:
        advice.problem = f"no configuration is predicted to hold p99 under {slo_s * 1e3:g} ms on this machine"
        return advice
    for prediction in _contenders(advice.predictions):
        if advice.verified is None or prediction.throughput >= OUT_OF_REACH * advice.verified.throughput:
            _try(advice, prediction, slo_s, verify)
    # Fall back down the ranking while nothing held (the probes were wrong about the top ones): the
    # layouts not tried yet first, as one that missed at every rate tried is likely to miss at any cap.
    tried = {c.layout for c in advice.tried}
    for prediction in sorted(advice.predictions, key=lambda p: p.config.layout in tried):
        if advice.best is not None or advice.verifications >= MAX_VERIFICATIONS:
            break
        _try(advice, prediction, slo_s, verify)
    if advice.best is None:
        advice.problem = f"no configuration verified held p99 {slo_s * 1e3:g} ms when measured"
        return advice
    _climb(advice, caps, slo_s, verify)
    return advice


def _contenders(ranked: Sequence[Prediction]) -> list[Prediction]:
    """The best prediction of each layout predicted within CONTENDER_SHARE of the top, at most
    CONTENDERS: probes a few percent off reorder those, so each gets measured."""
    chosen: list[Prediction] = []
    for prediction in ranked:
        if prediction.throughput < CONTENDER_SHARE * ranked[0].throughput or len(chosen) == CONTENDERS:
            break
        if all(c.config.layout != prediction.config.layout for c in chosen):
            chosen.append(_largest_tied(ranked, prediction))
    return chosen


def _largest_tied(ranked: Sequence[Prediction], best: Prediction) -> Prediction:
    """Among the caps of ``best``'s layout predicted within TIE of it, the largest. A line through the
    origin (no fixed cost, as the cnn's probes often fit) predicts the same capacity for every cap;
    a bigger batch still saves the per-batch cost the probes do not see, and starting from the
    smallest cap made the climb step up cap by cap, each step a rate search of its own."""
    layout = best.config.layout
    tied = [p for p in ranked if p.config.layout == layout and p.throughput >= TIE * best.throughput]
    return max(tied, key=lambda p: p.config.batch_cap)


def _try(advice: Advice, prediction: Prediction, slo_s: float, verify: Verify) -> None:
    config = prediction.config
    left = MAX_VERIFICATIONS - advice.verifications
    if config in advice.tried or left <= 0:
        return
    start = prediction.throughput * advice.realized
    beat = advice.verified.throughput if advice.verified else 0.0
    if advice.verified:
        # Another configuration held: the question is whether this one sustains more, so it is
        # offered a little more than the rate the other held (a rate, not the other's figure: a short
        # run's figure is below the rate it held) and dropped at its first run that sustains no more.
        # A loser then costs one verification instead of a whole rate search (on a slow model, where
        # each verification lasts seconds, that was most of the advisor's time).
        start = max(advice.verified.rate, beat) * RESOLUTION
    held, runs = rate_at_slo(
        config, start, slo_s, verify, min(RATE_TRIES, left), prediction.throughput, beat, plateau=True
    )
    advice.verifications += runs
    advice.tried[config] = held
    if held is not None:
        share = held.throughput / prediction.throughput
        # The first figure replaces the guess of 1; later ones keep the most optimistic.
        advice.realized = share if advice.verified is None else max(advice.realized, share)
    if held is not None and (advice.verified is None or held.throughput > advice.verified.throughput):
        advice.best, advice.predicted, advice.verified = config, prediction, held


def _climb(advice: Advice, caps: list[int], slo_s: float, verify: Verify) -> None:
    """Try the winner's next bigger caps while its measured p99, scaled by the line, leaves room:
    the p99 model (2 t(b), with a margin) is a guess, and a bigger cap holds more."""
    while advice.verifications < MAX_VERIFICATIONS:
        assert advice.best is not None and advice.verified is not None
        config, line = advice.best, advice.lines[advice.best.layout]
        bigger = [c for c in caps if c > config.batch_cap and Config(config.layout, c) not in advice.tried]
        if not bigger:
            return
        cap = bigger[0]
        if advice.verified.p99_s * line(cap) / line(config.batch_cap) > slo_s:
            return
        layout = config.layout
        prediction = Prediction(
            Config(layout, cap), capacity(layout, cap, line(cap)), LATENCY_FACTOR * line(cap)
        )
        before = advice.best
        _try(advice, prediction, slo_s, verify)
        if advice.best == before:
            return
