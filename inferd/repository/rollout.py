"""A canary rollout: which share of default-version traffic a candidate gets, and the guard rails.

Everything here runs on the event loop thread. The per-request part (``takes_candidate`` and the
``record_*`` methods) is O(1); percentiles are computed only by ``evaluate``, off the request path.
"""

from __future__ import annotations

import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from inferd.model_config import RolloutConfig

# Latency samples kept per side; the guard rails judge recent behaviour, not the whole history.
_WINDOW = 2000


@dataclass(slots=True)
class SideStats:
    requests: int = 0
    errors: int = 0
    latencies_ns: deque[int] = field(default_factory=lambda: deque(maxlen=_WINDOW))

    def p99_ms(self) -> float | None:
        if not self.latencies_ns:
            return None
        return float(np.percentile(np.fromiter(self.latencies_ns, dtype=np.int64), 99)) / 1e6

    def as_dict(self) -> dict[str, Any]:
        p99 = self.p99_ms()
        return {
            "requests": self.requests,
            "errors": self.errors,
            "p99_ms": None if p99 is None else round(p99, 3),
        }


@dataclass(frozen=True, slots=True)
class Decision:
    action: Literal["rollback", "promote"]
    reason: str


class Rollout:
    """Routes a share of default-version requests to ``candidate_version`` and judges it."""

    def __init__(
        self, stable_version: str, candidate_version: str, config: RolloutConfig, origin: str
    ) -> None:
        self.stable_version = stable_version
        self.candidate_version = candidate_version
        self.config = config
        self.origin = origin
        self.started = time.monotonic()
        self.stable = SideStats()
        self.candidate = SideStats()
        self.shadow_compared = 0
        self.shadow_disagreed = 0
        self._fraction = config.canary_percent / 100.0
        self._credit = 0.0

    def reconfigure(self, config: RolloutConfig) -> None:
        """New share and guard rails for the same candidate; what was measured so far is kept."""
        self.config = config
        self._fraction = config.canary_percent / 100.0

    @property
    def shadow(self) -> bool:
        return self.config.shadow

    def takes_candidate(self) -> bool:
        """Deterministic split: exactly ``canary_percent`` of calls over any long run, no RNG per call."""
        self._credit += self._fraction
        if self._credit >= 1.0:
            self._credit -= 1.0
            return True
        return False

    def takes_candidate_for(self, key: str) -> bool:
        """Sticky split: a stable hash of the key (the same in every replica), not a counter."""
        return zlib.crc32(key.encode()) % 10_000 < self._fraction * 10_000

    def record_stable(self, ok: bool, latency_ns: int) -> None:
        _record(self.stable, ok, latency_ns)

    def record_candidate(self, ok: bool, latency_ns: int) -> None:
        _record(self.candidate, ok, latency_ns)

    def record_shadow(self, agreed: bool) -> None:
        self.shadow_compared += 1
        if not agreed:
            self.shadow_disagreed += 1

    def evaluate(self, now: float) -> Decision | None:
        """A breach of any guard rail rolls back; passing for the configured window promotes."""
        guard = self.config.guard
        judged = self.candidate.requests
        if judged < guard.min_requests:
            return None
        error_rate = self.candidate.errors / judged
        if error_rate > guard.max_error_rate:
            return Decision(
                "rollback",
                f"candidate error rate {error_rate:.3f} > {guard.max_error_rate} "
                f"({self.candidate.errors}/{judged} requests)",
            )
        if len(self.candidate.latencies_ns) >= guard.min_requests and len(self.stable.latencies_ns) >= (
            guard.min_requests
        ):
            candidate_p99 = max(self.candidate.p99_ms() or 0.0, guard.latency_floor_ms)
            stable_p99 = max(self.stable.p99_ms() or 0.0, guard.latency_floor_ms)
            if stable_p99 > 0 and candidate_p99 / stable_p99 > guard.max_latency_ratio:
                return Decision(
                    "rollback",
                    f"candidate p99 {candidate_p99:.2f} ms is {candidate_p99 / stable_p99:.1f}x stable's "
                    f"{stable_p99:.2f} ms (limit {guard.max_latency_ratio}x)",
                )
        if self.shadow and self.shadow_compared >= guard.min_requests:
            rate = self.shadow_disagreed / self.shadow_compared
            if rate > guard.max_disagreement_rate:
                return Decision(
                    "rollback",
                    f"shadow outputs disagree in {rate:.3f} of comparisons > {guard.max_disagreement_rate} "
                    f"(tolerance {guard.tolerance})",
                )
        return self._promotion(judged, now)

    def _promotion(self, judged: int, now: float) -> Decision | None:
        config = self.config
        if config.promote_after_requests is None and config.promote_after_s is None:
            return None
        if config.promote_after_requests is not None and judged < config.promote_after_requests:
            return None
        elapsed = now - self.started
        if config.promote_after_s is not None and elapsed < config.promote_after_s:
            return None
        return Decision("promote", f"passed the guard rails for {judged} requests and {elapsed:.1f} s")

    def as_dict(self) -> dict[str, Any]:
        return {
            "stable_version": self.stable_version,
            "candidate_version": self.candidate_version,
            "origin": self.origin,
            "config": self.config.model_dump(),
            "elapsed_s": round(time.monotonic() - self.started, 3),
            "stable": self.stable.as_dict(),
            "candidate": self.candidate.as_dict(),
            "shadow_compared": self.shadow_compared,
            "shadow_disagreed": self.shadow_disagreed,
        }


def _record(side: SideStats, ok: bool, latency_ns: int) -> None:
    side.requests += 1
    if ok:
        side.latencies_ns.append(latency_ns)
    else:
        side.errors += 1
