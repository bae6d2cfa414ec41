"""One background task that runs a step at a fixed interval on the event loop until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Periodic:
    """Calls ``step`` (plain or async) every ``interval_s`` seconds after ``start``. A step that raises
    is logged and the next one still runs: one bad sample or a full disk must not end the task."""

    def __init__(self, step: Callable[[], Awaitable[None] | None], interval_s: float, what: str) -> None:
        self._step = step
        self._interval_s = interval_s
        self._what = what
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Cancel the task and wait until it has ended (a step in progress is cancelled too)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                outcome = self._step()
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                log.exception("%s failed", self._what)
