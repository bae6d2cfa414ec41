"""A time budget for loading one model version, shared by its blocking steps.

A thread cannot be stopped, so a step that hangs (a runtime whose session never finishes building,
a warm-up that never returns) is abandoned instead: at the deadline the load stops waiting and fails,
which releases the model's lock, and whatever the step produces later is handed to ``discard`` (a late
session is closed, never installed). Each step runs on its own daemon thread, not in the default
executor: an abandoned step must neither hold an executor worker that other work needs nor keep the
process from exiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from inferd.errors import ModelLoadError

log = logging.getLogger(__name__)

T = TypeVar("T")


# Threads of abandoned steps; a live one may be inside a runtime's native code (see abandoned_loads).
_abandoned: set[threading.Thread] = set()


def abandoned_loads() -> int:
    """How many abandoned load steps are still running. The process must then leave with
    ``os._exit``: tearing down a runtime library (ONNX Runtime) while one of its sessions still
    runs on another thread aborts the process at interpreter exit."""
    for thread in [t for t in _abandoned if not t.is_alive()]:
        _abandoned.discard(thread)
    return len(_abandoned)


class LoadTimeout(ModelLoadError):
    """A load took longer than the server's load timeout and was abandoned."""


class StoppedAtDeadline(ModelLoadError):
    """A step saw the deadline pass (``LoadDeadline.passed``) and stopped on its own."""


class LoadDeadline:
    def __init__(self, timeout_s: float | None) -> None:
        """``timeout_s`` None: no deadline (steps still run on their own threads)."""
        self._timeout_s = timeout_s
        self._end = None if timeout_s is None else time.monotonic() + timeout_s

    async def run(self, work: Callable[[], T], discard: Callable[[T], None] | None = None) -> T:
        """``work()`` on a thread; raises LoadTimeout at the deadline, after which ``discard`` gets
        the result if the step ever finishes (also when the caller is cancelled while waiting)."""
        loop = asyncio.get_running_loop()
        outcome: concurrent.futures.Future[T] = concurrent.futures.Future()
        finished = loop.create_future()

        def wake() -> None:
            if not finished.done():
                finished.set_result(None)

        def step() -> None:
            try:
                outcome.set_result(work())
            except BaseException as exc:  # handed to the waiting coroutine, which re-raises it
                outcome.set_exception(exc)
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
                loop.call_soon_threadsafe(wake)

        thread = threading.Thread(target=step, name="inferd-load", daemon=True)
        thread.start()
        try:
            await asyncio.wait_for(asyncio.shield(finished), self._remaining())
        except TimeoutError:
            if outcome.done():  # finished just as the deadline passed: use it
                return self._result(outcome)
            _abandoned.add(thread)
            _abandon(outcome, discard)
            raise self._timed_out() from None
        except BaseException:
            _abandoned.add(thread)
            _abandon(outcome, discard)
            raise
        return self._result(outcome)

    def _result(self, outcome: concurrent.futures.Future[T]) -> T:
        try:
            return outcome.result()
        except StoppedAtDeadline:
            # The step noticed the deadline before the wait did: the same timeout for the caller.
            raise self._timed_out() from None

    def _timed_out(self) -> LoadTimeout:
        return LoadTimeout(
            f"loading did not finish within the load timeout of {self._timeout_s:g} s "
            "(--load-timeout); the load was abandoned"
        )

    def passed(self) -> bool:
        """Whether the deadline is behind us: a step made of many short runs (a warm-up) checks it
        between runs, so an abandoned one stops instead of holding a core until it completes."""
        return self._end is not None and time.monotonic() >= self._end

    def _remaining(self) -> float | None:
        return None if self._end is None else max(0.0, self._end - time.monotonic())


def _abandon(outcome: concurrent.futures.Future[T], discard: Callable[[T], None] | None) -> None:
    """Nobody will take ``outcome``'s result: discard it once (or as soon as) it exists."""
    if discard is None:
        return

    def late(future: concurrent.futures.Future[T]) -> None:
        failure = future.exception()
        if failure is not None:  # the step failed (or stopped) on its own and cleaned up after itself
            log.info("an abandoned model load step ended: %s", failure)
            return
        try:
            discard(future.result())
        except Exception:
            log.exception("discarding the result of an abandoned model load failed")
        else:
            log.info("an abandoned model load finished late; its result was discarded")

    # Runs at once when the step is already done, otherwise on the step's thread when it finishes.
    outcome.add_done_callback(late)
