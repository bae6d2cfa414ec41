"""One runtime instance's thread: runs executions one at a time and hands each result to a callback.

A daemon thread rather than a ThreadPoolExecutor: an execution that never returns must not keep the
process from exiting (concurrent.futures joins its threads at exit), and a worker stuck in one is
abandoned and replaced (docs/hardening.md, execution timeout).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

# Workers given up on while stuck in an execution (Worker.abandon); see stuck_threads.
_abandoned: list[Worker[object]] = []


def stuck_threads() -> int:
    """Abandoned workers whose execution has still not returned. The process must then exit without
    finalizing the interpreter: tearing a runtime down under a running thread aborts (ONNX Runtime)."""
    _abandoned[:] = [worker for worker in _abandoned if worker.alive]
    return len(_abandoned)


Job = tuple[Callable[[], T], Callable[[T | BaseException], None]]


class Worker(Generic[T]):
    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Job[T] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], T], done: Callable[[T | BaseException], None]) -> None:
        """Run ``job`` on the thread, then ``done`` there with its result or the exception it raised."""
        self._jobs.put((job, done))

    def stop(self) -> None:
        """Exit after the jobs already submitted; a thread stuck in one exits only if it ever returns."""
        self._jobs.put(None)

    def abandon(self) -> None:
        """Stop, and remember the thread until its stuck execution returns (stuck_threads)."""
        self.stop()
        _abandoned.append(self)  # type: ignore[arg-type]

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, done = item
            result: T | BaseException
            try:
                result = job()
            except BaseException as exc:
                result = exc
            done(result)
