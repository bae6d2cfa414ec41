"""The Redis backend against a real redis-server: shared entries, TTL, and failing fast when it is down."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from redisctl import RunningRedis, start_redis

from inferd.cache.base import CacheUnavailable
from inferd.cache.redis import RedisCache


def test_two_clients_share_entries_under_their_prefix(redis_server: RunningRedis) -> None:
    async def scenario() -> None:
        first = RedisCache(redis_server.url, ttl_s=60, key_prefix="test-share:")
        second = RedisCache(redis_server.url, ttl_s=60, key_prefix="test-share:")
        other = RedisCache(redis_server.url, ttl_s=60, key_prefix="test-other:")
        try:
            await first.put(b"key", b"value")
            assert await second.get(b"key") == b"value"
            assert await other.get(b"key") is None
            assert await second.get(b"missing") is None
        finally:
            for cache in (first, second, other):
                await cache.close()

    asyncio.run(scenario())


def test_entries_expire_after_the_ttl(redis_server: RunningRedis) -> None:
    async def scenario() -> None:
        cache = RedisCache(redis_server.url, ttl_s=0.05, key_prefix="test-ttl:")
        try:
            await cache.put(b"key", b"value")
            deadline = time.monotonic() + 10
            while await cache.get(b"key") is not None:
                assert time.monotonic() < deadline, "the entry never expired"
                await asyncio.sleep(0.02)
        finally:
            await cache.close()

    asyncio.run(scenario())


def test_a_stopped_server_raises_cache_unavailable_and_the_breaker_stops_retrying(tmp_path: Path) -> None:
    redis = start_redis(tmp_path)

    async def scenario() -> None:
        cache = RedisCache(redis.url, ttl_s=60, retry_after_s=3600)
        try:
            await cache.put(b"key", b"value")
            redis.stop()
            with pytest.raises(CacheUnavailable):
                await cache.get(b"key")
            for _ in range(3):  # the breaker answers without touching the network
                with pytest.raises(CacheUnavailable):
                    await cache.put(b"key", b"value")
            assert cache.errors == 1
        finally:
            await cache.close()

    try:
        asyncio.run(scenario())
    finally:
        redis.stop()


def test_the_cache_reconnects_when_redis_comes_back(tmp_path: Path) -> None:
    redis = start_redis(tmp_path)

    async def scenario() -> None:
        cache = RedisCache(redis.url, ttl_s=60, retry_after_s=0.05)
        try:
            await cache.put(b"key", b"value")
            redis.stop()
            with pytest.raises(CacheUnavailable):
                await cache.get(b"key")
            restarted = start_redis(tmp_path, port=redis.port)
            try:
                deadline = time.monotonic() + 10
                while True:
                    try:
                        assert await cache.get(b"key") is None  # a fresh server: empty
                        break
                    except CacheUnavailable:
                        assert time.monotonic() < deadline, "never reconnected"
                        await asyncio.sleep(0.05)
                await cache.put(b"key", b"again")
                assert await cache.get(b"key") == b"again"
            finally:
                restarted.stop()
        finally:
            await cache.close()

    try:
        asyncio.run(scenario())
    finally:
        redis.stop()
