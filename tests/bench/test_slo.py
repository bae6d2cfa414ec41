"""SLO search: bracket by doubling or halving, then bisect; on synthetic servers with known answers."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from inferd.bench.slo import Probe, search


def queue_server(capacity: float, base_s: float) -> Callable[[float], Probe[None]]:
    """An M/M/1-like server: p99 = base + ln(100) / (capacity - rate), infinite at saturation."""

    def measure(rate: float) -> Probe[None]:
        latency = base_s + math.log(100) / (capacity - rate) if rate < capacity else math.inf
        return Probe(rate, latency, rate if latency < math.inf else 0.0, None)

    return measure


def test_finds_the_rate_where_the_percentile_meets_the_slo() -> None:
    capacity, base, slo = 1000.0, 0.001, 0.010
    answer = capacity - math.log(100) / (slo - base)  # ~488.3/s
    found = search(queue_server(capacity, base), slo, 99, start_rate=10, tolerance=0.01, max_probes=30)
    best = found.best
    assert best is not None
    assert best.latency_s <= slo
    assert answer * 0.98 <= best.rate <= answer
    # every probe above the answer failed and every one below passed
    for probe in found.probes:
        assert found.passes(probe) == (probe.rate <= answer)


def test_starting_above_the_answer_halves_first() -> None:
    found = search(queue_server(1000, 0.001), 0.010, 99, start_rate=5000, tolerance=0.02, max_probes=30)
    assert [p.rate for p in found.probes[:3]] == [5000, 2500, 1250]
    assert found.best is not None
    assert 470 < found.best.rate <= 489


def test_nothing_meets_an_impossible_slo() -> None:
    found = search(queue_server(1000, 0.050), 0.010, 99, start_rate=100, max_probes=30, min_rate=1)
    assert found.best is None
    assert found.probes[-1].rate == 1


def test_probe_budget_is_respected() -> None:
    found = search(queue_server(1e9, 0.0), 1.0, 99, start_rate=1, max_probes=5)
    assert len(found.probes) == 5
    assert found.best is not None
    assert found.best.rate == 16


@pytest.mark.parametrize(("slo", "start", "tolerance"), [(0, 1, 0.05), (1, 0, 0.05), (1, 1, 1.5)])
def test_rejects_bad_arguments(slo: float, start: float, tolerance: float) -> None:
    with pytest.raises(ValueError):
        search(queue_server(10, 0), slo, 99, start, tolerance=tolerance)


def test_search_on_a_real_server_of_fixed_capacity() -> None:
    # One request at a time, 5 ms each: capacity 200/s. The search must settle below saturation and
    # well above a trickle, whatever this machine's noise does to the exact point. The SLO is loose
    # (200 ms) so that scheduling hiccups of a busy machine cannot fail the low rates; above capacity
    # the backlog of a 1.2 s run still pushes p99 far past it.
    import numpy as np
    from synthserver import Behaviour, synthetic_server

    from inferd.bench.endpoint import Endpoint
    from inferd.bench.payloads import RestPayload
    from inferd.bench.percentiles import percentile_with_failures
    from inferd.bench.runner import LoadSpec, run_here

    with synthetic_server(Behaviour(service_s=0.005)) as port:
        spec = LoadSpec(
            endpoint=Endpoint("http", "127.0.0.1", port),
            model="m",
            version="",
            rest_payload=RestPayload(b"{}", None),
            grpc_payload=None,
            mode="open",
            warmup_s=0.2,
            duration_s=1.0,
            drain_s=5.0,
        )

        def measure(rate: float) -> Probe[None]:
            from dataclasses import replace

            result = run_here(replace(spec, rate=rate))
            latency = percentile_with_failures(result.latencies_s, sum(result.errors.values()), 99)
            goodput = np.count_nonzero(result.latencies_s <= 0.2) / result.window_s
            return Probe(rate, latency, goodput, None)

        found = search(measure, slo_s=0.2, percentile=99, start_rate=25, tolerance=0.1, max_probes=8)
    best = found.best
    assert best is not None
    assert 25 <= best.rate < 400  # 400/s is twice the capacity: its backlog alone is ~240 requests
    assert 0 < best.goodput <= best.rate * 1.5
    assert any(not found.passes(p) for p in found.probes)  # it did find the ceiling
