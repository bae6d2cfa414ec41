"""The rate limiter shared by replicas: token buckets and daily quotas in Redis, one atomic Lua script.

The script reads Redis's own clock (TIME), so replicas with skewed clocks still agree on refills.
When Redis cannot be reached, requests are let through (fail open) or refused with 503 (fail closed),
as configured; either way the errors are counted and logged at most every few seconds.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from inferd.errors import Unavailable
from inferd.security.ratelimit import SECONDS_PER_DAY, Denial, Limits, retry_after

log = logging.getLogger(__name__)

# KEYS[1] bucket hash, KEYS[2] quota counter; ARGV rate (0 = none), burst, quota (0 = none).
# Returns {1, "0"} when allowed, {0, "rate"|"quota", seconds-as-string} when not.
_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local quota = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local tokens = nil
if rate > 0 then
  local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
  tokens = tonumber(state[1]) or burst
  local last = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
  if tokens < 1 then
    return {0, 'rate', tostring((1 - tokens) / rate)}
  end
end
if quota > 0 then
  local used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if used >= quota then
    return {0, 'quota', tostring(86400 - (now % 86400))}
  end
  redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], 172800)
end
if tokens then
  tokens = tokens - 1
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('EXPIRE', KEYS[1], math.ceil((burst - tokens) / rate) + 1)
end
return {1, 'ok', '0'}
"""

# After an error, Redis is not asked again for this long: a down Redis must not cost a failed
# connection attempt per request.
_BACKOFF_S = 1.0
_LOG_EVERY_S = 10.0


class RedisLimiter:
    def __init__(
        self, url: str, fail_open: bool = True, prefix: str = "inferd:ratelimit", timeout_s: float = 0.5
    ) -> None:
        self._client: Any = redis_asyncio.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._script: Any = self._client.register_script(_SCRIPT)
        self._fail_open = fail_open
        self._prefix = prefix
        self._down_until = 0.0
        self._logged_at = 0.0
        # Redis calls that failed, and requests decided by the fail policy instead of by Redis.
        self.errors = 0
        self.decided_without_redis = 0

    async def acquire(self, caller: str, model: str, limits: Limits) -> Denial | None:
        if time.monotonic() < self._down_until:
            return self._without_redis()
        day = int(time.time() // SECONDS_PER_DAY)
        keys = [f"{self._prefix}:bucket:{caller}:{model}", f"{self._prefix}:quota:{caller}:{day}"]
        args = [limits.rate or 0, limits.burst, limits.daily_quota or 0]
        try:
            allowed, reason, seconds = await self._script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            self.errors += 1
            self._down_until = time.monotonic() + _BACKOFF_S
            self._log_error(exc)
            return self._without_redis()
        if allowed:
            return None
        return Denial(reason.decode(), retry_after(float(seconds)))

    def _without_redis(self) -> Denial | None:
        self.decided_without_redis += 1
        if self._fail_open:
            return None
        raise Unavailable("rate limiter unavailable (Redis cannot be reached); try again later")

    def _log_error(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._logged_at >= _LOG_EVERY_S:
            self._logged_at = now
            policy = "letting requests through" if self._fail_open else "refusing requests"
            log.warning("rate-limit Redis unreachable (%s errors so far), %s: %s", self.errors, policy, exc)

    async def close(self) -> None:
        await self._client.aclose()
