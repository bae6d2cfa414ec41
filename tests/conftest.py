"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redisctl import RunningRedis, start_redis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRedis]:
    """One real redis-server for the session; tests use distinct key prefixes or flush it themselves."""
    running = start_redis(tmp_path_factory.mktemp("redis"))
    yield running
    running.stop()
