from __future__ import annotations

import logging

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from inferd.drift.monitor import DriftConfig, DriftMonitor
from inferd.drift.profile import build_profile

RNG = np.random.default_rng(3)


def _monitor(**config: float) -> DriftMonitor:
    profile = build_profile({"x": RNG.normal(size=(4000, 2))}, batched=True)
    settings = {"sample_every": 1, "window_rows": 200, "min_rows": 50, **config}
    return DriftMonitor({"m": profile}, DriftConfig(**settings))  # type: ignore[arg-type]


def _scrape(monitor: DriftMonitor) -> str:
    registry = CollectorRegistry()
    registry.register(monitor)
    return generate_latest(registry).decode()


def test_scores_appear_once_the_window_has_enough_rows() -> None:
    monitor = _monitor()
    monitor.offer("m", {"x": RNG.normal(size=(30, 2))})
    monitor.update()
    assert "inferd_drift_psi{" not in _scrape(monitor)
    monitor.offer("m", {"x": RNG.normal(size=(30, 2))})
    monitor.offer("other-model", {"x": np.zeros((30, 2))})  # no profile: ignored
    monitor.update()
    text = _scrape(monitor)
    assert 'inferd_drift_window_rows{input="x",model="m"} 60.0' in text
    assert 'inferd_drift_psi{feature="1",input="x",model="m"}' in text


def test_a_shift_logs_one_warning_and_recovery_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    monitor = _monitor()
    caplog.set_level(logging.INFO, logger="inferd.drift.monitor")
    for _ in range(2):
        monitor.offer("m", {"x": RNG.normal(loc=[0.0, 3.0], size=(100, 2))})
        monitor.update()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # edge-triggered, not once per update
    assert warnings[0].fields["feature"] == 1  # type: ignore[attr-defined]
    assert 'inferd_drift_features_over_threshold{model="m"} 1.0' in _scrape(monitor)
    # The window slides: in-distribution rows push the shifted ones out and the alert clears.
    for _ in range(3):
        monitor.offer("m", {"x": RNG.normal(size=(100, 2))})
    monitor.update()
    assert any("drift over" in r.getMessage() for r in caplog.records)
    assert 'inferd_drift_features_over_threshold{model="m"} 0.0' in _scrape(monitor)


def test_sampling_keeps_one_request_in_n_and_bounds_what_waits() -> None:
    monitor = _monitor(sample_every=3)
    for _ in range(9):
        monitor.offer("m", {"x": RNG.normal(size=(10, 2))})
    monitor.update()
    assert 'inferd_drift_window_rows{input="x",model="m"} 30.0' in _scrape(monitor)
    for _ in range(3 * 1000):
        monitor.offer("m", {"x": RNG.normal(size=(1, 2))})
    monitor.update()  # at most 256 samples waited; the window holds its 200 rows
    assert 'inferd_drift_window_rows{input="x",model="m"} 200.0' in _scrape(monitor)


def test_rows_of_another_width_are_skipped() -> None:
    monitor = _monitor()
    monitor.offer("m", {"x": np.zeros((80, 3))})
    monitor.update()
    assert 'inferd_drift_window_rows{input="x",model="m"} 0.0' in _scrape(monitor)
