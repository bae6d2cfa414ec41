"""Running an ensemble: each step is an inference request to its step model, through the data plane.

A step is a plain ``InferRequest`` handed to ``DataPlane.infer``, so it resolves the step model's
version per request (a hot swap of a step applies to the next pipeline request, and a request on a
version being replaced finishes on it), is validated against the step's signature, queued on the step
model's batcher (concurrent pipeline requests batch per step) and counted in the step's statistics.
Tensors pass between steps as the numpy arrays the steps returned: nothing is serialized. Steps whose
inputs are all available run concurrently (a DAG, as Triton's ensemble scheduler does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from inferd.dataplane.validation import ValidatedInputs
from inferd.errors import ErrorKind, ExecutionError, InferdError, InvalidRequest
from inferd.repository.manager import LoadedModel
from inferd.runtimes.ensemble import EnsembleRuntime, Step
from inferd.runtimes.request_parameters import is_reserved
from inferd.types import InferRequest, InferResponse, Parameters, RequestedOutput, Tensor

# The data plane's inference path: (request, trace, caller) -> response.
StepInfer = Callable[[InferRequest, None, str | None], Awaitable[InferResponse]]

# Ensembles may use ensembles; a cycle between them (each valid alone) is stopped at this depth.
MAX_DEPTH = 8
_depth: ContextVar[int] = ContextVar("inferd_ensemble_depth", default=0)


class StepFailed(InferdError):
    """A step's error, with the step named; it keeps the kind (so the status) of the step's error."""

    def __init__(self, message: str, kind: ErrorKind) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class _Call:
    """What every step request of one ensemble request shares."""

    request_id: str | None
    caller: str | None
    parameters: Parameters


class EnsembleRunner:
    def __init__(self, infer: StepInfer) -> None:
        self._infer = infer

    async def outputs(
        self,
        model: LoadedModel,
        ensemble: EnsembleRuntime,
        request: InferRequest,
        checked: ValidatedInputs,
        partition: str | None,
    ) -> dict[str, np.ndarray]:
        """An ensemble version's outputs for one request, from its steps. Its own statistics count
        each request as one execution; the steps' batching shows in the step models' statistics."""
        inputs = {
            spec.name: Tensor(spec.name, spec.datatype, checked.arrays[spec.name])
            for spec in ensemble.signature.inputs
        }
        forwarded = {k: v for k, v in request.parameters.items() if not is_reserved(k)}
        results = await self.run(ensemble, inputs, list(checked.outputs), request.id, partition, forwarded)
        datatypes = model.output_datatypes
        for name, tensor in results.items():
            if tensor.datatype != datatypes[name]:
                raise ExecutionError(
                    f"ensemble '{model.name}' output '{name}' is declared {datatypes[name]} but its step "
                    f"produced {tensor.datatype}"
                )
        stats = model.stats
        stats.inference_count += checked.rows
        stats.execution_count += 1
        return {name: tensor.data for name, tensor in results.items()}

    async def run(
        self,
        ensemble: EnsembleRuntime,
        inputs: dict[str, Tensor],
        wanted: list[str],
        request_id: str | None,
        caller: str | None,
        parameters: Parameters | None = None,
    ) -> dict[str, Tensor]:
        """The ``wanted`` ensemble tensors, computed from ``inputs`` by running the steps; each step
        request carries ``parameters`` (the ensemble request's model parameters)."""
        depth = _depth.get()
        if depth >= MAX_DEPTH:
            raise InvalidRequest(
                f"ensemble '{ensemble.name}': ensembles nested more than {MAX_DEPTH} deep (do they use "
                "each other?)"
            )
        token = _depth.set(depth + 1)
        try:
            call = _Call(request_id, caller, parameters or {})
            return await self._run(ensemble, dict(inputs), wanted, call)
        finally:
            _depth.reset(token)

    async def _run(
        self,
        ensemble: EnsembleRuntime,
        values: dict[str, Tensor],
        wanted: list[str],
        call: _Call,
    ) -> dict[str, Tensor]:
        waiting = list(ensemble.steps)
        done: set[int] = set()
        running: dict[asyncio.Task[dict[str, Tensor]], Step] = {}
        try:
            while waiting or running:
                ready = [step for step in waiting if step.after <= done]
                for step in ready:
                    waiting.remove(step)
                if len(ready) == 1 and not running:
                    # The common chain: the next step runs in this task (no task per step).
                    values.update(await self._step(ensemble, ready[0], values, call))
                    done.add(ready[0].index)
                    continue
                for step in ready:
                    task = asyncio.create_task(self._step(ensemble, step, values, call))
                    running[task] = step
                finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for finished_step in finished:
                    step = running.pop(finished_step)
                    values.update(finished_step.result())  # a failed step raises here; the rest is cancelled
                    done.add(step.index)
        finally:
            for task in running:
                task.cancel()
        return {name: values[name] for name in wanted}

    async def _step(
        self,
        ensemble: EnsembleRuntime,
        step: Step,
        values: dict[str, Tensor],
        call: _Call,
    ) -> dict[str, Tensor]:
        request = InferRequest(
            model=step.model_name,
            version=step.version,
            inputs=[
                Tensor(step_input, values[tensor].datatype, values[tensor].data)
                for step_input, tensor in step.input_map
            ],
            outputs=[RequestedOutput(step_output) for step_output, _ in step.output_map],
            id=call.request_id,
            parameters=dict(call.parameters),
        )
        try:
            response = await self._infer(request, None, call.caller)
        except InferdError as exc:
            # A step model that is missing or not loaded leaves the ensemble unavailable, not unknown.
            kind = ErrorKind.UNAVAILABLE if exc.kind is ErrorKind.NOT_FOUND else exc.kind
            raise StepFailed(f"ensemble '{ensemble.name}' {step.label}: {exc.message}", kind) from None
        produced = {tensor.name: tensor for tensor in response.outputs}
        return {
            tensor: Tensor(tensor, produced[step_output].datatype, produced[step_output].data)
            for step_output, tensor in step.output_map
        }
