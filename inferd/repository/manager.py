"""Which model versions are loaded and serving; the data plane asks it for a handle per request.

Every change (start-up, poll, load/unload API, rollout decisions) goes through one per-model lock and
ends in ``_switch``: new versions are loaded and warmed beside the serving ones, then the served map
and the default pointer are replaced in one step with no ``await`` in between. Versions that left
the map drain (queued and running requests finish on them) and are unloaded in the background.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from inferd.errors import ModelLoadError, NotFound, NotLoadedYet, Unavailable
from inferd.model_config import ModelConfig
from inferd.repository.entry import ModelEntry, VersionState, VersionStatus
from inferd.repository.loader import (
    Fingerprint,
    LoadedModel,
    RuntimeFactory,
    assemble,
    batch_policy,
    file_digest,
    fingerprint,
    load_runtime,
    read_config,
    warm,
)
from inferd.repository.report import index_rows, lifecycle_document
from inferd.repository.rollouts import RolloutOperations
from inferd.repository.source import scan_model, scan_repository
from inferd.repository.warmup import rss_bytes
from inferd.runtimes.registry import create_runtime

log = logging.getLogger(__name__)

__all__ = ["LoadedModel", "ModelEntry", "ModelRepository"]


class ModelRepository(RolloutOperations):
    def __init__(
        self,
        root: Path,
        runtime_factory: RuntimeFactory = create_runtime,
        lazy: bool = False,
        max_loaded_models: int | None = None,
        inline_execution_max_us: int = 0,
    ) -> None:
        self._root = root
        self._runtime_factory = runtime_factory
        # lazy: models load on their first request; max_loaded_models: LRU-unload idle models above it.
        self._lazy = lazy
        self._max_loaded_models = max_loaded_models
        # For models whose config sets no inline_execution_max_us of their own.
        self._inline_execution_max_us = inline_execution_max_us
        self._models: dict[str, ModelEntry] = {}
        self._draining: set[asyncio.Task[None]] = set()
        self._background_loads: set[asyncio.Task[None]] = set()

    @property
    def root(self) -> Path:
        return self._root

    # Request path ------------------------------------------------------------------------------
    def get(self, name: str, version: str | None = None) -> LoadedModel:
        """The handle serving ``name`` (its default version when ``version`` is empty)."""
        entry = self._models.get(name)
        if entry is None:
            raise NotFound(f"unknown model '{name}'")
        if not version:
            model = entry.default
            if model is None:
                if entry.lazy:
                    raise NotLoadedYet(f"model '{name}' loads on its first request")
                raise Unavailable(f"model '{name}' is not ready: {entry.reason or 'not loaded'}")
            return model
        model = entry.served.get(version)
        if model is None:
            if entry.lazy:
                raise NotLoadedYet(f"model '{name}' loads on its first request")
            loaded = ", ".join(entry.served) or "none"
            raise NotFound(f"model '{name}' has no version '{version}' loaded (loaded: {loaded})")
        return model

    def serves(self, model: LoadedModel) -> bool:
        """Whether ``model`` is still one of its model's served versions (not replaced or unloaded)."""
        entry = self._models.get(model.name)
        return entry is not None and entry.served.get(model.version) is model

    def entry(self, name: str) -> ModelEntry:
        entry = self._models.get(name)
        if entry is None:
            raise NotFound(f"unknown model '{name}'")
        return entry

    def entries(self) -> list[ModelEntry]:
        return list(self._models.values())

    def all_ready(self) -> bool:
        return all(entry.ready for entry in self._models.values() if entry.wanted)

    # Start-up and polling ----------------------------------------------------------------------
    def load_all(self, exit_on_error: bool = True) -> None:
        """Load every model now, blocking: for scripts and benchmarks outside an event loop."""
        asyncio.run(self.load_initial(None, exit_on_error))

    async def load_initial(self, names: list[str] | None, exit_on_error: bool) -> None:
        """Load ``names`` (every model when None). With ``exit_on_error`` the first failure raises;
        otherwise a failing model is kept, marked not ready with the reason."""
        on_disk = [source.name for source in scan_repository(self._root)]
        if names is None:
            names = on_disk
        missing = [name for name in names if name not in on_disk]
        if missing:
            raise ModelLoadError(f"{self._root}: no model named {', '.join(missing)}")
        for name in names:
            entry = self._models.setdefault(name, ModelEntry(name))
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
        entry = self.entry(name)
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
            on_disk = {source.name for source in scan_repository(self._root)}
        except OSError as exc:
            log.error("cannot scan the model repository: %s", exc)
            return
        for name in sorted(on_disk | set(self._models)):
            entry = self._models.get(name)
            if entry is None:
                entry = self._models[name] = ModelEntry(name, wanted=not self._lazy, lazy=self._lazy)
            async with entry.lock:
                if name not in on_disk:
                    if entry.wanted:
                        await self._unload(entry, "removed from the repository")
                    entry.lazy = False
                    continue
                if entry.lazy:
                    continue  # loads on its first request
                entry.wanted = True
                await self._reconcile(entry)
            await self._enforce_capacity(keep=name)

    async def watch(self, poll_interval_s: float | None, check_interval_s: float) -> None:
        """Background work until cancelled: guard-rail checks every ``check_interval_s`` and, in poll
        mode, a repository scan every ``poll_interval_s``. Separate loops, so a slow load found by a
        poll never delays a rollback."""
        loops = [self._every(check_interval_s, self.check_rollouts)]
        if poll_interval_s is not None:
            loops.append(self._every(poll_interval_s, self.poll))
        await asyncio.gather(*loops)

    async def _every(self, interval_s: float, work: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await work()
            except Exception:  # keep watching: one bad model must not stop lifecycle management
                log.exception("model lifecycle check failed")

    # Model repository extension ----------------------------------------------------------------
    async def load(self, name: str, config_override: str | None = None) -> None:
        """(Re)load ``name`` from disk beside what serves; raises ModelLoadError if a version fails."""
        if scan_model(self._root / name) is None:
            raise NotFound(f"no model '{name}' in the repository {self._root}")
        # A configuration that does not parse changes nothing, not even the remembered override.
        read_config(self._root / name, config_override)
        entry = self._models.setdefault(name, ModelEntry(name))
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
        entry = self.entry(name)
        async with entry.lock:
            entry.lazy = False
            await self._unload(entry, "unloaded")

    def index(self) -> list[dict[str, Any]]:
        """Triton's repository index: every model on disk or known, one row per version."""
        try:
            on_disk = [source.name for source in scan_repository(self._root)]
        except OSError:
            on_disk = []
        return index_rows(on_disk, self._models)

    def lifecycle(self, name: str) -> dict[str, Any]:
        """Everything about one model's lifecycle: versions, cold starts, rollout, recent decisions."""
        return lifecycle_document(self.entry(name))

    # Shutdown ----------------------------------------------------------------------------------
    async def close(self) -> None:
        await asyncio.gather(*list(self._background_loads), return_exceptions=True)
        # Handles stay published (their statistics stay readable); their batchers refuse new work.
        for entry in self._models.values():
            for model in entry.served.values():
                self._drain(entry, model)
        while self._draining:
            await asyncio.gather(*list(self._draining))

    # Internals ---------------------------------------------------------------------------------
    async def _enforce_capacity(self, keep: str) -> None:
        """Above --max-loaded-models, unload the least recently used idle models (not ``keep``)."""
        limit = self._max_loaded_models
        if limit is None:
            return
        while True:
            loaded = [entry for entry in self._models.values() if entry.served]
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
                await self._unload(victim, f"unloaded: least recently used (--max-loaded-models {limit})")
                # It loads again on its next request (and a poll leaves it alone until then).
                victim.lazy = True

    async def _reconcile(self, entry: ModelEntry, retry_failed: bool = False) -> list[str]:
        """Bring one model in line with its files; returns the problems (empty when all is well)."""
        model_dir = self._root / entry.name
        source = scan_model(model_dir)
        if source is None:
            await self._unload(entry, "removed from the repository")
            return []
        try:
            files = read_config(model_dir, entry.config_override)
        except ModelLoadError as exc:
            return self._problems(entry, [exc.message])
        config = files.config
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
            path = source.versions[version]
            print_ = fingerprint(files, path)
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
                fresh[key] = await self._load_version(entry, key, path, config, print_)
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
        self._switch(entry, served, config)
        if pending is not None:
            self._start_config_rollout(entry, pending, config)
        else:
            self._follow_config_rollout(entry, config)
        return self._problems(entry, problems)

    def _problems(self, entry: ModelEntry, problems: list[str]) -> list[str]:
        reason = "; ".join(problems)
        if reason and reason != entry.reason:  # logged once per new problem, not on every poll
            log.error("model %s: %s", entry.name, reason)
        entry.reason = reason
        return problems

    async def _load_version(
        self, entry: ModelEntry, key: str, path: Path, config: ModelConfig, print_: Fingerprint | None
    ) -> LoadedModel:
        """Load and warm one version beside whatever serves; it is not reachable until ``_switch``."""
        name = entry.name
        model_dir = path.parent.parent
        entry.status[key] = VersionStatus(VersionState.LOADING, "loading", print_)
        log.info("loading model %s version %s from %s", name, key, path)
        try:
            if print_ is None:
                raise ModelLoadError(f"{path}: file not found")
            rss_before = rss_bytes()
            runtime, load_ms = await asyncio.to_thread(load_runtime, self._runtime_factory, path, config)
            try:
                digest = await asyncio.to_thread(file_digest, path)
            except OSError as exc:
                runtime.close()
                raise ModelLoadError(f"{path}: cannot read: {exc}") from None
            try:
                policy = batch_policy(config, runtime.signature, model_dir, self._inline_execution_max_us)
            except ModelLoadError:
                runtime.close()
                raise
            entry.status[key] = VersionStatus(VersionState.WARMING, "warming up", print_)
            cold_start = await asyncio.to_thread(warm, runtime, config, model_dir, load_ms)
            rss_after = rss_bytes()
            if rss_before is not None and rss_after is not None:
                cold_start = replace(cold_start, rss_delta_mb=(rss_after - rss_before) / 2**20)
        except Exception as exc:
            message = exc.message if isinstance(exc, ModelLoadError) else f"{path}: {exc}"
            entry.status[key] = VersionStatus(VersionState.FAILED, message, print_)
            entry.note(f"version {key} failed to load: {message}", "load_failures")
            log.error("model %s version %s failed to load: %s", name, key, message)
            raise ModelLoadError(message) from None
        figures = cold_start.as_dict()
        log.info(
            "model %s version %s warm: load %s ms, first inference %s ms, warm p50 %s ms, RSS +%s MiB",
            name,
            key,
            figures["load_ms"],
            figures["first_inference_ms"],
            figures["warm_p50_ms"],
            figures["rss_delta_mb"],
        )
        model = assemble(name, key, config, runtime, policy, print_, cold_start)
        model.cache_version = f"{key}@{digest}"
        if rss_before is not None and rss_after is not None:
            model.stats.load_rss_bytes = max(0, rss_after - rss_before)
        return model

    async def _load_candidate(self, entry: ModelEntry, key: str) -> LoadedModel:
        """Load one version from disk with the model's current configuration (rollout, rollback)."""
        model_dir = self._root / entry.name
        source = scan_model(model_dir)
        if source is None or int(key) not in source.versions:
            raise NotFound(f"model '{entry.name}' has no version '{key}' in the repository")
        files = read_config(model_dir, entry.config_override)
        path = source.versions[int(key)]
        return await self._load_version(entry, key, path, files.config, fingerprint(files, path))

    def _switch(
        self,
        entry: ModelEntry,
        served: dict[str, LoadedModel],
        config: ModelConfig | None = None,
        record_history: bool = True,
    ) -> None:
        """The atomic step: new served map and default pointer; what left the map drains."""
        served = dict(sorted(served.items(), key=lambda item: int(item[0])))
        previous_served, previous_default = entry.served, entry.default
        default = entry.choose_default(served)
        for model in served.values():
            model.rollout = entry.rollout if model is default else None
        entry.served = served
        entry.default = default
        if config is not None:
            entry.config = config
        for key, model in served.items():
            if previous_served.get(key) is not model:
                entry.status.pop(key, None)
                entry.note(f"version {key} ready", "loads")
        if default is not previous_default and default is not None:
            was = previous_default.version if previous_default is not None else None
            if record_history and was is not None and was != default.version:
                entry.history.append(was)
            if was != default.version:
                entry.note(f"default version {was} -> {default.version}", "default_changes")
                log.info("model %s: default version is now %s (was %s)", entry.name, default.version, was)
        for key, model in previous_served.items():
            if served.get(key) is not model:
                self._drain(entry, model)

    def _drain(self, entry: ModelEntry, model: LoadedModel) -> None:
        key = model.version
        if key not in entry.served and entry.status.get(key, VersionStatus(VersionState.READY)).state not in (
            VersionState.FAILED,
            VersionState.LOADING,
            VersionState.WARMING,
        ):
            entry.status[key] = VersionStatus(VersionState.DRAINING, "finishing queued requests")

        async def drain() -> None:
            try:
                await model.batcher.close()
            finally:
                model.close()
            status = entry.status.get(key)
            if key not in entry.served and (status is None or status.state is VersionState.DRAINING):
                entry.status[key] = VersionStatus(VersionState.UNLOADED, "unloaded", model.fingerprint)
            log.info("model %s version %s unloaded", entry.name, key)

        task = asyncio.ensure_future(drain())
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    async def _unload(self, entry: ModelEntry, reason: str) -> None:
        draining = list(entry.served.values())
        entry.wanted = False
        entry.rollout = None
        entry.served, entry.default = {}, None
        entry.reason = reason
        tasks_before = set(self._draining)
        for model in draining:
            model.rollout = None
            self._drain(entry, model)
        # Shielded: a cancelled caller (shutdown) must not cut a drain short.
        await asyncio.gather(*(asyncio.shield(task) for task in self._draining - tasks_before))
        for model in draining:
            status = entry.status.get(model.version)
            if status is None or status.state is not VersionState.FAILED:
                entry.status[model.version] = VersionStatus(VersionState.UNLOADED, reason, model.fingerprint)
        entry.note(reason, "unloads")
        log.info("model %s %s", entry.name, reason)
