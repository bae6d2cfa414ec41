"""Bringing the served versions in line with the disk: start-up, poll, the load/unload API, lazy loads.

Disk scans, config.yaml parsing and stat calls run in worker threads (``asyncio.to_thread``), so a
slow or large repository never stalls the event loop that serves requests. Each change runs under
the model's lock and ends in the registry's ``switch``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from inferd.errors import ModelLoadError, NotFound
from inferd.names import model_name
from inferd.repository.entry import ModelEntry, VersionState
from inferd.repository.loader import LoadedModel, check_config
from inferd.repository.paths import relative_to_repository
from inferd.repository.registry import ModelRegistry
from inferd.repository.report import index_rows
from inferd.repository.rollouts import RolloutController
from inferd.repository.source import find_model, scan_repository
from inferd.repository.versions import VersionLoader, read_model

log = logging.getLogger(__name__)


def _names_on_disk(root: Path) -> list[str]:
    """Blocking: the model directories of the repository."""
    return [source.name for source in scan_repository(root)]


class Reconciler:
    def __init__(
        self,
        root: Path,
        registry: ModelRegistry,
        versions: VersionLoader,
        rollouts: RolloutController,
        lazy: bool = False,
        max_loaded_models: int | None = None,
    ) -> None:
        self._root = root
        self._registry = registry
        self._versions = versions
        self._rollouts = rollouts
        # lazy: models load on their first request; max_loaded_models: LRU-unload idle models above it.
        self._lazy = lazy
        self._max_loaded_models = max_loaded_models
        self._background_loads: set[asyncio.Task[None]] = set()

    # Start-up and polling ----------------------------------------------------------------------
    async def load_initial(self, names: list[str] | None, exit_on_error: bool) -> None:
        """Load ``names`` (every model when None). With ``exit_on_error`` the first failure raises;
        otherwise a failing model is kept, marked not ready with the reason."""
        on_disk = await asyncio.to_thread(_names_on_disk, self._root)
        if names is None:
            names = on_disk
        missing = [name for name in names if name not in on_disk]
        if missing:
            raise ModelLoadError(f"{self._root}: no model named {', '.join(missing)}")
        for name in names:
            entry = self._registry.add(name)
            if self._lazy:
                entry.wanted, entry.lazy = False, True
                continue
            async with entry.lock:
                problems = await self._reconcile(entry)
            if problems and exit_on_error:
                raise ModelLoadError(problems[0])
            await self._enforce_capacity(keep=name)

    def request_load(self, name: str) -> None:
        """Start loading a lazy model in the background (a metadata request for it arrived)."""
        task = asyncio.ensure_future(self.load_on_demand(name))
        self._background_loads.add(task)
        task.add_done_callback(self._background_loads.discard)

    async def load_on_demand(self, name: str) -> None:
        """Load a lazy model (the first request waits for it, and any others arriving meanwhile)."""
        entry = self._registry.entry(name)
        async with entry.lock:
            if not entry.lazy:
                return
            start = time.perf_counter()
            entry.wanted = True
            problems = await self._reconcile(entry)
            entry.lazy = False  # a failure is reported like any other; poll or load retries it
            if problems:
                log.error("model %s failed to load on its first request: %s", name, problems[0])
            else:
                elapsed_ms = (time.perf_counter() - start) * 1e3
                entry.note(f"loaded on its first request in {elapsed_ms:.1f} ms", "lazy_loads")
                log.info("model %s loaded on its first request in %.1f ms", name, elapsed_ms)
        await self._enforce_capacity(keep=name)

    async def poll(self) -> None:
        """Pick up new, changed and removed versions, models and configs (poll mode)."""
        try:
            on_disk = set(await asyncio.to_thread(_names_on_disk, self._root))
        except OSError as exc:
            log.error("cannot scan the model repository: %s", exc)
            return
        for name in sorted(on_disk | self._registry.names()):
            entry = self._registry.add(name, wanted=not self._lazy, lazy=self._lazy)
            async with entry.lock:
                if name not in on_disk:
                    if entry.wanted:
                        await self._registry.unload(entry, "removed from the repository")
                    entry.lazy = False
                    continue
                if entry.lazy:
                    continue  # loads on its first request
                entry.wanted = True
                await self._reconcile(entry)
            await self._enforce_capacity(keep=name)

    async def close(self) -> None:
        await asyncio.gather(*list(self._background_loads), return_exceptions=True)

    # Model repository extension ----------------------------------------------------------------
    async def load(self, name: str, config_override: str | None = None) -> None:
        """(Re)load ``name`` from disk beside what serves; raises ModelLoadError if a version fails."""
        if await asyncio.to_thread(find_model, self._root, model_name(name)) is None:
            raise NotFound(f"no model '{name}' in the repository")
        # A configuration that does not parse changes nothing, not even the remembered override.
        await asyncio.to_thread(check_config, self._root, name, config_override)
        entry = self._registry.add(name)
        async with entry.lock:
            entry.wanted = True
            entry.config_override = config_override
            entry.pinned = None
            entry.held_back.clear()
            entry.applied_rollout = None
            entry.lazy = False
            problems = await self._reconcile(entry, retry_failed=True)
        if problems:
            raise ModelLoadError(f"failed to load model '{name}': {'; '.join(problems)}")
        await self._enforce_capacity(keep=name)

    async def unload(self, name: str) -> None:
        """Stop routing to ``name``, finish its queued and running requests, then unload it."""
        entry = self._registry.entry(name)
        async with entry.lock:
            entry.lazy = False
            await self._registry.unload(entry, "unloaded")

    async def index(self) -> list[dict[str, Any]]:
        """Triton's repository index: every model on disk or known, one row per version."""
        try:
            on_disk = await asyncio.to_thread(_names_on_disk, self._root)
        except OSError:
            on_disk = []
        return index_rows(on_disk, self._registry.models())

    # Internals ---------------------------------------------------------------------------------
    async def _enforce_capacity(self, keep: str) -> None:
        """Above --max-loaded-models, unload the least recently used idle models (not ``keep``)."""
        limit = self._max_loaded_models
        if limit is None:
            return
        while True:
            loaded = [entry for entry in self._registry.entries() if entry.served]
            if len(loaded) <= limit:
                return
            idle = [
                entry
                for entry in loaded
                if entry.name != keep
                and entry.rollout is None
                and all(model.batcher.pending == 0 for model in entry.served.values())
            ]
            if not idle:
                log.warning("%d models loaded, above --max-loaded-models %d, none idle", len(loaded), limit)
                return
            victim = min(idle, key=ModelEntry.last_used)
            async with victim.lock:
                reason = f"unloaded: least recently used (--max-loaded-models {limit})"
                await self._registry.unload(victim, reason)
                # It loads again on its next request (and a poll leaves it alone until then).
                victim.lazy = True

    async def _reconcile(self, entry: ModelEntry, retry_failed: bool = False) -> list[str]:
        """Bring one model in line with its files; returns the problems (empty when all is well)."""
        model_dir = self._root / entry.name
        disk = await asyncio.to_thread(read_model, self._root, entry.name, entry.config_override)
        if disk is None:
            await self._registry.unload(entry, "removed from the repository")
            return []
        if disk.files is None:
            return self._problems(entry, [disk.problem])
        source, config = disk.source, disk.files.config
        if not source.versions:
            return self._problems(
                entry, [f"{model_dir}: no version directory (expected e.g. {entry.name}/1/)"]
            )
        wanted = entry.wanted_versions(config, list(source.versions))
        if not wanted:
            return self._problems(entry, [f"{model_dir}: no version on disk matches the version_policy"])
        fresh: dict[str, LoadedModel] = {}
        problems: list[str] = []
        for version in wanted:
            key = str(version)
            print_ = disk.prints[version]
            current = entry.served.get(key)
            if current is not None and current.fingerprint == print_:
                continue
            known = entry.status.get(key)
            if (
                not retry_failed
                and known is not None
                and known.state is VersionState.FAILED
                and known.fingerprint == print_
            ):
                problems.append(known.reason)  # already reported; retried when its files change
                continue
            try:
                fresh[key] = await self._versions.load(entry, key, source.versions[version], config, print_)
            except ModelLoadError as exc:
                problems.append(exc.message)
        # A failed version never costs what already serves: then nothing is unloaded.
        keep = entry.served if problems else {k: m for k, m in entry.served.items() if int(k) in wanted}
        served = {**keep, **fresh}
        seen = [int(k) for k in (*entry.served, *entry.held_back, *entry.history)]
        if entry.pinned is not None and fresh and max(map(int, fresh)) > max(seen, default=0):
            # A version newer than anything seen is a new deployment: a rollback's pin ends.
            entry.note(f"pin on version {entry.pinned} ends: version {max(map(int, fresh))} arrived")
            entry.pinned = None
        pending = entry.pending_config_rollout(config, served)
        self._registry.switch(entry, served, config)
        if pending is not None:
            self._rollouts.start_config_rollout(entry, pending, config)
        else:
            self._rollouts.follow_config_rollout(entry, config)
        return self._problems(entry, problems)

    def _problems(self, entry: ModelEntry, problems: list[str]) -> list[str]:
        # Clients see paths relative to the repository; the log keeps them absolute.
        shown = [relative_to_repository(problem, self._root) for problem in problems]
        reason = "; ".join(shown)
        if reason and reason != entry.reason:  # logged once per new problem, not on every poll
            log.error("model %s: %s", entry.name, "; ".join(problems))
        entry.reason = reason
        return shown
