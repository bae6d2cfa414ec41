"""What the front-ends ask about models besides inference: readiness, metadata, configuration and
statistics documents, and the model lifecycle (repository index, load and unload, rollouts, the drift
sample). None of it is on a request's path; the data plane holds one as ``DataPlane.control``."""

from __future__ import annotations

from typing import Any

from inferd.drift.monitor import DriftMonitor
from inferd.errors import InferdError, InvalidRequest, NotFound, NotLoadedYet, Unavailable, unknown_version
from inferd.generative.figures import generation_of
from inferd.repository.description import ModelDescription, describe, runtime_parameters
from inferd.repository.manager import LoadedModel, ModelRepository
from inferd.runtimes.ensemble import EnsembleRuntime
from inferd.runtimes.registry import platform_of


class ControlPlane:
    """``model_control``: the server's model control mode (--model-control); only ``explicit``
    allows the load and unload calls."""

    def __init__(self, repository: ModelRepository, model_control: str, drift: DriftMonitor | None) -> None:
        self._repository = repository
        self._registry = repository.registry
        self._model_control = model_control
        self._drift = drift

    # Readiness ----------------------------------------------------------------------------------
    def model_ready(self, name: str, version: str | None = None) -> bool:
        entry = self._repository.entry(name)
        if version:
            if entry.lazy:
                return True  # servable: it loads on its first request
            if version not in entry.served:
                raise NotFound(unknown_version(name, version, "not loaded"))
            return self._steps_ready(entry.served[version])
        if entry.default is not None:
            return self._steps_ready(entry.default)
        return entry.lazy

    def _steps_ready(self, model: LoadedModel) -> bool:
        """An ensemble is ready when each of its steps' models is servable (a lazy one counts)."""
        runtime = model.runtime
        if not isinstance(runtime, EnsembleRuntime):
            return True
        for step in runtime.steps:
            try:
                self._registry.get(step.model_name, step.version)
            except NotLoadedYet:
                continue
            except InferdError:
                return False
        return True

    # Metadata -----------------------------------------------------------------------------------
    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        model = self._loaded(name, version)
        signature = model.signature
        batch = [-1] if signature.max_batch_size > 0 else []

        def tensors(specs: Any) -> list[dict[str, Any]]:
            return [{"name": s.name, "datatype": s.datatype, "shape": [*batch, *s.dims]} for s in specs]

        metadata: dict[str, Any] = {
            "name": model.name,
            "versions": list(self._repository.entry(name).served),
            "platform": platform_of(model.runtime).triton_platform,
            "inputs": tensors(signature.inputs),
            "outputs": tensors(signature.outputs),
        }
        parameters = runtime_parameters(model.runtime)
        if parameters:  # MLServer's extension of the metadata; gRPC's has no field (see the config)
            metadata["parameters"] = dict(parameters)
        return metadata

    def model_config(self, name: str, version: str | None = None) -> ModelDescription:
        """The configuration; the front-ends render it in Triton's field names (protocol.model_config)."""
        model = self._loaded(name, version)
        # The model's current policy: a policy edit applies without reloading the versions.
        config = self._repository.entry(name).config or model.config
        return describe(model, config.version_policy)

    def _loaded(self, name: str, version: str | None) -> LoadedModel:
        """The handle for a metadata call; a lazy model starts loading and the caller retries."""
        try:
            return self._repository.get(name, version)
        except NotLoadedYet:
            self._repository.request_load(name)
            raise Unavailable(f"model '{name}' is loading on demand; retry shortly") from None

    # Statistics ---------------------------------------------------------------------------------
    def model_statistics(self, name: str | None = None, version: str | None = None) -> list[dict[str, Any]]:
        if name:
            entry = self._repository.entry(name)
            models = [self._repository.get(name, version)] if version else list(entry.served.values())
        else:
            models = [m for e in self._repository.entries() for m in e.served.values()]
        return [
            {"name": m.name, "version": m.version, **m.stats.as_dict(), **generation_of(m.runtime)}
            for m in models
        ]

    async def statistics(self, name: str | None = None, version: str | None = None) -> list[dict[str, Any]]:
        """Statistics as the front-ends report them (with --workers: summed over the workers)."""
        return self.model_statistics(name, version)

    # Repository (model lifecycle) -------------------------------------------------------------
    async def repository_index(self, ready_only: bool = False) -> list[dict[str, Any]]:
        index = await self._repository.index()
        return [row for row in index if row["state"] == "READY"] if ready_only else index

    async def load_model(self, name: str, config_override: str | None = None) -> None:
        self._require_explicit("load")
        await self._repository.load(name, config_override)

    async def unload_model(self, name: str) -> None:
        self._require_explicit("unload")
        await self._repository.unload(name)

    def _require_explicit(self, action: str) -> None:
        if self._model_control != "explicit":
            raise InvalidRequest(
                f"explicit model {action} is not allowed in model control mode '{self._model_control}' "
                "(start the server with --model-control explicit)"
            )

    def model_lifecycle(self, name: str) -> dict[str, Any]:
        # The server's model control mode too: `inferd optimize --rollout` reaches a polling server
        # through config.yaml rather than the rollout API (docs/optimize.md).
        return {**self._repository.lifecycle(name), "model_control": self._model_control}

    async def start_rollout(self, name: str, document: dict[str, Any]) -> dict[str, Any]:
        return await self._repository.start_rollout(name, document)

    def rollout_status(self, name: str) -> dict[str, Any] | None:
        return self._repository.rollout_status(name)

    async def promote(self, name: str) -> str:
        return await self._repository.promote(name)

    async def rollback(self, name: str) -> str:
        return await self._repository.rollback(name)

    def drift_sample(self, name: str) -> dict[str, list[list[float]]]:
        """The drift monitor's live rows of a model's inputs (``inferd optimize --from-traffic``)."""
        sample = self._drift.sample(name) if self._drift is not None else None
        if sample is None:
            raise NotFound(f"model '{name}' has no drift monitor (no drift_profile.json), so no live sample")
        return sample
