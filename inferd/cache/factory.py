"""Build the configured response cache backend."""

from __future__ import annotations

from inferd.cache.base import ResponseCache
from inferd.cache.memory import MemoryCache


def build_cache(backend: str, memory_bytes: int, ttl_s: float, key_prefix: str) -> ResponseCache | None:
    """``backend``: "memory", "off", or a Redis URL."""
    if backend == "off":
        return None
    if backend == "memory":
        return MemoryCache(memory_bytes)
    from inferd.cache.redis import RedisCache  # deferred: the client is imported only when used

    return RedisCache(backend, ttl_s=ttl_s, key_prefix=key_prefix)
