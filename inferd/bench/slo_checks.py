"""Whether an SLO search's maximum rate means anything: checks on its probes.

The search assumes latency grows with the arrival rate, so that failing above a rate and passing below
it marks the server's limit. When probes fail for another reason (the SLO sits at the latency of a lone
request, the machine hiccups, the generator itself sends late, too few requests to see the percentile),
a low rate passes by luck and the search reports it as the maximum: once "17 req/s" for a server doing
1,300. These checks say so instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from inferd.bench.percentiles import percentile
from inferd.bench.scenarios import Measurement
from inferd.bench.slo import Probe, SloSearch

# Load-driven latency grows steeply: a failing probe at this many times another probe's rate whose
# latency stays within LATENCY_FACTOR of it shows latency that does not follow the rate.
RATE_FACTOR = 4.0
LATENCY_FACTOR = 2.0
# A run achieved its offered rate when it completed at least this share of the offered requests,
# less three standard deviations of the Poisson count.
ACHIEVED_SHARE = 0.95
# Requests beyond the percentile (e.g. 10 beyond p99 means 1,000 requests) for a stable estimate.
BEYOND_PERCENTILE = 10
# The generator's send lag counts against the SLO from this share of it on.
LAG_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class Verdict:
    """``trustworthy``: the best rate can be read as the server's limit under the SLO."""

    trustworthy: bool
    warnings: list[str]


def achieved_rate(m: Measurement) -> float:
    """Successful requests per second completed inside the window."""
    return m.requests_per_s


def rate_achieved(m: Measurement) -> bool:
    """Whether the run completed about as many requests as it offered (Poisson noise allowed for)."""
    if m.offered_rate is None:
        return True
    expected = m.offered_rate * m.result.window_s
    return m.result.completed_in_window >= ACHIEVED_SHARE * expected - 3 * math.sqrt(expected)


def send_lag_p99_s(m: Measurement) -> float | None:
    lags = m.result.send_lag_s
    return percentile(np.sort(lags), 99) if len(lags) else None


def judge(found: SloSearch[Measurement]) -> Verdict:
    warnings: list[str] = []
    trustworthy = found.best is not None
    unit = f"p{found.percentile:g}"

    flat = _flat_pair(found)
    if flat is not None:
        low, high = flat
        warnings.append(
            f"latency did not grow with the rate ({unit} {_ms(low.latency_s)} at {low.rate:.1f}/s, "
            f"{_ms(high.latency_s)} at {high.rate:.1f}/s), so the probes failed on something other than "
            "load: an SLO at the latency of a lone request, a machine that stalls now and then, or the "
            "generator; a rate that passed did so by chance"
        )
        trustworthy = False

    lagging = [
        p
        for p in found.probes
        if not found.passes(p)
        and (lag := send_lag_p99_s(p.detail)) is not None
        and lag >= LAG_SHARE * found.slo_s
    ]
    if lagging:
        worst = max(lagging, key=lambda p: send_lag_p99_s(p.detail) or 0.0)
        warnings.append(
            f"the generator sent late (send lag p99 {_ms(send_lag_p99_s(worst.detail) or 0.0)} at "
            f"{worst.rate:.1f}/s against a {_ms(found.slo_s)} SLO): the client, not the server, may "
            "have failed those probes; try --processes 2 or a quieter machine"
        )
        trustworthy = False

    best = found.best
    if best is not None:
        m = best.detail
        if not rate_achieved(m):
            warnings.append(
                f"the best probe did not achieve its rate: {best.rate:.1f}/s offered, "
                f"{achieved_rate(m):.1f}/s completed"
            )
            trustworthy = False
        requests = len(m.result.latencies_s) + m.error_count
        tail = 1 - found.percentile / 100
        if requests * tail < 1:
            warnings.append(
                f"the best probe's {unit} rests on {requests} requests, so it is just their maximum: "
                "lengthen --duration"
            )
            trustworthy = False
        elif requests * tail < BEYOND_PERCENTILE:
            needed = math.ceil(BEYOND_PERCENTILE / tail)
            warnings.append(
                f"the best probe's {unit} rests on {requests} requests ({needed:,} would put "
                f"{BEYOND_PERCENTILE} beyond it): a longer --duration makes it steadier"
            )
    return Verdict(trustworthy, warnings)


def _flat_pair(found: SloSearch[Measurement]) -> tuple[Probe[Measurement], Probe[Measurement]] | None:
    """A failing probe at RATE_FACTOR times another probe's rate or more, with a finite latency within
    LATENCY_FACTOR of that probe's: the pair with the widest rate ratio, or None."""
    pairs = [
        (low, high)
        for high in found.probes
        if not found.passes(high) and math.isfinite(high.latency_s)
        for low in found.probes
        if high.rate >= RATE_FACTOR * low.rate and high.latency_s <= LATENCY_FACTOR * low.latency_s
    ]
    return max(pairs, key=lambda pair: pair[1].rate / pair[0].rate) if pairs else None


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"
