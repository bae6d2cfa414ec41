"""The background step runner shared by drift scoring, energy sampling and audit flushing."""

from __future__ import annotations

import asyncio
import logging

import pytest

from inferd.periodic import Periodic


async def _until(condition: object, timeout_s: float = 10.0) -> None:
    async def poll() -> None:
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout_s)


def test_plain_and_async_steps_run_until_stopped() -> None:
    async def scenario() -> None:
        calls = {"plain": 0, "async": 0}

        def plain() -> None:
            calls["plain"] += 1

        async def asynchronous() -> None:
            await asyncio.sleep(0)
            calls["async"] += 1

        runners = [Periodic(plain, 0.01, "plain"), Periodic(asynchronous, 0.01, "async")]
        for runner in runners:
            runner.start()
            runner.start()  # a second start is a no-op, not a second task
        await _until(lambda: calls["plain"] >= 3 and calls["async"] >= 3)
        for runner in runners:
            await runner.stop()
            assert not runner.running
        stopped = dict(calls)
        await asyncio.sleep(0.05)
        assert calls == stopped

    asyncio.run(scenario())


def test_a_failing_step_is_logged_and_the_next_one_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        calls = 0

        def flaky() -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise OSError("disk full")

        runner = Periodic(flaky, 0.01, "writing the log")
        runner.start()
        await _until(lambda: calls >= 3)
        await runner.stop()

    with caplog.at_level(logging.ERROR, logger="inferd.periodic"):
        asyncio.run(scenario())
    assert [r.getMessage() for r in caplog.records] == ["writing the log failed"]
    assert "disk full" in caplog.text


def test_stop_before_start_is_harmless() -> None:
    asyncio.run(Periodic(lambda: None, 1.0, "idle").stop())
