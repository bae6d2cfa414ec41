"""The seam between the scheduler and whatever executes a model."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from inferd.generative.contract import GenerativeRuntime
from inferd.model_config import TensorOverride
from inferd.runtimes.request_parameters import ModelParameters
from inferd.types import TensorSpec


@dataclass(frozen=True, slots=True)
class Signature:
    """What a loaded model accepts and returns. ``max_batch_size`` 0 means no batch dimension."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    # Built once here, read per request: lookups by name, not scans (docs/performance.md).
    input_specs: dict[str, TensorSpec] = field(init=False, repr=False, compare=False)
    output_specs: dict[str, TensorSpec] = field(init=False, repr=False, compare=False)
    output_names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # setdefault: the first spec of a name wins, as the scan it replaces found it.
        inputs: dict[str, TensorSpec] = {}
        for spec in self.inputs:
            inputs.setdefault(spec.name, spec)
        outputs: dict[str, TensorSpec] = {}
        for spec in self.outputs:
            outputs.setdefault(spec.name, spec)
        object.__setattr__(self, "input_specs", inputs)
        object.__setattr__(self, "output_specs", outputs)
        object.__setattr__(self, "output_names", tuple(spec.name for spec in self.outputs))

    def input(self, name: str) -> TensorSpec | None:
        return self.input_specs.get(name)

    def output(self, name: str) -> TensorSpec | None:
        return self.output_specs.get(name)


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """What every runtime takes from config.yaml, whatever its platform; its own options come apart."""

    instances: int = 1
    # None: the runtime decides (from the graph, or the Model class).
    max_batch_size: int | None = None
    inputs: tuple[TensorOverride, ...] = ()
    outputs: tuple[TensorOverride, ...] = ()
    # "process": each instance in a worker process (platforms with process_instances only).
    instance_kind: str = "thread"


class Runtime(Protocol):
    """A loaded model with ``instances`` independent executors that may run concurrently."""

    @property
    def signature(self) -> Signature: ...

    @property
    def instances(self) -> int: ...

    def run(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch on executor ``instance``; called from a worker thread, never the event loop."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Streaming(Protocol):
    """A runtime whose models may answer one request with several responses (``predict_stream``)."""

    def stream(
        self, instance: int, inputs: dict[str, np.ndarray], parameters: ModelParameters | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """One request's responses, each checked against the signature; from a worker thread.
        ``parameters``: the request's own (``TakesParameters.stream_takes_parameters``)."""
        ...


@runtime_checkable
class TakesParameters(Protocol):
    """A runtime whose model reads requests' parameters (``predict(inputs, parameters)``): requests
    with different parameters never share an execution (inferd/runtimes/request_parameters.py)."""

    @property
    def takes_parameters(self) -> bool:
        """Whether ``predict`` takes them (else ``run_parameters`` is never called)."""
        ...

    @property
    def stream_takes_parameters(self) -> bool:
        """Whether ``predict_stream`` (or the default one, through ``predict``) takes them."""
        ...

    def run_parameters(
        self, instance: int, inputs: dict[str, np.ndarray], parameters: ModelParameters
    ) -> dict[str, np.ndarray]:
        """``run`` with the parameters every request of the batch sent (they are equal)."""
        ...


@runtime_checkable
class Interruptible(Protocol):
    """A runtime that can stop a running execution (worker processes: kill and restart the worker)."""

    def interrupt(self, instance: int) -> None:
        """Called on the event loop when ``instance``'s execution ran past its timeout; must not block."""
        ...


# How a model answers a streamed request: a generative model's tokens, or a Python model's own
# predict_stream (Triton's "decoupled" models); None: one response per request.
StreamKind = Literal["generative", "decoupled"]


def stream_kind(runtime: object) -> StreamKind | None:
    if isinstance(runtime, GenerativeRuntime):
        return "generative"
    # Python runtimes say whether the model has its own predict_stream; one without answers once,
    # through its batcher, like any other model.
    if isinstance(runtime, Streaming) and getattr(runtime, "decoupled", False):
        return "decoupled"
    return None
