"""``platform: ensemble``: a pipeline of other models, checked here at load and run by the data plane.

An ensemble executes nothing itself. Each step is an inference request to its step model through the
data plane (``dataplane/ensemble.py``), so it is validated, batched with that model's other requests
and counted in its statistics, and it resolves the step model's version per request. What this module
does is what can be decided from config.yaml alone: the ensemble's declared signature, and a step graph
in which every tensor a step reads exists, each tensor has one producer and no step waits on itself.
Whether the step models exist is checked by the repository (it knows the other models).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inferd.errors import ExecutionError, ModelLoadError
from inferd.model_config import CONFIG_FILE, EnsembleScheduling, TensorOverride
from inferd.runtimes.base import RuntimeSettings, Signature
from inferd.types import TensorSpec


@dataclass(frozen=True, slots=True)
class Step:
    index: int
    model_name: str
    # None: the step model's default version, resolved per request.
    version: str | None
    # (step input, ensemble tensor) and (step output, ensemble tensor) pairs.
    input_map: tuple[tuple[str, str], ...]
    output_map: tuple[tuple[str, str], ...]
    # The steps producing this step's inputs: it starts once they have all finished.
    after: frozenset[int]

    @property
    def label(self) -> str:
        return f"step {self.index} (model '{self.model_name}')"


class EnsembleRuntime:
    platform = "ensemble"
    device_kind = "KIND_CPU"

    def __init__(self, path: Path, settings: RuntimeSettings, options: EnsembleScheduling | None) -> None:
        # ``path`` is the version directory: an ensemble has no model file (its 1/ may be empty).
        model_dir = path.parent
        where = model_dir / CONFIG_FILE
        self.name = model_dir.name
        if options is None:
            raise ModelLoadError(f"{where}: platform ensemble needs 'ensemble_scheduling' with its steps")
        inputs = _declared(settings.inputs, "input", where)
        outputs = _declared(settings.outputs, "output", where)
        self._signature = Signature(inputs, outputs, settings.max_batch_size or 0)
        self.steps = plan(self.name, options, inputs, outputs, where)
        self.scheduling = options

    @property
    def signature(self) -> Signature:
        return self._signature

    @property
    def instances(self) -> int:
        return 1

    @property
    def step_models(self) -> list[str]:
        return sorted({step.model_name for step in self.steps})

    def run(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Requests never reach here (the data plane runs the steps); a warm-up sample would.
        raise ExecutionError(
            f"ensemble '{self.name}' runs its steps through the server: warm up its step models instead"
        )

    def close(self) -> None:
        pass


def _declared(tensors: tuple[TensorOverride, ...], kind: str, where: Path) -> tuple[TensorSpec, ...]:
    """An ensemble's inputs/outputs come from config.yaml only, so each needs its datatype and dims."""
    if not tensors:
        raise ModelLoadError(
            f"{where}: an ensemble declares its {kind}s ('{kind}s:' with name, datatype, dims)"
        )
    specs = []
    for tensor in tensors:
        if tensor.datatype is None or tensor.dims is None:
            raise ModelLoadError(f"{where}: ensemble {kind} '{tensor.name}' needs a datatype and dims")
        specs.append(TensorSpec(tensor.name, tensor.datatype, tensor.dims))
    names = [spec.name for spec in specs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ModelLoadError(f"{where}: ensemble {kind}s {repeated} are declared more than once")
    return tuple(specs)


def plan(
    name: str,
    options: EnsembleScheduling,
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
    where: Path,
) -> tuple[Step, ...]:
    """The steps with their dependencies; raises ModelLoadError naming what is wrong."""
    ensemble_inputs = {spec.name for spec in inputs}
    producer: dict[str, int] = {}
    for index, step in enumerate(options.step):
        label = f"step {index} (model '{step.model_name}')"
        if step.model_name == name:
            raise ModelLoadError(f"{where}: {label} is the ensemble itself")
        for tensor in step.output_map.values():
            if tensor in ensemble_inputs:
                raise ModelLoadError(f"{where}: {label} writes '{tensor}', which is an ensemble input")
            if tensor in producer:
                raise ModelLoadError(
                    f"{where}: tensor '{tensor}' is written by step {producer[tensor]} and by {label}"
                )
            producer[tensor] = index
    steps = []
    for index, step in enumerate(options.step):
        label = f"step {index} (model '{step.model_name}')"
        unknown = [t for t in step.input_map.values() if t not in producer and t not in ensemble_inputs]
        if unknown:
            raise ModelLoadError(
                f"{where}: {label} reads {', '.join(repr(t) for t in unknown)}: neither an ensemble input "
                "nor written by any step"
            )
        after = frozenset(producer[t] for t in step.input_map.values() if t in producer)
        version = None if step.model_version == -1 else str(step.model_version)
        steps.append(
            Step(
                index,
                step.model_name,
                version,
                tuple(step.input_map.items()),
                tuple(step.output_map.items()),
                after,
            )
        )
    missing = [spec.name for spec in outputs if spec.name not in producer]
    if missing:
        raise ModelLoadError(f"{where}: ensemble outputs {missing} are not written by any step")
    cycle = _cycle(steps)
    if cycle:
        path = " -> ".join(steps[i].label for i in cycle)
        raise ModelLoadError(f"{where}: steps wait on each other in a cycle: {path}")
    return tuple(steps)


def _cycle(steps: list[Step]) -> list[int]:
    """One cycle of the step graph as step indices (first repeated at the end); empty when acyclic."""
    state = dict.fromkeys(range(len(steps)), 0)  # 0 unvisited, 1 on the current path, 2 done

    def visit(index: int, path: list[int]) -> list[int]:
        state[index] = 1
        path.append(index)
        for before in sorted(steps[index].after):
            if state[before] == 1:
                return [*path[path.index(before) :], before]
            if state[before] == 0 and (found := visit(before, path)):
                return found
        path.pop()
        state[index] = 2
        return []

    for index in range(len(steps)):
        if state[index] == 0 and (found := visit(index, [])):
            return found
    return []
