"""The shared limiter against a real redis-server: shared buckets, quotas, and Redis going away."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from redisctl import RunningRedis, start_redis

from inferd.errors import Unavailable
from inferd.security.ratelimit import Limits
from inferd.security.redis_limiter import RedisLimiter


def _prefix() -> str:
    return f"test:{uuid.uuid4().hex}"


def test_two_limiters_share_one_bucket(redis_server: RunningRedis) -> None:
    async def scenario() -> list[bool]:
        prefix = _prefix()
        replicas = [RedisLimiter(redis_server.url, prefix=prefix) for _ in range(2)]
        limits = Limits(rate=0.001, burst=3)  # no refill within the test
        try:
            results = []
            for i in range(5):
                denial = await replicas[i % 2].acquire("alice", "m", limits)
                results.append(denial is None)
            other_model = await replicas[0].acquire("alice", "other", limits)
            results.append(other_model is None)
            return results
        finally:
            for replica in replicas:
                await replica.close()

    assert asyncio.run(scenario()) == [True, True, True, False, False, True]


def test_denial_says_when_to_retry(redis_server: RunningRedis) -> None:
    async def scenario() -> tuple[str, int]:
        limiter = RedisLimiter(redis_server.url, prefix=_prefix())
        try:
            limits = Limits(rate=0.01, burst=1)  # a token per 100 s
            assert await limiter.acquire("a", "m", limits) is None
            denial = await limiter.acquire("a", "m", limits)
            assert denial is not None
            return denial.reason, denial.retry_after_s
        finally:
            await limiter.close()

    reason, seconds = asyncio.run(scenario())
    assert reason == "rate" and 90 <= seconds <= 100


def test_daily_quota_is_shared(redis_server: RunningRedis) -> None:
    async def scenario() -> list[str | None]:
        prefix = _prefix()
        replicas = [RedisLimiter(redis_server.url, prefix=prefix) for _ in range(2)]
        limits = Limits(daily_quota=3)
        try:
            out = []
            for i in range(4):
                denial = await replicas[i % 2].acquire("bob", f"model{i}", limits)
                out.append(denial.reason if denial else None)
            return out
        finally:
            for replica in replicas:
                await replica.close()

    assert asyncio.run(scenario()) == [None, None, None, "quota"]


@pytest.mark.parametrize("fail_open", [True, False])
def test_redis_down_follows_the_failure_policy_and_counts(tmp_path: Path, fail_open: bool) -> None:
    redis = start_redis(tmp_path)

    async def scenario() -> RedisLimiter:
        limiter = RedisLimiter(redis.url, fail_open=fail_open, prefix=_prefix(), timeout_s=0.5)
        limits = Limits(rate=0.001, burst=1)
        assert await limiter.acquire("a", "m", limits) is None
        redis.stop()
        for _ in range(3):
            if fail_open:
                assert await limiter.acquire("a", "m", limits) is None
            else:
                with pytest.raises(Unavailable):
                    await limiter.acquire("a", "m", limits)
        await limiter.close()
        return limiter

    try:
        limiter = asyncio.run(scenario())
    finally:
        redis.stop()
    assert limiter.errors >= 1
    assert limiter.decided_without_redis == 3
