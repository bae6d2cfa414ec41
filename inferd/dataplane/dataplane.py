"""Health, metadata, configuration, statistics and inference, independent of any transport."""

from __future__ import annotations

import time
from typing import Any

from inferd import __version__
from inferd.dataplane.access_log import log_request
from inferd.dataplane.validation import validate
from inferd.datatypes import TRITON_CONFIG_TYPE
from inferd.drift.monitor import DriftMonitor
from inferd.errors import InferdError, NotFound
from inferd.repository.manager import ModelRepository
from inferd.scheduler.tracehook import RequestTrace
from inferd.types import InferRequest, InferResponse, Tensor

SERVER_NAME = "inferd"
# Only what is really served: perf_analyzer reads this list to decide what it may ask for.
EXTENSIONS = ("model_configuration", "statistics", "binary_tensor_data")


class DataPlane:
    def __init__(
        self, repository: ModelRepository, access_log: bool = False, drift: DriftMonitor | None = None
    ) -> None:
        self._repository = repository
        self._draining = False
        self._access_log = access_log
        self._drift = drift

    # Health -------------------------------------------------------------------------------------
    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return not self._draining and self._repository.all_ready()

    def start_draining(self) -> None:
        self._draining = True

    def model_ready(self, name: str, version: str | None = None) -> bool:
        entry = self._repository.entry(name)
        if version:
            if version not in entry.versions:
                raise NotFound(f"model '{name}' has no version '{version}' loaded")
            return entry.ready
        return entry.ready

    # Metadata -----------------------------------------------------------------------------------
    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        model = self._repository.get(name, version)
        signature = model.signature
        batch = [-1] if signature.max_batch_size > 0 else []

        def tensors(specs: Any) -> list[dict[str, Any]]:
            return [{"name": s.name, "datatype": s.datatype, "shape": [*batch, *s.dims]} for s in specs]

        return {
            "name": model.name,
            "versions": list(self._repository.entry(name).versions),
            "platform": model.config.platform,
            "inputs": tensors(signature.inputs),
            "outputs": tensors(signature.outputs),
        }

    def model_config(self, name: str, version: str | None = None) -> dict[str, Any]:
        """The configuration in Triton's field names, as perf_analyzer and tritonclient expect."""
        model = self._repository.get(name, version)
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
            "version_policy": {"latest": {"num_versions": 1}},
        }
        policy = model.policy
        if policy.dynamic:
            config["dynamic_batching"] = {
                "preferred_batch_size": list(policy.preferred_batch_sizes),
                "max_queue_delay_microseconds": policy.max_queue_delay_ns // 1000,
            }
        return config

    # Statistics ---------------------------------------------------------------------------------
    def model_statistics(self, name: str | None = None, version: str | None = None) -> list[dict[str, Any]]:
        if name:
            entry = self._repository.entry(name)
            models = [self._repository.get(name, version)] if version else list(entry.versions.values())
        else:
            models = [m for e in self._repository.entries() for m in e.versions.values()]
        return [{"name": m.name, "version": m.version, **m.stats.as_dict()} for m in models]

    # Repository ---------------------------------------------------------------------------------
    def repository_index(self) -> list[dict[str, Any]]:
        index = []
        for entry in self._repository.entries():
            if not entry.versions:
                index.append({"name": entry.name, "state": "UNAVAILABLE", "reason": entry.reason})
            for version in entry.versions:
                state = "READY" if entry.ready else "UNAVAILABLE"
                index.append({"name": entry.name, "version": version, "state": state, "reason": entry.reason})
        return index

    # Inference ----------------------------------------------------------------------------------
    def check_servable(self, name: str, version: str | None) -> None:
        """Raise NotFound/Unavailable before a front-end spends time decoding a request body."""
        self._repository.get(name, version)

    def record_rejected(self, name: str, version: str | None, error: InferdError) -> None:
        """Count a request for a servable model that its front-end could not decode as a failure
        (its duration is not measured: it never reached the data plane)."""
        model = self._repository.get(name, version)
        model.stats.record_failure(0, error.kind.value)
        if self._access_log:
            log_request(None, model.name, model.version, error.kind.value, 0)

    async def infer(self, request: InferRequest, trace: RequestTrace | None = None) -> InferResponse:
        start = time.perf_counter_ns()
        model = self._repository.get(request.model, request.version)
        try:
            checked = validate(request, model.signature)
            if self._drift is not None:
                self._drift.offer(model.name, checked.arrays)
            outputs = await model.batcher.infer(checked.arrays, checked.rows, checked.group, trace)
        except InferdError as exc:
            elapsed = time.perf_counter_ns() - start
            model.stats.record_failure(elapsed, exc.kind.value)
            if self._access_log:
                log_request(request.id, model.name, model.version, exc.kind.value, elapsed)
            raise
        elapsed = time.perf_counter_ns() - start
        model.stats.record_success(elapsed)
        if self._access_log:
            log_request(request.id, model.name, model.version, "ok", elapsed)
        model.stats.last_inference_ms = time.time_ns() // 1_000_000
        datatypes = model.output_datatypes
        return InferResponse(
            model=model.name,
            version=model.version,
            outputs=[Tensor(name, datatypes[name], outputs[name]) for name in checked.outputs],
            id=request.id,
        )
