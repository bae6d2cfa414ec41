"""Open- and closed-loop load against small real servers: Poisson schedule, no coordinated omission."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from synthserver import Behaviour, synthetic_server

from inferd.bench.clients import HttpSubmitter
from inferd.bench.endpoint import Endpoint
from inferd.bench.load import LoadResult, closed_loop, open_loop, poisson_schedule
from inferd.bench.payloads import RestPayload


def test_poisson_schedule_mean_rate_and_exponential_gaps() -> None:
    rate, duration = 2000.0, 50.0
    offsets = poisson_schedule(rate, duration, np.random.default_rng(7))
    expected = rate * duration
    assert abs(len(offsets) - expected) < 5 * np.sqrt(expected)  # Poisson count: sd = sqrt(mean)
    assert np.all(np.diff(offsets) > 0)
    assert offsets[0] >= 0 and offsets[-1] < duration
    gaps = np.diff(offsets)
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.03)  # exponential: CV 1
    # arrivals are uniform over the run: each tenth holds about a tenth of them
    per_tenth = np.histogram(offsets, bins=10, range=(0, duration))[0]
    assert np.all(np.abs(per_tenth - expected / 10) < 5 * np.sqrt(expected / 10))


def test_poisson_schedule_is_reproducible() -> None:
    a = poisson_schedule(100, 5, np.random.default_rng(3))
    b = poisson_schedule(100, 5, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        poisson_schedule(0, 5, np.random.default_rng(3))


def _submitter(port: int) -> HttpSubmitter:
    return HttpSubmitter(Endpoint("http", "127.0.0.1", port), "m", "", RestPayload(b"{}", None))


async def _open(port: int, rate: float, duration: float) -> LoadResult:
    submitter = _submitter(port)
    await submitter.open()
    schedule = poisson_schedule(rate, duration, np.random.default_rng(0))
    try:
        return await open_loop(submitter, schedule, 0.0, duration, drain_s=10, max_outstanding=1000)
    finally:
        await submitter.close()


async def _closed(port: int, duration: float) -> LoadResult:
    submitter = _submitter(port)
    await submitter.open()
    try:
        return await closed_loop(submitter, 1, 0.0, duration, drain_s=10)
    finally:
        await submitter.close()


STALL_S = 0.8


def test_a_stall_shows_up_in_open_loop_latencies() -> None:
    # The server holds every answer for 0.8 s after its 50th request. An open-loop generator keeps
    # sending on schedule, so the ~0.4 s worth of requests that arrive in the first half of the stall
    # all wait at least 0.4 s, measured from when they were due.
    with synthetic_server(Behaviour(stall_after=50, stall_s=STALL_S)) as port:
        result = asyncio.run(_open(port, rate=200, duration=2.0))
    assert not result.errors
    slow = int(np.count_nonzero(result.latencies_s >= STALL_S / 2))
    assert slow >= 40  # expected ~80 (200/s for 0.4 s); Poisson sd ~9
    assert result.latencies_s.max() >= STALL_S * 0.9


def test_a_closed_loop_would_hide_the_same_stall() -> None:
    # What coordinated omission looks like: one worker waits out the stall, so one slow sample.
    with synthetic_server(Behaviour(stall_after=50, stall_s=STALL_S)) as port:
        result = asyncio.run(_closed(port, duration=2.0))
    assert not result.errors
    assert int(np.count_nonzero(result.latencies_s >= STALL_S / 2)) <= 3


def test_unanswered_requests_count_as_failures() -> None:
    # A stall longer than the drain time: requests still waiting when it ends are "no answer".
    async def run(port: int) -> LoadResult:
        submitter = _submitter(port)
        await submitter.open()
        schedule = poisson_schedule(100, 1.0, np.random.default_rng(0))
        try:
            return await open_loop(submitter, schedule, 0.0, 1.0, drain_s=0.2, max_outstanding=1000)
        finally:
            await submitter.close()

    with synthetic_server(Behaviour(stall_after=1, stall_s=30)) as port:
        result = asyncio.run(run(port))
    assert result.errors.get("no answer", 0) >= 50
    assert result.completed_in_window <= 1


def test_max_outstanding_fails_requests_instead_of_queueing_them() -> None:
    async def run(port: int) -> LoadResult:
        submitter = _submitter(port)
        await submitter.open()
        schedule = poisson_schedule(200, 1.0, np.random.default_rng(0))
        try:
            return await open_loop(submitter, schedule, 0.0, 1.0, drain_s=0.2, max_outstanding=10)
        finally:
            await submitter.close()

    with synthetic_server(Behaviour(stall_after=1, stall_s=30)) as port:
        result = asyncio.run(run(port))
    assert result.errors["not sent: too many outstanding"] >= 100
    assert result.sent == sum(result.errors.values()) + len(result.latencies_s)


def test_merge_adds_processes_up() -> None:
    def part(latencies: list[float], completed: int, errors: dict[str, int]) -> LoadResult:
        return LoadResult(
            window_s=2.0,
            latencies_s=np.array(latencies),
            errors=errors,
            completed_in_window=completed,
            send_lag_s=np.array([]),
            generator_cpu_s=0.5,
            generator_wall_s=3.0,
            error_samples=dict.fromkeys(errors, "why"),
        )

    merged = LoadResult.merge([part([0.1, 0.2], 100, {"HTTP 503": 1}), part([0.3], 50, {"HTTP 503": 2})])
    assert merged.processes == 2
    assert merged.throughput == pytest.approx(75.0)
    assert merged.errors == {"HTTP 503": 3}
    assert sorted(merged.latencies_s.tolist()) == [0.1, 0.2, 0.3]
    assert merged.generator_cpu_s == 1.0


def test_errors_are_counted_by_kind_with_the_server_message() -> None:
    with synthetic_server(Behaviour(fail_every=4)) as port:
        result = asyncio.run(_closed(port, duration=1.0))
    failed = result.errors["HTTP 503"]
    assert failed > 0
    assert set(result.errors) == {"HTTP 503"}
    # every fourth request failed; the window may cut the sequence anywhere
    assert abs(len(result.latencies_s) - 3 * failed) <= 4
    assert result.error_samples["HTTP 503"] == '{"error":"model is overloaded"}'
