"""A stateful model's sequence-batching plan, built once per loaded version from its
``sequence_batching`` config and the runtime's signature: which inputs carry control signals (START,
END, READY, CORRID), which input/output pairs are implicit state, and the signature clients see
(without those). A mismatch with the model fails the load, naming the tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferd.datatypes import numpy_dtype
from inferd.errors import ModelLoadError
from inferd.runtimes.base import Signature
from inferd.sequence_config import SequenceBatching


@dataclass(frozen=True, slots=True)
class ControlFeed:
    name: str
    kind: str  # CONTROL_SEQUENCE_START / READY / END / CORRID
    dtype: np.dtype
    false: object
    true: object


@dataclass(frozen=True, slots=True)
class StateFeed:
    input_name: str
    output_name: str
    dtype: np.dtype
    initial: np.ndarray  # one sequence's initial value, without the batch dimension


@dataclass(frozen=True, slots=True)
class SequencePlan:
    strategy: str  # "direct" or "oldest"
    idle_ns: int
    # Sequences that hold a slot at once; direct: one per batch row of each instance.
    slots: int
    rows_per_instance: int
    backlog: int
    max_queue_delay_ns: int
    preferred_batch_sizes: tuple[int, ...]
    minimum_slot_utilization: float
    controls: tuple[ControlFeed, ...]
    states: tuple[StateFeed, ...]
    # What clients see: the model's signature less the control and state tensors.
    served: Signature

    @property
    def batched(self) -> bool:
        return self.served.max_batch_size > 0


def sequence_plan(
    config: SequenceBatching, signature: Signature, instances: int, model_dir: Path
) -> SequencePlan:
    """Check the config against the model's tensors; raise ModelLoadError naming what disagrees."""
    where = f"{model_dir}: sequence_batching"
    controls = tuple(
        _control(entry.name, entry.control[0], signature, where) for entry in config.control_input
    )
    states = tuple(_state(state, signature, model_dir, where) for state in config.state)
    hidden_inputs = {c.name for c in controls} | {s.input_name for s in states}
    hidden_outputs = {s.output_name for s in states}
    served = Signature(
        inputs=tuple(s for s in signature.inputs if s.name not in hidden_inputs),
        outputs=tuple(s for s in signature.outputs if s.name not in hidden_outputs),
        max_batch_size=signature.max_batch_size,
    )
    if not served.inputs:
        raise ModelLoadError(f"{where}: the model has no input left for requests to carry")
    rows = max(1, signature.max_batch_size)
    oldest = config.oldest
    if oldest is not None:
        return SequencePlan(
            "oldest",
            config.max_sequence_idle_microseconds * 1000,
            oldest.max_candidate_sequences,
            rows,
            config.max_sequence_backlog,
            oldest.max_queue_delay_microseconds * 1000,
            oldest.preferred_batch_size,
            0.0,
            controls,
            states,
            served,
        )
    direct = config.direct
    return SequencePlan(
        "direct",
        config.max_sequence_idle_microseconds * 1000,
        rows * instances,
        rows,
        config.max_sequence_backlog,
        direct.max_queue_delay_microseconds * 1000 if direct else 0,
        (),
        direct.minimum_slot_utilization if direct else 0.0,
        controls,
        states,
        served,
    )


def _control(name: str, control: Any, signature: Signature, where: str) -> ControlFeed:
    spec = signature.input(name)
    if spec is None:
        raise ModelLoadError(f"{where}: control input '{name}' is not an input of the model")
    if spec.datatype != control.datatype:
        raise ModelLoadError(
            f"{where}: control input '{name}' is {spec.datatype} in the model, "
            f"{control.datatype} in the config"
        )
    if spec.dims not in ((1,), (-1,)):
        raise ModelLoadError(f"{where}: control input '{name}' must have shape [1], has {list(spec.dims)}")
    dtype = numpy_dtype(control.datatype)
    if control.kind == "CONTROL_SEQUENCE_CORRID":
        return ControlFeed(name, control.kind, dtype, b"" if dtype.kind == "O" else 0, None)
    false, true = control.values()
    return ControlFeed(name, control.kind, dtype, false, true)


def _state(state: Any, signature: Signature, model_dir: Path, where: str) -> StateFeed:
    for name, spec in (
        (state.input_name, signature.input(state.input_name)),
        (state.output_name, signature.output(state.output_name)),
    ):
        if spec is None:
            raise ModelLoadError(f"{where}: state tensor '{name}' is not a tensor of the model")
        if spec.datatype != state.data_type:
            raise ModelLoadError(
                f"{where}: state tensor '{name}' is {spec.datatype} in the model, "
                f"{state.data_type} in the config"
            )
        fits = len(spec.dims) == len(state.dims) and all(
            d in (-1, s) for d, s in zip(spec.dims, state.dims, strict=True)
        )
        if not fits:
            raise ModelLoadError(
                f"{where}: state tensor '{name}' has dims {list(spec.dims)} in the model, "
                f"{list(state.dims)} in the config"
            )
    if state.data_type == "BYTES":
        raise ModelLoadError(f"{where}: state '{state.input_name}': BYTES states are not supported")
    dtype = numpy_dtype(state.data_type)
    initial = np.zeros(state.dims, dtype)
    if state.initial_state and state.initial_state[0].data_file is not None:
        initial = _initial_from_file(state.initial_state[0].data_file, state.dims, dtype, model_dir, where)
    return StateFeed(state.input_name, state.output_name, dtype, initial)


def _initial_from_file(
    name: str, dims: tuple[int, ...], dtype: np.dtype, model_dir: Path, where: str
) -> np.ndarray:
    """Triton's ``data_file``: raw little-endian elements in ``<model>/initial_state/<name>``."""
    folder = (model_dir / "initial_state").resolve()
    path = (folder / name).resolve()
    if not path.is_relative_to(folder):
        raise ModelLoadError(f"{where}: initial state file '{name}' is outside {folder}")
    expected = math.prod(dims) * dtype.itemsize
    try:
        with path.open("rb") as file:
            data = file.read(expected + 1)
    except OSError as exc:
        raise ModelLoadError(f"{where}: cannot read initial state file '{name}': {exc}") from None
    if len(data) != expected:
        raise ModelLoadError(
            f"{where}: initial state file '{name}' must hold {expected} bytes (dims {list(dims)}), "
            f"holds {'more' if len(data) > expected else len(data)}"
        )
    return np.frombuffer(data, dtype.newbyteorder("<")).astype(dtype).reshape(dims)
