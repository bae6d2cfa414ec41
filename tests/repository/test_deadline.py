"""The load deadline: a step past it is abandoned, and what it produces later is discarded."""

from __future__ import annotations

import asyncio
import threading

import pytest

from inferd.repository.deadline import LoadDeadline, LoadTimeout, StoppedAtDeadline

WAIT_S = 10


def test_a_step_within_the_deadline_returns_its_result() -> None:
    async def scenario() -> None:
        assert await LoadDeadline(WAIT_S).run(lambda: 42) == 42
        assert await LoadDeadline(None).run(lambda: "no deadline") == "no deadline"
        with pytest.raises(ValueError, match="bad model"):
            await LoadDeadline(WAIT_S).run(_fail)

    asyncio.run(scenario())


def _fail() -> None:
    raise ValueError("bad model")


def test_a_late_step_fails_the_load_and_its_result_is_discarded() -> None:
    release = threading.Event()
    discarded: list[str] = []
    gone = threading.Event()

    def hung() -> str:
        release.wait(WAIT_S)
        return "session"

    def discard(result: str) -> None:
        discarded.append(result)
        gone.set()

    async def scenario() -> None:
        with pytest.raises(LoadTimeout, match="load timeout of 0.2 s"):
            await LoadDeadline(0.2).run(hung, discard)
        assert discarded == []  # still running: nothing to discard yet

    asyncio.run(scenario())
    release.set()
    assert gone.wait(WAIT_S) and discarded == ["session"]


def test_one_budget_covers_every_step() -> None:
    release = threading.Event()

    async def scenario() -> None:
        deadline = LoadDeadline(0.5)
        await deadline.run(lambda: release.wait(0.3))  # most of the budget
        with pytest.raises(LoadTimeout):
            await deadline.run(lambda: release.wait(WAIT_S))

    asyncio.run(scenario())
    release.set()


def test_a_cancelled_wait_discards_the_result_too() -> None:
    release = threading.Event()
    gone = threading.Event()

    async def scenario() -> None:
        task = asyncio.ensure_future(
            LoadDeadline(None).run(lambda: release.wait(WAIT_S), lambda _: gone.set())
        )
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    release.set()
    assert gone.wait(WAIT_S)


def test_a_step_that_fails_late_is_not_discarded() -> None:
    release = threading.Event()
    discarded: list[object] = []

    def fails_late() -> None:
        release.wait(WAIT_S)
        raise RuntimeError("failed after the deadline")

    async def scenario() -> None:
        with pytest.raises(LoadTimeout):
            await LoadDeadline(0.1).run(fails_late, discarded.append)

    asyncio.run(scenario())
    release.set()
    threads = [t for t in threading.enumerate() if t.name == "inferd-load"]
    for thread in threads:
        thread.join(WAIT_S)
    assert discarded == []


def test_a_deadline_tells_when_it_has_passed() -> None:
    assert not LoadDeadline(None).passed()
    assert not LoadDeadline(WAIT_S).passed()
    assert LoadDeadline(0).passed()


def test_a_step_that_stops_at_the_deadline_is_the_load_timeout() -> None:
    # A warm-up checks the deadline between runs and may notice it before the wait does: the caller
    # must see the same timeout either way, not the step's own message.
    def stops() -> None:
        raise StoppedAtDeadline("warm-up stopped at the load deadline")

    async def scenario() -> None:
        with pytest.raises(LoadTimeout, match="load timeout of 10 s"):
            await LoadDeadline(WAIT_S).run(stops)

    asyncio.run(scenario())
