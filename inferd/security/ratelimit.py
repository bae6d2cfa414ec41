"""Token buckets per (caller, model) and a daily query quota per caller, kept in this process.

A caller is a key id, or the client address when no key is configured. The Redis-backed limiter in
``redis_limiter.py`` has the same interface and shares the state between replicas.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

SECONDS_PER_DAY = 86400
# Past this many buckets, the ones that have refilled (same as new) are dropped.
_MAX_BUCKETS = 100_000


@dataclass(frozen=True, slots=True)
class Limits:
    """What one caller may do: ``rate`` requests/s per model with ``burst``, and ``daily_quota``."""

    rate: float | None = None
    burst: int = 1
    daily_quota: int | None = None

    @property
    def active(self) -> bool:
        return self.rate is not None or self.daily_quota is not None


@dataclass(frozen=True, slots=True)
class Denial:
    reason: str  # "rate" or "quota"
    retry_after_s: int


class Limiter(Protocol):
    async def acquire(self, caller: str, model: str, limits: Limits) -> Denial | None:
        """Take one request from the caller's budget for the model; a Denial says why not and when."""
        ...

    async def close(self) -> None: ...


def make_limits(rate: float | None, burst: int | None, daily_quota: int | None) -> Limits:
    """Limits with the burst defaulting to one second's worth of requests (at least 1)."""
    if burst is None:
        burst = max(1, math.ceil(rate)) if rate else 1
    return Limits(rate, burst, daily_quota)


def retry_after(seconds: float) -> int:
    """Whole seconds for Retry-After, never 0: a client told 0 would retry at once."""
    return max(1, math.ceil(seconds))


class LocalLimiter:
    """In-process limiter; O(1) per request. Clocks are injectable for the unit tests."""

    def __init__(
        self,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        max_buckets: int = _MAX_BUCKETS,
    ) -> None:
        self._monotonic = monotonic
        self._wall = wall
        self._max_buckets = max_buckets
        # (caller, model) -> [tokens, last refill time, time at which the bucket is full again]
        self._buckets: dict[tuple[str, str], list[float]] = {}
        # caller -> [day number, requests counted that day]
        self._quota: dict[str, list[int]] = {}

    async def acquire(self, caller: str, model: str, limits: Limits) -> Denial | None:
        return self.check(caller, model, limits)

    def check(self, caller: str, model: str, limits: Limits) -> Denial | None:
        rate = limits.rate
        bucket: list[float] | None = None
        tokens = 0.0
        now = 0.0
        if rate is not None:
            now = self._monotonic()
            key = (caller, model)
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self._max_buckets:
                    self._prune(now)
                bucket = self._buckets[key] = [float(limits.burst), now, now]
            tokens = min(float(limits.burst), bucket[0] + (now - bucket[1]) * rate)
            if tokens < 1.0:
                return Denial("rate", retry_after((1.0 - tokens) / rate))
        if limits.daily_quota is not None:
            wall = self._wall()
            day = int(wall // SECONDS_PER_DAY)
            counted = self._quota.get(caller)
            if counted is None or counted[0] != day:
                if counted is None and len(self._quota) >= self._max_buckets:
                    self._quota = {c: n for c, n in self._quota.items() if n[0] == day}
                counted = self._quota[caller] = [day, 0]
            if counted[1] >= limits.daily_quota:
                return Denial("quota", retry_after((day + 1) * SECONDS_PER_DAY - wall))
            counted[1] += 1
        if bucket is not None and rate is not None:
            tokens -= 1.0
            bucket[0] = tokens
            bucket[1] = now
            bucket[2] = now + (limits.burst - tokens) / rate
        return None

    def _prune(self, now: float) -> None:
        full = [key for key, bucket in self._buckets.items() if bucket[2] <= now]
        for key in full:
            del self._buckets[key]

    async def close(self) -> None:
        return None
