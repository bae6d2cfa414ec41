"""Which model versions serve now: what the data plane asks per request, and the one atomic switch.

Every change (start-up, poll, load/unload API, rollout decisions) ends in ``switch``: the served map
and the default pointer are replaced in one step with no ``await`` in between. Versions that left the
map drain (requests that hold them, queued and running ones finish on them), then are closed in the
background. Loading lives in versions.py and reconciler.py, traffic moves in rollouts.py.
"""

from __future__ import annotations

import asyncio
import logging

from inferd.errors import NotFound, NotLoadedYet, Unavailable, not_ready, unknown_model, unknown_version
from inferd.model_config import ModelConfig
from inferd.repository.entry import ModelEntry, VersionState, VersionStatus
from inferd.repository.loader import LoadedModel

log = logging.getLogger(__name__)

__all__ = ["LoadedModel", "ModelEntry", "ModelRegistry"]


class ModelRegistry:
    def __init__(self) -> None:
        self._models: dict[str, ModelEntry] = {}
        self._draining: set[asyncio.Task[None]] = set()

    # Request path ------------------------------------------------------------------------------
    def get(self, name: str, version: str | None = None) -> LoadedModel:
        """The handle serving ``name`` (its default version when ``version`` is empty)."""
        entry = self._models.get(name)
        if entry is None:
            raise NotFound(unknown_model(name))
        if not version:
            model = entry.default
            if model is None:
                if entry.lazy:
                    raise NotLoadedYet(f"model '{name}' loads on its first request")
                raise Unavailable(not_ready(name, entry.reason))
            return model
        model = entry.served.get(version)
        if model is None:
            if entry.lazy:
                raise NotLoadedYet(f"model '{name}' loads on its first request")
            loaded = ", ".join(entry.served) or "none"
            raise NotFound(unknown_version(name, version, f"loaded: {loaded}"))
        return model

    def serves(self, model: LoadedModel) -> bool:
        """Whether ``model`` is still one of its model's served versions (not replaced or unloaded)."""
        entry = self._models.get(model.name)
        return entry is not None and entry.served.get(model.version) is model

    def entry(self, name: str) -> ModelEntry:
        entry = self._models.get(name)
        if entry is None:
            raise NotFound(unknown_model(name))
        return entry

    def find(self, name: str) -> ModelEntry | None:
        return self._models.get(name)

    def entries(self) -> list[ModelEntry]:
        return list(self._models.values())

    def names(self) -> set[str]:
        return set(self._models)

    def models(self) -> dict[str, ModelEntry]:
        """Name -> entry (read-only view for reports)."""
        return self._models

    def all_ready(self) -> bool:
        return all(entry.ready for entry in self._models.values() if entry.wanted)

    # Changes -----------------------------------------------------------------------------------
    def add(self, name: str, wanted: bool = True, lazy: bool = False) -> ModelEntry:
        """The entry of ``name``, created with these flags if it is new."""
        entry = self._models.get(name)
        if entry is None:
            entry = self._models[name] = ModelEntry(name, wanted=wanted, lazy=lazy)
        return entry

    def switch(
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

    async def unload(self, entry: ModelEntry, reason: str) -> None:
        """Stop routing to every version of ``entry`` and wait until they have drained."""
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

    async def close(self) -> None:
        """Drain every version (shutdown, after the front-ends stopped)."""
        # Handles stay published (their statistics stay readable); their batchers refuse new work.
        for entry in self._models.values():
            for model in entry.served.values():
                self._drain(entry, model)
        while self._draining:
            await asyncio.gather(*list(self._draining))

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
                # Requests that resolved this version before the switch are queued on it first.
                await model.released()
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
