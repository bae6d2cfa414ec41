"""Health, metadata, configuration, statistics and inference, independent of any transport."""

from __future__ import annotations

import time
from typing import Any

from inferd import __version__
from inferd.dataplane.canary import CanaryRouter
from inferd.dataplane.validation import validate
from inferd.datatypes import TRITON_CONFIG_TYPE
from inferd.errors import InferdError, InvalidRequest, NotFound, NotLoadedYet, Unavailable
from inferd.repository.manager import LoadedModel, ModelRepository
from inferd.types import InferRequest, InferResponse, Tensor

SERVER_NAME = "inferd"
# Only what is really served: perf_analyzer reads this list to decide what it may ask for.
EXTENSIONS = ("model_configuration", "statistics", "binary_tensor_data", "model_repository")


class DataPlane:
    def __init__(self, repository: ModelRepository, model_control: str = "none") -> None:
        self._repository = repository
        self._draining = False
        self._model_control = model_control
        self._canary = CanaryRouter(repository)

    # Health -------------------------------------------------------------------------------------
    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return not self._draining and self._repository.all_ready()

    def start_draining(self) -> None:
        self._draining = True

    async def close(self) -> None:
        """Wait for background work started by requests (shadow runs of a canary candidate)."""
        await self._canary.close()

    def model_ready(self, name: str, version: str | None = None) -> bool:
        entry = self._repository.entry(name)
        if version:
            if entry.lazy:
                return True  # servable: it loads on its first request
            if version not in entry.served:
                raise NotFound(f"model '{name}' has no version '{version}' loaded")
            return True
        return entry.ready or entry.lazy

    # Metadata -----------------------------------------------------------------------------------
    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        model = self._loaded(name, version)
        signature = model.signature
        batch = [-1] if signature.max_batch_size > 0 else []

        def tensors(specs: Any) -> list[dict[str, Any]]:
            return [{"name": s.name, "datatype": s.datatype, "shape": [*batch, *s.dims]} for s in specs]

        return {
            "name": model.name,
            "versions": list(self._repository.entry(name).served),
            "platform": model.config.platform,
            "inputs": tensors(signature.inputs),
            "outputs": tensors(signature.outputs),
        }

    def model_config(self, name: str, version: str | None = None) -> dict[str, Any]:
        """The configuration in Triton's field names, as perf_analyzer and tritonclient expect."""
        model = self._loaded(name, version)
        signature = model.signature

        def tensors(specs: Any) -> list[dict[str, Any]]:
            return [
                {"name": s.name, "data_type": TRITON_CONFIG_TYPE[s.datatype], "dims": list(s.dims)}
                for s in specs
            ]

        config: dict[str, Any] = {
            "name": model.name,
            "platform": model.config.platform,
            "backend": "onnxruntime",
            "max_batch_size": signature.max_batch_size,
            "input": tensors(signature.inputs),
            "output": tensors(signature.outputs),
            "instance_group": [
                {"name": f"{model.name}_0", "kind": "KIND_CPU", "count": model.runtime.instances}
            ],
            "version_policy": self._version_policy(name, model),
        }
        policy = model.policy
        if policy.dynamic:
            config["dynamic_batching"] = {
                "preferred_batch_size": list(policy.preferred_batch_sizes),
                "max_queue_delay_microseconds": policy.max_queue_delay_ns // 1000,
            }
        return config

    def _version_policy(self, name: str, model: LoadedModel) -> dict[str, object]:
        # The model's current policy: a policy edit applies without reloading the versions.
        config = self._repository.entry(name).config or model.config
        return config.version_policy.as_triton()

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
        return [{"name": m.name, "version": m.version, **m.stats.as_dict()} for m in models]

    # Repository (model lifecycle) -------------------------------------------------------------
    def repository_index(self, ready_only: bool = False) -> list[dict[str, Any]]:
        index = self._repository.index()
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
        return self._repository.lifecycle(name)

    async def start_rollout(self, name: str, document: dict[str, Any]) -> dict[str, Any]:
        return await self._repository.start_rollout(name, document)

    def rollout_status(self, name: str) -> dict[str, Any] | None:
        return self._repository.rollout_status(name)

    async def promote(self, name: str) -> str:
        return await self._repository.promote(name)

    async def rollback(self, name: str) -> str:
        return await self._repository.rollback(name)

    # Inference ----------------------------------------------------------------------------------
    def check_servable(self, name: str, version: str | None) -> None:
        """Raise NotFound/Unavailable before a front-end spends time decoding a request body."""
        # try/except, not contextlib.suppress: this runs per request and suppress allocates.
        try:  # noqa: SIM105
            self._repository.get(name, version)
        except NotLoadedYet:
            pass  # infer loads it

    async def infer(self, request: InferRequest) -> InferResponse:
        start = time.perf_counter_ns()
        try:
            model = self._repository.get(request.model, request.version)
        except NotLoadedYet:
            await self._repository.load_on_demand(request.model)
            model = self._repository.get(request.model, request.version)
        if model.rollout is not None and not request.version:
            return await self._canary.infer(request, model, model.rollout)
        try:
            checked = validate(request, model.signature)
            outputs = await model.batcher.infer(checked.arrays, checked.rows, checked.group)
        except InferdError:
            model.stats.fail.add(time.perf_counter_ns() - start)
            raise
        model.stats.success.add(time.perf_counter_ns() - start)
        model.stats.last_inference_ms = time.time_ns() // 1_000_000
        datatypes = model.output_datatypes
        return InferResponse(
            model=model.name,
            version=model.version,
            outputs=[Tensor(name, datatypes[name], outputs[name]) for name in checked.outputs],
            id=request.id,
        )
