"""The model repository: one object the server builds, made of three parts with one job each.

- ``registry`` (registry.py): which versions serve now; the data plane asks it for a handle per
  request, and every change ends in its atomic ``switch``;
- the reconciler (reconciler.py): start-up, poll, the load/unload API and lazy loads bring the served
  versions in line with the disk, reading it in worker threads; versions.py loads one version;
- the rollout controller (rollouts.py): canary rollouts, promotion and rollback.

Changes to one model run under its ``asyncio.Lock`` (``ModelEntry.lock``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from inferd.repository.entry import ModelEntry
from inferd.repository.loader import SERVER_DEFAULTS, LoadedModel, RuntimeFactory, SchedulerDefaults
from inferd.repository.reconciler import Reconciler
from inferd.repository.registry import ModelRegistry
from inferd.repository.report import lifecycle_document
from inferd.repository.rollouts import RolloutController
from inferd.repository.versions import VersionLoader
from inferd.runtimes.registry import create_runtime

log = logging.getLogger(__name__)

__all__ = ["LoadedModel", "ModelEntry", "ModelRepository"]


class ModelRepository:
    def __init__(
        self,
        root: Path,
        runtime_factory: RuntimeFactory = create_runtime,
        lazy: bool = False,
        max_loaded_models: int | None = None,
        inline_execution_max_us: int | Literal["auto"] = 0,
        scheduler_defaults: SchedulerDefaults = SERVER_DEFAULTS,
        load_timeout_s: float | None = None,
    ) -> None:
        self._root = root
        self.registry = ModelRegistry()
        versions = VersionLoader(
            root, runtime_factory, inline_execution_max_us, scheduler_defaults, load_timeout_s
        )
        self.rollouts = RolloutController(self.registry, versions)
        self.reconciler = Reconciler(root, self.registry, versions, self.rollouts, lazy, max_loaded_models)

    @property
    def root(self) -> Path:
        return self._root

    # What serves (the registry) ----------------------------------------------------------------
    def get(self, name: str, version: str | None = None) -> LoadedModel:
        """The handle serving ``name`` (its default version when ``version`` is empty)."""
        return self.registry.get(name, version)

    def serves(self, model: LoadedModel) -> bool:
        return self.registry.serves(model)

    def entry(self, name: str) -> ModelEntry:
        return self.registry.entry(name)

    def entries(self) -> list[ModelEntry]:
        return self.registry.entries()

    def all_ready(self) -> bool:
        return self.registry.all_ready()

    def lifecycle(self, name: str) -> dict[str, Any]:
        """Everything about one model's lifecycle: versions, cold starts, rollout, recent decisions."""
        return lifecycle_document(self.registry.entry(name))

    # Loading (the reconciler) ------------------------------------------------------------------
    def load_all(self, exit_on_error: bool = True) -> None:
        """Load every model now, blocking: for scripts and benchmarks outside an event loop."""
        asyncio.run(self.load_initial(None, exit_on_error))

    async def load_initial(self, names: list[str] | None, exit_on_error: bool) -> None:
        await self.reconciler.load_initial(names, exit_on_error)

    def request_load(self, name: str) -> None:
        self.reconciler.request_load(name)

    async def load_on_demand(self, name: str) -> None:
        await self.reconciler.load_on_demand(name)

    async def poll(self) -> None:
        await self.reconciler.poll()

    async def load(self, name: str, config_override: str | None = None) -> None:
        await self.reconciler.load(name, config_override)

    async def unload(self, name: str) -> None:
        await self.reconciler.unload(name)

    async def index(self) -> list[dict[str, Any]]:
        return await self.reconciler.index()

    # Rollouts (the rollout controller) ---------------------------------------------------------
    async def start_rollout(self, name: str, document: dict[str, Any]) -> dict[str, Any]:
        return await self.rollouts.start_rollout(name, document)

    async def rollback(self, name: str) -> str:
        return await self.rollouts.rollback(name)

    async def promote(self, name: str) -> str:
        return await self.rollouts.promote(name)

    def rollout_status(self, name: str) -> dict[str, Any] | None:
        return self.rollouts.rollout_status(name)

    async def check_rollouts(self) -> None:
        await self.rollouts.check_rollouts()

    # Background work and shutdown --------------------------------------------------------------
    async def watch(self, poll_interval_s: float | None, check_interval_s: float) -> None:
        """Background work until cancelled: guard-rail checks every ``check_interval_s`` and, in poll
        mode, a repository scan every ``poll_interval_s``. Separate loops, so a slow load found by a
        poll never delays a rollback."""
        loops = [self._every(check_interval_s, self.rollouts.check_rollouts)]
        if poll_interval_s is not None:
            loops.append(self._every(poll_interval_s, self.reconciler.poll))
        await asyncio.gather(*loops)

    async def _every(self, interval_s: float, work: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await work()
            except Exception:  # keep watching: one bad model must not stop lifecycle management
                log.exception("model lifecycle check failed")

    async def close(self) -> None:
        await self.reconciler.close()
        await self.registry.close()
