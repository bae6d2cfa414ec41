"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redisctl import RunningRedis, start_redis
from tinydecoder import build_tiny_decoder


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRedis]:
    """One real redis-server for the session; tests use distinct key prefixes or flush it themselves."""
    running = start_redis(tmp_path_factory.mktemp("redis"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def tiny_version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny decoder's version directory (tests/tinydecoder.py), built once per session for the
    generative tests and the status page's; copy it, never change it."""
    return build_tiny_decoder(tmp_path_factory.mktemp("tiny-decoder") / "1")
