"""A time-based progress bar over the runs (rich), drawn on stderr so stdout stays clean for --json -."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any


class Progress:
    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled
        self._bar: Any = None

    def __enter__(self) -> Progress:
        if self._enabled:
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
                refresh_per_second=4,
            )
            self._bar.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(kind, value, traceback)

    @contextlib.contextmanager
    def step(self, label: str, expected_s: float) -> Iterator[None]:
        """Advance a bar for ``label`` by wall time while the run inside the block goes on."""
        if self._bar is None:
            yield
            return
        task = self._bar.add_task(label, total=expected_s)
        stop = threading.Event()
        start = time.monotonic()

        def tick() -> None:
            # Four updates a second: too few to cost the generator anything measurable.
            while not stop.wait(0.25):
                self._bar.update(task, completed=min(time.monotonic() - start, expected_s))

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()
            self._bar.update(task, completed=expected_s, visible=False)
