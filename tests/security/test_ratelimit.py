"""The in-process token bucket and daily quota, on a fake clock."""

from __future__ import annotations

from inferd.security.ratelimit import SECONDS_PER_DAY, Limits, LocalLimiter, make_limits, retry_after


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(monotonic=clock, wall=clock)
    limits = Limits(rate=2.0, burst=3)
    assert [limiter.check("alice", "m", limits) for _ in range(3)] == [None, None, None]
    denial = limiter.check("alice", "m", limits)
    assert denial is not None and denial.reason == "rate" and denial.retry_after_s == 1
    clock.now += 0.5  # one token back at 2/s
    assert limiter.check("alice", "m", limits) is None
    assert limiter.check("alice", "m", limits) is not None
    clock.now += 100  # refills only up to the burst
    assert [limiter.check("alice", "m", limits) for _ in range(4)][-1] is not None


def test_buckets_are_per_caller_and_per_model() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(monotonic=clock, wall=clock)
    limits = Limits(rate=1.0, burst=1)
    assert limiter.check("alice", "m1", limits) is None
    assert limiter.check("alice", "m1", limits) is not None
    assert limiter.check("alice", "m2", limits) is None
    assert limiter.check("bob", "m1", limits) is None


def test_retry_after_is_the_time_to_the_next_token_rounded_up() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(monotonic=clock, wall=clock)
    limits = Limits(rate=0.1, burst=1)  # one request every 10 s
    assert limiter.check("a", "m", limits) is None
    clock.now += 2.5
    denial = limiter.check("a", "m", limits)
    assert denial is not None and denial.retry_after_s == 8  # 7.5 s rounded up
    assert retry_after(0.0) == 1 and retry_after(1.01) == 2


def test_daily_quota_counts_per_caller_and_resets_at_utc_midnight() -> None:
    wall = FakeClock(start=10 * SECONDS_PER_DAY + SECONDS_PER_DAY - 100)  # 100 s before midnight
    limiter = LocalLimiter(monotonic=FakeClock(), wall=wall)
    limits = Limits(daily_quota=2)
    assert limiter.check("alice", "m1", limits) is None
    assert limiter.check("alice", "m2", limits) is None  # the quota spans models
    denial = limiter.check("alice", "m1", limits)
    assert denial is not None and denial.reason == "quota" and denial.retry_after_s == 100
    assert limiter.check("bob", "m1", limits) is None
    wall.now += 100
    assert limiter.check("alice", "m1", limits) is None


def test_a_rate_denial_does_not_use_up_the_quota() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(monotonic=clock, wall=clock)
    limits = Limits(rate=1.0, burst=1, daily_quota=2)
    assert limiter.check("a", "m", limits) is None
    assert limiter.check("a", "m", limits) is not None  # rate
    clock.now += 1
    assert limiter.check("a", "m", limits) is None  # second of two quota requests
    clock.now += 1
    denial = limiter.check("a", "m", limits)
    assert denial is not None and denial.reason == "quota"


def test_full_buckets_are_pruned_past_the_bound() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(monotonic=clock, wall=clock, max_buckets=2)
    limits = Limits(rate=1.0, burst=1)
    limiter.check("a", "m", limits)
    limiter.check("b", "m", limits)
    clock.now += 5  # both refilled
    limiter.check("c", "m", limits)
    assert len(limiter._buckets) == 1


def test_make_limits_defaults_the_burst_to_one_second() -> None:
    assert make_limits(5.0, None, None) == Limits(5.0, 5, None)
    assert make_limits(0.2, None, None).burst == 1
    assert make_limits(None, None, 7) == Limits(None, 1, 7)
    assert not make_limits(None, None, None).active


def test_quota_counters_of_past_days_are_dropped_past_the_bound() -> None:
    wall = FakeClock(start=5 * SECONDS_PER_DAY)
    limiter = LocalLimiter(monotonic=FakeClock(), wall=wall, max_buckets=2)
    limits = Limits(daily_quota=1)
    limiter.check("a", "m", limits)
    limiter.check("b", "m", limits)
    wall.now += SECONDS_PER_DAY
    limiter.check("c", "m", limits)
    assert set(limiter._quota) == {"c"}
    assert limiter.check("a", "m", limits) is None  # a new day: a fresh count
