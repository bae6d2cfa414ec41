"""Find the highest Poisson arrival rate whose latency percentile stays under an SLO.

The search probes short server-scenario runs: it doubles (or halves) the rate from a starting guess
until it brackets the SLO, then bisects the bracket. Latency under load is noisy near saturation, so
the answer is a bracket to a relative tolerance, not a precise point; failed requests count as
infinitely slow, so a server cannot pass by dropping requests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Probe(Generic[T]):
    """One short run at ``rate``: its latency at the SLO percentile and goodput (requests/s that met
    the SLO); ``detail`` carries the caller's full measurement."""

    rate: float
    latency_s: float
    goodput: float
    detail: T


@dataclass(slots=True)
class SloSearch(Generic[T]):
    slo_s: float
    percentile: float
    probes: list[Probe[T]] = field(default_factory=list)

    def passes(self, probe: Probe[T]) -> bool:
        return probe.latency_s <= self.slo_s

    @property
    def best(self) -> Probe[T] | None:
        """The highest-rate probe that met the SLO, or None if none did."""
        passing = [p for p in self.probes if self.passes(p)]
        return max(passing, key=lambda p: p.rate) if passing else None


def search(
    measure: Callable[[float], Probe[T]],
    slo_s: float,
    percentile: float,
    start_rate: float,
    *,
    tolerance: float = 0.05,
    max_probes: int = 12,
    min_rate: float = 0.5,
    max_rate: float = 1e6,
) -> SloSearch[T]:
    """Bracket then bisect; stops when the bracket is within ``tolerance`` of its top or after
    ``max_probes`` runs. ``measure(rate)`` runs the server scenario at ``rate`` requests/s."""
    if slo_s <= 0 or start_rate <= 0 or not 0 < tolerance < 1:
        raise ValueError("slo, start rate and tolerance must be positive (tolerance below 1)")
    result: SloSearch[T] = SloSearch(slo_s, percentile)

    def probe(rate: float) -> bool:
        outcome = measure(rate)
        result.probes.append(outcome)
        return result.passes(outcome)

    rate = min(max(start_rate, min_rate), max_rate)
    low: float | None = None
    high: float | None = None
    if probe(rate):
        low = rate
        while len(result.probes) < max_probes and low < max_rate:
            rate = min(low * 2, max_rate)
            if not probe(rate):
                high = rate
                break
            low = rate
    else:
        high = rate
        while len(result.probes) < max_probes and high > min_rate:
            rate = max(high / 2, min_rate)
            if probe(rate):
                low = rate
                break
            high = rate
    if low is None or high is None:
        return result  # nothing passed, or the ceiling passed: no bracket to narrow
    while len(result.probes) < max_probes and (high - low) / high > tolerance:
        rate = (low + high) / 2
        if probe(rate):
            low = rate
        else:
            high = rate
    return result
