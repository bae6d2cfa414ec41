"""Loading one version beside whatever serves: runtime, digest and warm-up in worker threads.

A version built here is not reachable until the registry's ``switch`` publishes it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Literal

from inferd.errors import ModelLoadError, NotFound
from inferd.model_config import CONFIG_FILE, ModelConfig
from inferd.repository.deadline import LoadDeadline, LoadTimeout
from inferd.repository.entry import ModelEntry, VersionState, VersionStatus
from inferd.repository.labels import read_labels
from inferd.repository.loader import (
    SERVER_DEFAULTS,
    Fingerprint,
    LoadedModel,
    ModelFiles,
    RuntimeFactory,
    SchedulerDefaults,
    assemble,
    batch_policy,
    close_loaded,
    file_digest,
    fingerprint,
    load_runtime,
    read_config,
    warm,
)
from inferd.repository.paths import relative_to_repository
from inferd.repository.provenance import read_provenance, summary
from inferd.repository.source import ModelSource, find_model
from inferd.repository.warmup import rss_bytes
from inferd.runtimes.ensemble import EnsembleRuntime

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DiskModel:
    """One model directory as read from disk (blocking, in a worker thread: ``read_model``)."""

    source: ModelSource
    # None with ``problem`` set when config.yaml (or the override) does not parse.
    files: ModelFiles | None
    problem: str
    # Version -> fingerprint of its files (None: its model file is missing).
    prints: dict[int, Fingerprint | None]


def read_model(root: Path, name: str, override: str | None) -> DiskModel | None:
    """Blocking: the versions, configuration and fingerprints of a model; None when it is gone (or
    its directory leads outside the repository)."""
    source = find_model(root, name)
    if source is None:
        return None
    try:
        files = read_config(root / name, override)
    except ModelLoadError as exc:
        return DiskModel(source, None, exc.message, {})
    prints = {version: fingerprint(files, path) for version, path in source.versions.items()}
    return DiskModel(source, files, "", prints)


class VersionLoader:
    def __init__(
        self,
        root: Path,
        runtime_factory: RuntimeFactory,
        inline_execution_max_us: int | Literal["auto"] = 0,
        scheduler_defaults: SchedulerDefaults = SERVER_DEFAULTS,
        load_timeout_s: float | None = None,
    ) -> None:
        self._root = root
        # A version still loading or warming up after this long fails and frees its model's lock.
        self._load_timeout_s = load_timeout_s
        self._runtime_factory = runtime_factory
        # For models whose config sets no inline_execution_max_us of their own.
        self._inline_execution_max_us = inline_execution_max_us
        self._scheduler_defaults = scheduler_defaults

    async def load(
        self, entry: ModelEntry, key: str, path: Path, config: ModelConfig, print_: Fingerprint | None
    ) -> LoadedModel:
        """Load and warm one version beside whatever serves; it is not reachable until ``switch``."""
        name = entry.name
        model_dir = self._root / name  # not path.parent.parent: a bare model's files are version 1
        entry.status[key] = VersionStatus(VersionState.LOADING, "loading", print_)
        log.info("loading model %s version %s from %s", name, key, path)
        deadline = LoadDeadline(self._load_timeout_s)
        try:
            if print_ is None:
                raise ModelLoadError(f"{path}: file not found")
            rss_before = rss_bytes()
            runtime, load_ms = await deadline.run(
                partial(load_runtime, self._runtime_factory, path, config), close_loaded
            )
            if isinstance(runtime, EnsembleRuntime):
                await self._check_steps(runtime, model_dir)
            try:
                digest = await deadline.run(partial(file_digest, path))
            except OSError as exc:
                runtime.close()
                raise ModelLoadError(f"{path}: cannot read: {exc}") from None
            except LoadTimeout:
                runtime.close()
                raise
            try:
                policy = batch_policy(
                    config,
                    runtime.signature,
                    model_dir,
                    self._inline_execution_max_us,
                    self._scheduler_defaults,
                    getattr(runtime, "platform", "onnxruntime"),
                )
            except ModelLoadError:
                runtime.close()
                raise
            entry.status[key] = VersionStatus(VersionState.WARMING, "warming up", print_)
            # A warm-up abandoned at the deadline closes its runtime when it returns.
            cold_start = await deadline.run(
                partial(warm, runtime, config, model_dir, load_ms, deadline.passed),
                lambda _: runtime.close(),
            )
            labels = await deadline.run(partial(read_labels, model_dir, path.parent))
            rss_after = rss_bytes()
            if rss_before is not None and rss_after is not None:
                cold_start = replace(cold_start, rss_delta_mb=(rss_after - rss_before) / 2**20)
        except Exception as exc:
            logged = exc.message if isinstance(exc, ModelLoadError) else f"{path}: {exc}"
            log.error("model %s version %s failed to load: %s", name, key, logged)
            message = relative_to_repository(logged, self._root)
            entry.status[key] = VersionStatus(VersionState.FAILED, message, print_)
            entry.note(f"version {key} failed to load: {message}", "load_failures")
            raise ModelLoadError(message) from None
        log.info("model %s version %s warm: %s", name, key, cold_start.describe())
        model = assemble(name, key, config, runtime, policy, print_, cold_start)
        model.cache_version = f"{key}@{digest}"
        model.labels = labels
        provenance = await asyncio.to_thread(read_provenance, path.parent)
        model.provenance = summary(provenance) if provenance is not None else {}
        if rss_before is not None and rss_after is not None:
            model.stats.load_rss_bytes = max(0, rss_after - rss_before)
        return model

    async def _check_steps(self, runtime: EnsembleRuntime, model_dir: Path) -> None:
        """An ensemble's step models must be models of this repository (loaded or not: a step that
        is not serving makes the ensemble not ready, not unloadable)."""
        names = runtime.step_models
        found = await asyncio.to_thread(lambda: [find_model(self._root, n) is not None for n in names])
        missing = [name for name, there in zip(names, found, strict=True) if not there]
        if missing:
            runtime.close()
            raise ModelLoadError(
                f"{model_dir / CONFIG_FILE}: ensemble steps use models the repository does not have: "
                + ", ".join(repr(name) for name in missing)
            )

    async def load_from_disk(self, entry: ModelEntry, key: str) -> LoadedModel:
        """Load one version with the model's current configuration (rollout, rollback)."""
        disk = await asyncio.to_thread(read_model, self._root, entry.name, entry.config_override)
        if disk is None or int(key) not in disk.source.versions:
            raise NotFound(f"model '{entry.name}' has no version '{key}' in the repository")
        if disk.files is None:
            raise ModelLoadError(relative_to_repository(disk.problem, self._root))
        version = int(key)
        return await self.load(
            entry, key, disk.source.versions[version], disk.files.config, disk.prints[version]
        )
