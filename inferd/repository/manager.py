"""Which model versions are loaded and serving; the data plane asks it for a handle per request."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from inferd.errors import ModelLoadError, NotFound, Unavailable
from inferd.model_config import ModelConfig, load_model_config
from inferd.repository.source import ModelSource, scan_repository
from inferd.runtimes.base import Runtime, Signature
from inferd.runtimes.onnx import OnnxRuntime
from inferd.scheduler.batcher import Batcher, BatchPolicy
from inferd.scheduler.stats import ModelStats

log = logging.getLogger(__name__)

RuntimeFactory = Callable[[Path, ModelConfig], Runtime]


@dataclass(slots=True, eq=False)
class LoadedModel:
    """One servable model version: its runtime, its queue and its statistics."""

    name: str
    version: str
    config: ModelConfig
    runtime: Runtime
    policy: BatchPolicy
    batcher: Batcher
    stats: ModelStats
    output_datatypes: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.output_datatypes = {spec.name: spec.datatype for spec in self.runtime.signature.outputs}

    @property
    def signature(self) -> Signature:
        return self.runtime.signature


@dataclass(slots=True)
class ModelEntry:
    name: str
    versions: dict[str, LoadedModel] = field(default_factory=dict)
    default_version: str | None = None
    # Why the model is not ready (empty when it is).
    reason: str = ""

    @property
    def ready(self) -> bool:
        return self.default_version is not None and not self.reason


class ModelRepository:
    def __init__(self, root: Path, runtime_factory: RuntimeFactory = OnnxRuntime) -> None:
        self._root = root
        self._runtime_factory = runtime_factory
        self._models: dict[str, ModelEntry] = {}

    @property
    def root(self) -> Path:
        return self._root

    def load_all(self, exit_on_error: bool = True) -> None:
        """Load the highest version of every model. With ``exit_on_error`` the first failure raises;
        otherwise a failing model is kept, marked not ready with the reason."""
        for source in scan_repository(self._root):
            entry = ModelEntry(source.name)
            self._models[source.name] = entry
            try:
                self._load_latest(source, entry)
            except ModelLoadError as exc:
                if exit_on_error:
                    raise
                entry.reason = exc.message
                log.error("model %s is not ready: %s", source.name, exc.message)

    def _load_latest(self, source: ModelSource, entry: ModelEntry) -> None:
        if not source.versions:
            raise ModelLoadError(f"{source.directory}: no version directory (expected e.g. {source.name}/1/)")
        config = load_model_config(source.directory)
        version, path = max(source.versions.items())
        if not path.is_file():
            raise ModelLoadError(f"{path}: file not found")
        rss_before = _rss_bytes()
        runtime = self._runtime_factory(path, config)
        rss_after = _rss_bytes()
        signature = runtime.signature
        batching = config.dynamic_batching
        dynamic = batching is not None or (config.inferred and signature.max_batch_size > 0)
        policy = BatchPolicy(
            max_batch_size=signature.max_batch_size,
            dynamic=dynamic,
            max_queue_delay_ns=int((batching.max_queue_delay_ms if batching else 0) * 1e6),
            preferred_batch_sizes=batching.preferred_batch_sizes if batching else (),
            max_queue_size=config.max_queue_size,
        )
        if policy.preferred_batch_sizes and max(policy.preferred_batch_sizes) > signature.max_batch_size:
            raise ModelLoadError(
                f"{source.directory}: preferred_batch_sizes exceed the max_batch_size "
                f"{signature.max_batch_size}"
            )
        stats = ModelStats()
        if rss_before is not None and rss_after is not None:
            stats.load_rss_bytes = max(0, rss_after - rss_before)
        batcher = Batcher(runtime, policy, stats, source.name)
        entry.versions[str(version)] = LoadedModel(
            source.name, str(version), config, runtime, policy, batcher, stats
        )
        entry.default_version = str(version)
        log.info("loaded model %s version %s from %s", source.name, version, path)

    def get(self, name: str, version: str | None = None) -> LoadedModel:
        """The handle serving ``name`` (its default version when ``version`` is empty)."""
        entry = self._models.get(name)
        if entry is None:
            raise NotFound(f"unknown model '{name}'")
        if not version:
            if entry.default_version is None:
                raise Unavailable(f"model '{name}' is not ready: {entry.reason or 'not loaded'}")
            return entry.versions[entry.default_version]
        model = entry.versions.get(version)
        if model is None:
            loaded = ", ".join(entry.versions) or "none"
            raise NotFound(f"model '{name}' has no version '{version}' loaded (loaded: {loaded})")
        return model

    def entry(self, name: str) -> ModelEntry:
        entry = self._models.get(name)
        if entry is None:
            raise NotFound(f"unknown model '{name}'")
        return entry

    def entries(self) -> list[ModelEntry]:
        return list(self._models.values())

    def all_ready(self) -> bool:
        return all(entry.ready for entry in self._models.values())

    async def close(self) -> None:
        models = [m for entry in self._models.values() for m in entry.versions.values()]
        await asyncio.gather(*(m.batcher.close() for m in models))
        for model in models:
            model.runtime.close()


def _rss_bytes() -> int | None:
    """Resident set size of this process (Linux /proc), or None elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
