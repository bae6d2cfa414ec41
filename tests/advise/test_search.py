"""The advisor's search against a synthetic, deterministic cost model: no wall clock anywhere."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from inferd.advise.search import (
    LATENCY_FACTOR,
    SLO_MARGIN,
    Config,
    Layout,
    Line,
    Verified,
    batch_caps,
    fit,
    layouts,
    predict,
    search,
)

CORES = 8


@dataclass
class Synthetic:
    """A machine with CORES cores: a batch costs a fixed overhead plus a per-row cost that threads
    divide (with diminishing returns); layouts wanting more than the cores slow down in proportion.
    Version 2 is an 'optimized' one, 1.6x cheaper per row. Counts every measurement it is asked for."""

    calls: list[str] = field(default_factory=list)

    def exec_s(self, layout: Layout, batch: int) -> float:
        per_row = 40e-6 / (1.6 if layout.version == 2 else 1.0) / layout.threads**0.8
        oversubscribed = max(1.0, layout.instances * layout.threads / CORES)
        return (150e-6 + per_row * batch) * oversubscribed

    def capacity(self, config: Config) -> float:
        return config.layout.instances * config.batch_cap / self.exec_s(config.layout, config.batch_cap)

    def probe(self, layout: Layout, batch: int) -> float:
        self.calls.append("probe")
        return self.exec_s(layout, batch)

    def verify(self, config: Config, rate: float) -> Verified:
        self.calls.append("verify")
        capacity = self.capacity(config)
        if rate > capacity:  # overloaded: the queue grows, p99 is far off, capacity is what it sustains
            return Verified(capacity, 1.0)
        return Verified(rate, LATENCY_FACTOR * self.exec_s(config.layout, config.batch_cap))

    def grid_best(self, slo_s: float, max_batch: int) -> float:
        """Throughput at SLO of the best configuration, knowing the truth (the exhaustive grid)."""
        return max(
            self.capacity(Config(layout, cap))
            for layout in layouts([1, 2], CORES)
            for cap in batch_caps(max_batch)
            if LATENCY_FACTOR * self.exec_s(layout, cap) <= slo_s
        )


def test_fit_recovers_a_line_and_never_a_negative_slope() -> None:
    line = fit([(1, 0.0012), (8, 0.0026), (64, 0.0138)])
    assert line.fixed_s == pytest.approx(0.001)
    assert line.per_row_s == pytest.approx(0.0002)
    assert fit([(1, 0.002), (64, 0.001)]).per_row_s == 0.0
    assert fit([(4, 0.004)]) == Line(0.0, 0.001)


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
    assert advice.probes == 3 * len(candidates) and 1 <= advice.verifications <= 4


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
    assert advice.best is None and advice.verifications == 4
    assert "missed p99 10 ms when measured" in advice.problem
