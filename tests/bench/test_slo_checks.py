"""An SLO search whose probes do not fail on load warns instead of reporting a maximum rate."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from synthserver import Behaviour, synthetic_server

from inferd.bench.endpoint import Endpoint
from inferd.bench.load import LoadResult
from inferd.bench.payloads import RestPayload
from inferd.bench.percentiles import percentile_with_failures
from inferd.bench.report import measurement_document, slo_document, slo_lines
from inferd.bench.runner import LoadSpec, run_here
from inferd.bench.scenarios import Measurement
from inferd.bench.slo import Probe, SloSearch, search
from inferd.bench.slo_checks import judge

SLO_S = 0.010


def _probe(
    rate: float,
    latency_s: float,
    *,
    window_s: float = 10.0,
    achieved: float = 1.0,
    lag_s: float = 0.0001,
) -> Probe[Measurement]:
    """A probe at ``rate`` whose requests all took ``latency_s`` and ``achieved`` of them completed."""
    count = round(rate * window_s * achieved)
    result = LoadResult(
        window_s=window_s,
        latencies_s=np.full(count, latency_s),
        errors={},
        completed_in_window=count,
        send_lag_s=np.full(count, lag_s),
        generator_cpu_s=0.1,
        generator_wall_s=window_s,
    )
    measurement = Measurement("slo-search", f"{rate:g}/s", 1, result, None, offered_rate=rate)
    return Probe(rate, latency_s, rate * achieved if latency_s <= SLO_S else 0.0, measurement)


def _search(*probes: Probe[Measurement]) -> SloSearch[Measurement]:
    return SloSearch(SLO_S, 99, list(probes))


def test_a_queueing_server_is_trusted() -> None:
    # Doubling up to the limit, then bisecting: latency climbs steeply with the rate.
    found = _search(
        _probe(125, 0.002), _probe(250, 0.003), _probe(500, 0.008), _probe(1000, math.inf), _probe(750, 0.03)
    )
    verdict = judge(found)
    assert verdict.trustworthy and verdict.warnings == []
    assert slo_lines(found)[0].startswith("SLO p99 <= 10 ms: max rate 500.0 req/s")
    assert slo_document(found, None)["trustworthy"] is True


def test_latency_that_does_not_follow_the_rate_is_no_maximum() -> None:
    # What "max rate 17 req/s for a server doing 1,300" looked like: every probe from the start rate
    # down failed at about the same latency, until a low rate passed by chance.
    found = _search(
        *(_probe(rate, 0.012) for rate in (560, 280, 140, 70, 35)),
        _probe(17.5, 0.009),
        _probe(26, 0.011),
        _probe(21, 0.0105),
    )
    verdict = judge(found)
    assert not verdict.trustworthy
    assert verdict.warnings[0].startswith(
        "latency did not grow with the rate (p99 9 ms at 17.5/s, 12 ms at 560.0/s)"
    )
    outcome, _ = slo_lines(found)
    assert "no trustworthy maximum rate" in outcome and "max rate" not in outcome
    document = slo_document(found, None)
    assert document["trustworthy"] is False and document["warnings"] == verdict.warnings


def test_a_best_probe_that_did_not_achieve_its_rate_is_no_maximum() -> None:
    found = _search(_probe(250, 0.003), _probe(500, 0.004, achieved=0.6), _probe(1000, 0.2, achieved=0.5))
    verdict = judge(found)
    assert not verdict.trustworthy
    assert verdict.warnings == ["the best probe did not achieve its rate: 500.0/s offered, 300.0/s completed"]
    probes = slo_document(found, None)["probes"]
    assert [p["rate_achieved"] for p in probes] == [True, False, False]


def test_failures_from_a_lagging_generator_are_named() -> None:
    found = _search(_probe(250, 0.003), _probe(500, 0.004), _probe(1000, 0.02, lag_s=0.015))
    verdict = judge(found)
    assert not verdict.trustworthy
    assert verdict.warnings[0].startswith("the generator sent late (send lag p99 15 ms at 1000.0/s")


def test_too_few_requests_for_the_percentile() -> None:
    few = _search(_probe(4, 0.003, window_s=10), _probe(8, math.inf, window_s=10))
    assert judge(few).warnings == [
        "the best probe's p99 rests on 40 requests, so it is just their maximum: lengthen --duration"
    ]
    assert not judge(few).trustworthy
    some = _search(_probe(40, 0.003), _probe(80, math.inf))
    assert judge(some).trustworthy
    assert judge(some).warnings == [
        "the best probe's p99 rests on 400 requests (1,000 would put 10 beyond it): "
        "a longer --duration makes it steadier"
    ]


def test_a_real_server_whose_latency_does_not_follow_the_rate() -> None:
    # Every 20th request waits 30 ms however fast they come: p99 is ~30 ms at any rate with 20 requests
    # or more, so only a rate too low to see the slow one passes. That rate is no maximum.
    with synthetic_server(Behaviour(slow_every=20, slow_s=0.03)) as port:
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

        def measure(rate: float) -> Probe[Measurement]:
            result = run_here(replace(spec, rate=rate))
            latency = percentile_with_failures(result.latencies_s, sum(result.errors.values()), 99)
            goodput = np.count_nonzero(result.latencies_s <= SLO_S) / result.window_s
            return Probe(
                rate, latency, goodput, Measurement("slo-search", "", 1, result, None, offered_rate=rate)
            )

        found = search(measure, slo_s=SLO_S, percentile=99, start_rate=160, tolerance=0.2, max_probes=7)
    rates = [p.rate for p in found.probes]
    assert rates[:3] == [160, 80, 40]
    assert not any(found.passes(p) for p in found.probes[:3])  # each saw a slow request
    verdict = judge(found)
    assert any(w.startswith("latency did not grow with the rate") for w in verdict.warnings), verdict
    assert not verdict.trustworthy
    assert "max rate" not in slo_lines(found)[0]


def test_goodput_counts_answers_within_the_target_per_second_of_the_window() -> None:
    latencies = np.array([0.005, 0.010, 0.019, 0.021, 0.500])  # three within 20 ms
    result = LoadResult(
        window_s=2.0,
        latencies_s=latencies,
        errors={"HTTP 503": 4},  # shed: never goodput
        completed_in_window=5,
        send_lag_s=np.zeros(5),
        generator_cpu_s=0.1,
        generator_wall_s=2.0,
    )
    measurement = Measurement("server", "10/s", 1, result, None, offered_rate=10.0)
    document = measurement_document(measurement, None, 0.020)
    assert document["goodput_per_s"] == 1.5 and document["goodput_within_ms"] == 20.0
    assert "goodput_per_s" not in measurement_document(measurement, None)
