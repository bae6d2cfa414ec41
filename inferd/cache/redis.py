"""Response cache in Redis, shared by every replica pointed at the same server.

When Redis fails, calls raise CacheUnavailable at once and the backend stops trying for
``retry_after_s`` (a circuit breaker), so an outage costs each request nothing but a clock read.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from inferd.cache.base import CacheUnavailable

log = logging.getLogger(__name__)


class RedisCache:
    def __init__(
        self,
        url: str,
        ttl_s: float,
        key_prefix: str = "inferd:",
        timeout_s: float = 0.25,
        retry_after_s: float = 1.0,
    ) -> None:
        # No retries inside the client: a slow cache must never be slower than the model it saves.
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._prefix = key_prefix.encode()
        self.retry_after_s = retry_after_s
        self._down_until = 0.0
        self.errors = 0

    async def get(self, key: bytes) -> bytes | None:
        self._check_breaker()
        try:
            value = await self._client.get(self._prefix + key)
        except (TimeoutError, RedisError, OSError) as exc:
            raise self._failed(exc) from None
        self._recovered()
        return value if isinstance(value, bytes) else None

    async def put(self, key: bytes, value: bytes) -> None:
        self._check_breaker()
        try:
            await self._client.set(self._prefix + key, value, px=self._ttl_ms)
        except (TimeoutError, RedisError, OSError) as exc:
            raise self._failed(exc) from None
        self._recovered()

    async def close(self) -> None:
        await self._client.aclose()

    def _check_breaker(self) -> None:
        if self._down_until and time.monotonic() < self._down_until:
            raise CacheUnavailable("redis cache unavailable (retrying shortly)")

    def _failed(self, exc: BaseException) -> CacheUnavailable:
        self.errors += 1
        first = not self._down_until
        self._down_until = time.monotonic() + self.retry_after_s
        if first:
            log.warning("redis response cache unavailable, serving without it: %s", exc)
        return CacheUnavailable(f"redis cache unavailable: {exc}")

    def _recovered(self) -> None:
        if self._down_until:
            self._down_until = 0.0
            log.warning("redis response cache is back")
