"""The advisor's search against a synthetic, deterministic cost model: no wall clock anywhere."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from inferd.advise.search import (
    BACKOFF,
    LATENCY_FACTOR,
    MAX_VERIFICATIONS,
    OUT_OF_REACH,
    RATE_TRIES,
    RESOLUTION,
    SLO_MARGIN,
    Config,
    Layout,
    Line,
    Verified,
    batch_caps,
    fit,
    layouts,
    low_time,
    predict,
    probe_points,
    rate_at_slo,
    search,
    settled,
)

CORES = 8


@dataclass
class Synthetic:
    """A machine with CORES cores: a batch costs a fixed overhead plus a per-row cost that threads
    divide (with diminishing returns); layouts wanting more than the cores slow down in proportion.
    Version 2 is an 'optimized' one, 1.6x cheaper per row. Counts every measurement it is asked for.
    A configuration holds its p99 up to ``knee`` of its capacity (a queue fed near capacity waits;
    above 1, a run too short for its queue to grow past the SLO) and sustains ``drain`` of the rate it
    is offered, up to its capacity (a short run's figure counts the drain of its last arrivals)."""

    calls: list[str] = field(default_factory=list)
    knee: float = 1.0
    drain: float = 1.0
    # Share of the capacity its executions allow that a layout really sustains (what the probes miss:
    # per-batch dispatch, instances fighting over one interpreter).
    realize: Callable[[Layout], float] = lambda layout: 1.0

    def exec_s(self, layout: Layout, batch: int) -> float:
        per_row = 40e-6 / (1.6 if layout.version == 2 else 1.0) / layout.threads**0.8
        oversubscribed = max(1.0, layout.instances * layout.threads / CORES)
        return (150e-6 + per_row * batch) * oversubscribed

    def capacity(self, config: Config) -> float:
        layout = config.layout
        return (
            self.realize(layout) * layout.instances * config.batch_cap / self.exec_s(layout, config.batch_cap)
        )

    def probe(self, layout: Layout, batch: int) -> float:
        self.calls.append("probe")
        return self.exec_s(layout, batch)

    def verify(self, config: Config, rate: float) -> Verified:
        self.calls.append("verify")
        capacity = self.capacity(config)
        sustained = self.drain * min(rate, capacity)
        if rate > self.knee * capacity:  # the queue grows, p99 is far off, capacity is what it sustains
            return Verified(sustained, 1.0)
        return Verified(sustained, LATENCY_FACTOR * self.exec_s(config.layout, config.batch_cap))

    def grid_best(self, slo_s: float, max_batch: int, versions: tuple[int, ...] = (1, 2)) -> float:
        """Throughput at SLO of the best configuration, knowing the truth (the exhaustive grid)."""
        return max(
            self.capacity(Config(layout, cap))
            for layout in layouts(versions, CORES)
            for cap in batch_caps(max_batch)
            if LATENCY_FACTOR * self.exec_s(layout, cap) <= slo_s
        )

    def best_layout(self, slo_s: float, max_batch: int, versions: list[int]) -> Layout:
        return max(
            (Config(layout, cap) for layout in layouts(versions, CORES) for cap in batch_caps(max_batch)),
            key=lambda c: (
                self.capacity(c) if LATENCY_FACTOR * self.exec_s(c.layout, c.batch_cap) <= slo_s else 0
            ),
        ).layout


def test_fit_recovers_a_line_and_never_a_negative_slope() -> None:
    line = fit([(1, 0.0012), (8, 0.0026), (64, 0.0138)])
    assert line.fixed_s == pytest.approx(0.001)
    assert line.per_row_s == pytest.approx(0.0002)
    assert fit([(1, 0.002), (64, 0.001)]).per_row_s == 0.0
    assert fit([(4, 0.004)]) == Line(0.0, 0.001)


def test_probes_spread_over_the_range_and_a_short_range_is_probed_at_its_ends() -> None:
    assert probe_points(64) == [1, 8, 64]
    assert probe_points(4) == [1, 4]
    assert probe_points(1) == [1]


def test_caps_and_layouts_enumerate_what_fits() -> None:
    assert batch_caps(48) == [1, 2, 4, 8, 16, 32, 48]
    assert batch_caps(1) == [1]
    found = layouts([1], 2)
    assert [(x.instances, x.threads) for x in found] == [(1, 1), (1, 2), (2, 1)]


def test_prediction_keeps_the_p99_inside_the_slo_with_margin() -> None:
    line = Line(0.001, 0.0001)  # t(b) = 1 ms + 0.1 ms per row
    prediction = predict(Layout(1, 2, 1), line, batch_caps(256), slo_s=0.010)
    assert prediction is not None
    assert LATENCY_FACTOR * line(prediction.config.batch_cap) <= 0.010 * SLO_MARGIN
    assert prediction.config.batch_cap == 16  # 32 would take 2 * 4.2 ms > 8 ms
    assert predict(Layout(1, 1, 1), line, [1, 2], slo_s=0.001) is None


@pytest.mark.parametrize(("slo_ms", "max_batch"), [(2.0, 64), (5.0, 128), (20.0, 256)])
def test_search_reaches_95_percent_of_the_grid_with_a_fraction_of_its_measurements(
    slo_ms: float, max_batch: int
) -> None:
    machine = Synthetic()
    candidates = layouts([1, 2], CORES)
    advice = search(candidates, max_batch, slo_ms / 1e3, machine.probe, machine.verify)
    assert advice.best is not None and advice.verified is not None, advice.problem
    assert advice.verified.p99_s <= slo_ms / 1e3
    assert advice.best.layout.version == 2  # the optimized version wins when it is cheaper
    best_possible = machine.grid_best(slo_ms / 1e3, max_batch)
    # Verified at 80% utilization, as it would be served; the capacity it found is what is compared.
    assert machine.capacity(advice.best) >= 0.95 * best_possible
    grid_measurements = len(candidates) * len(batch_caps(max_batch))
    assert len(machine.calls) <= 0.5 * grid_measurements
    assert advice.probes == 3 * len(candidates) and 1 <= advice.verifications <= MAX_VERIFICATIONS


def test_a_winner_that_misses_when_measured_is_measured_again_at_a_lower_rate() -> None:
    machine = Synthetic()
    optimistic = Synthetic()

    def probe(layout: Layout, batch: int) -> float:  # the probes see half the real cost
        return optimistic.probe(layout, batch) / 2

    advice = search(layouts([1], CORES), 64, 0.01, probe, machine.verify)
    assert advice.best is not None and advice.verifications >= 2
    assert advice.verified is not None and advice.verified.p99_s <= 0.01


def test_nothing_fits_a_slo_below_one_execution() -> None:
    machine = Synthetic()
    advice = search(layouts([1], CORES), 64, 100e-6, machine.probe, machine.verify)
    assert advice.best is None
    assert advice.problem == "no configuration is predicted to hold p99 under 0.1 ms on this machine"
    assert "verify" not in machine.calls


def test_a_configuration_that_never_holds_is_reported_not_advised() -> None:
    machine = Synthetic()
    advice = search(layouts([1], CORES), 64, 0.01, machine.probe, lambda config, rate: Verified(rate, 1.0))
    assert advice.best is None and advice.verifications == MAX_VERIFICATIONS
    assert advice.problem == "no configuration verified held p99 10 ms when measured"


def test_the_probe_figure_is_the_lowest_round_median_so_bursts_of_load_do_not_count() -> None:
    # Three rounds of a 1 ms execution: one round hit by another process, lone outliers in the others.
    rounds = [[0.004, 0.005, 0.0041, 0.0045], [0.001, 0.0011, 0.009, 0.001], [0.0010, 0.0002, 0.0012, 0.0011]]
    assert low_time(rounds) == pytest.approx(0.00105)


def test_a_probe_settles_after_two_rounds_that_agree_and_not_after_one_hit_by_a_burst() -> None:
    quiet = [[0.100, 0.101, 0.099], [0.103, 0.102, 0.104]]
    assert settled(quiet, 1.05) and low_time(quiet) == pytest.approx(0.100)
    burst = [[0.100, 0.101, 0.099], [0.150, 0.160, 0.140]]  # the second round ran beside another job
    assert not settled(burst, 1.05) and not settled(burst[:1], 1.05)
    assert settled([*burst, [0.102, 0.101, 0.103]], 1.05)  # the third agrees with the first


def test_the_rate_search_finds_the_knee_below_capacity_not_a_fixed_share_of_it() -> None:
    machine = Synthetic(knee=0.9)
    config = Config(Layout(1, 2, 1), 16)
    capacity = machine.capacity(config)
    held, runs = rate_at_slo(config, capacity, 0.02, machine.verify)
    # Missed at capacity, backed off, then bisected to within the resolution of the knee.
    assert held is not None and 0.9 * capacity / RESOLUTION <= held.throughput <= 0.9 * capacity
    assert runs == 4
    # Started far above capacity: it backs off from what was sustained, not from the rate offered.
    held, _ = rate_at_slo(config, 100 * capacity, 0.02, machine.verify)
    assert held is not None and held.throughput >= 0.9 * capacity / RESOLUTION
    # A miss at or below what another configuration held ends the search: this one cannot win.
    held, runs = rate_at_slo(config, capacity, 0.02, machine.verify, beat=capacity)
    assert held is None and runs == 1
    # Started below (pessimistic probes): it climbs.
    held, _ = rate_at_slo(config, 0.8 * capacity, 0.02, machine.verify)
    assert held is not None and held.throughput >= 0.9 * capacity / RESOLUTION


def test_a_queue_that_misses_at_capacity_still_reaches_95_percent_of_the_grid() -> None:
    machine = Synthetic(knee=0.9)
    advice = search(layouts([1, 2], CORES), 64, 0.005, machine.probe, machine.verify)
    assert advice.verified is not None
    assert advice.verified.throughput >= 0.95 * 0.9 * machine.grid_best(0.005, 64)


def test_probes_that_misrank_the_best_layout_are_corrected_by_verifying_the_contenders() -> None:
    machine = Synthetic()
    best = machine.best_layout(0.005, 64, [1])

    def probe(layout: Layout, batch: int) -> float:  # noise hit the best layout's probes: 15% slower
        return machine.probe(layout, batch) * (1.15 if layout == best else 1.0)

    advice = search(layouts([1], CORES), 64, 0.005, probe, machine.verify)
    assert advice.predictions[0].config.layout != best  # the probes ranked another layout first
    assert advice.best is not None and advice.best.layout == best
    assert advice.verified is not None
    assert advice.verified.throughput >= 0.95 * machine.grid_best(0.005, 64, (1,)) / RESOLUTION


@pytest.mark.parametrize("seed", range(6))
def test_noisy_probes_and_a_knee_still_reach_95_percent_of_the_grid(seed: int) -> None:
    """A loaded machine after the probe statistic: every probe up to 20% slow, at random."""
    machine = Synthetic(knee=0.9)
    rng = random.Random(seed)

    def probe(layout: Layout, batch: int) -> float:
        return machine.probe(layout, batch) * (1 + 0.2 * rng.random())

    advice = search(layouts([1, 2], CORES), 64, 0.005, probe, machine.verify)
    assert advice.verified is not None and advice.verified.p99_s <= 0.005
    assert advice.verified.throughput >= 0.95 * 0.9 * machine.grid_best(0.005, 64) / RESOLUTION
    assert advice.verifications <= MAX_VERIFICATIONS


def test_when_the_contenders_never_hold_the_search_falls_back_down_the_ranking() -> None:
    machine = Synthetic()

    def verify(config: Config, rate: float) -> Verified:  # several instances thrash on this machine
        if config.layout.instances > 1:
            return Verified(rate, 1.0)
        return machine.verify(config, rate)

    advice = search(layouts([1], CORES), 64, 0.005, machine.probe, verify)
    assert advice.best is not None and advice.best.layout.instances == 1
    assert any(held is None for held in advice.tried.values())


def test_a_layout_that_sustains_far_less_than_its_probes_predict_loses_to_one_that_does_not() -> None:
    """Two instances predicted best, but they sustain 40% of it: the contenders include the single
    instance layouts, and the search picks the one that really serves most."""
    machine = Synthetic(realize=lambda layout: 0.4 if layout.instances > 1 else 1.0)
    candidates = layouts([1], 2)
    advice = search(candidates, 64, 0.005, machine.probe, machine.verify)
    assert advice.predictions[0].config.layout.instances == 2
    assert advice.best is not None and advice.best.layout.instances == 1
    truth = max(
        machine.capacity(Config(layout, cap))
        for layout in candidates
        for cap in batch_caps(64)
        if LATENCY_FACTOR * machine.exec_s(layout, cap) <= 0.005
    )
    assert advice.verified is not None and advice.verified.throughput >= 0.95 * truth / RESOLUTION


def test_a_contender_that_cannot_beat_the_best_costs_one_verification() -> None:
    """A cnn-like space (2 cores, caps 1-4) where two instances sustain 60% of their prediction, so
    every layout is within reach of the first one measured: after the first contender's rate search,
    each other one is asked first whether it holds more than the best; one that does becomes the best
    and gets its own search, one that does not costs one verification."""
    machine = Synthetic(knee=0.9, realize=lambda layout: 0.6 if layout.instances > 1 else 1.0)
    verified: list[Config] = []

    def verify(config: Config, rate: float) -> Verified:
        verified.append(config)
        return machine.verify(config, rate)

    candidates = layouts([1], 2)
    advice = search(candidates, 4, 0.005, machine.probe, verify)
    contenders = list(dict.fromkeys(verified))
    assert len({c.layout for c in contenders}) == len(candidates)  # each layout was measured
    assert advice.best is not None and advice.best.layout == Layout(1, 1, 2)
    losers = [c for c in contenders[1:] if c.layout != advice.best.layout]
    assert losers and [verified.count(c) for c in losers] == [1] * len(losers)
    truth = max(machine.capacity(Config(layout, cap)) for layout in candidates for cap in batch_caps(4))
    assert advice.verified is not None and advice.verified.throughput >= 0.95 * 0.9 * truth / RESOLUTION


def test_a_contender_predicted_well_below_what_the_best_sustained_is_not_verified() -> None:
    """Layouts sustain at most about what their probes predict: once one sustained more than another's
    prediction by 1/OUT_OF_REACH, the other is not worth a verification."""
    machine = Synthetic(knee=0.9)
    verified: list[Config] = []

    def verify(config: Config, rate: float) -> Verified:
        verified.append(config)
        return machine.verify(config, rate)

    advice = search(layouts([1], 2), 4, 0.005, machine.probe, verify)
    assert advice.best is not None and advice.verified is not None
    measured = {c.layout for c in verified}
    skipped = [p for p in advice.predictions if p.config.layout not in measured]
    assert skipped and all(p.throughput < OUT_OF_REACH * advice.verified.throughput for p in skipped)
    others = [c for c in dict.fromkeys(verified) if c.layout != advice.best.layout]
    assert [verified.count(c) for c in others] == [1] * len(others)
    assert advice.verifications == len(verified) <= RATE_TRIES + len(others)


@pytest.mark.parametrize(("knee", "held"), [(1.5, False), (2.0, True)])
def test_a_contender_that_sustains_less_than_the_best_costs_one_verification_held_or_missed(
    knee: float, held: bool
) -> None:
    """Short runs (the cnn's: 1 s of arrivals against a 1 s SLO) sustain less than the rate they are
    offered, and can hold their p99 above capacity. A contender is offered a little more than the rate
    the best held; one that serves no more than the best did is dropped there, held or missed."""
    machine = Synthetic(knee=knee, drain=0.8, realize=lambda layout: 0.7 if layout.instances > 1 else 1.0)
    verified: list[tuple[Config, Verified]] = []

    def verify(config: Config, rate: float) -> Verified:
        verified.append((config, machine.verify(config, rate)))
        return verified[-1][1]

    candidates = layouts([1], 2)
    advice = search(candidates, 4, 0.005, machine.probe, verify)
    assert advice.best is not None and advice.verified is not None
    first = verified[0][0]
    assert advice.best == first
    losers = [c for c in dict.fromkeys(c for c, _ in verified) if c != first]
    assert len(losers) == 2 and [sum(c == x for x, _ in verified) for c in losers] == [1, 1]
    two_threads = next(v for c, v in verified if c.layout == Layout(1, 1, 2))
    assert (two_threads.p99_s <= 0.005) is held  # held there or not, it served less than the best
    assert two_threads.throughput <= advice.verified.throughput
    # Against the grid of benchmarks/advise_vs_grid.py: every configuration, the same rate search.
    grid = [rate_at_slo(c, machine.capacity(c), 0.005, machine.verify)[0] for c in _every(candidates, 4)]
    assert advice.verified.throughput >= 0.95 * max(v.throughput for v in grid if v is not None)
    assert advice.verified.rate > advice.verified.throughput  # the rate it held, kept beside its figure


def _every(candidates: list[Layout], max_batch: int) -> list[Config]:
    return [Config(layout, cap) for layout in candidates for cap in batch_caps(max_batch)]


def test_the_advisor_stops_climbing_once_offering_more_serves_no_more() -> None:
    """Above capacity a short run still holds its p99 (its queue had no time to grow an SLO long),
    serving its capacity: the advisor's search stops at the first such run, the grid's goes on to
    the miss it would take to show it, with no higher figure for it."""
    machine = Synthetic(knee=1.5, drain=0.8)
    config = Config(Layout(1, 2, 1), 16)
    capacity = machine.capacity(config)
    advisor, advisor_runs = rate_at_slo(config, capacity, 0.02, machine.verify, plateau=True)
    grid, grid_runs = rate_at_slo(config, capacity, 0.02, machine.verify)
    assert advisor is not None and grid is not None
    assert advisor.throughput == grid.throughput == pytest.approx(0.8 * capacity)
    assert (advisor_runs, grid_runs) == (2, 4)
    # Below capacity each higher rate serves more: it climbs as before, every try.
    held, runs = rate_at_slo(config, 0.5 * capacity, 0.02, machine.verify, plateau=True)
    assert held is not None and held.rate == pytest.approx(0.5 * capacity / BACKOFF**3) and runs == 4


def test_caps_predicted_alike_are_verified_at_the_largest_so_the_climb_does_not_step_through_them() -> None:
    """Probes on a line through the origin predict one capacity for every cap; per batch the model
    still costs a fixed overhead, so the largest cap sustains most, and it is the one verified."""
    machine = Synthetic(knee=0.9)
    verified: list[Config] = []

    def probe(layout: Layout, batch: int) -> float:  # the fixed cost hidden from the probes
        return machine.exec_s(layout, batch) - machine.exec_s(layout, 0)

    def verify(config: Config, rate: float) -> Verified:
        verified.append(config)
        return machine.verify(config, rate)

    advice = search(layouts([1], 2), 4, 0.005, probe, verify)
    tops = [p for p in advice.predictions if p.config.layout == Layout(1, 2, 1)]
    assert len({round(p.throughput, 6) for p in tops}) == 1  # every cap predicted alike
    assert advice.best == Config(Layout(1, 2, 1), 4)
    assert {c.batch_cap for c in verified} == {4}
