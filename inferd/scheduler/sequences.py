"""Sequence batching: what a stateful model needs fed besides a request's own inputs.

A ``SequencePlan`` is built once per loaded version from its ``sequence_batching`` config and the
runtime's signature: which inputs carry control signals (START, END, READY, CORRID), which input/output
pairs are implicit state, and the signature clients see (without those). ``step_flags`` reads a
request's ``sequence_id``/``sequence_start``/``sequence_end`` parameters as tritonclient sends them.
``feed`` builds one execution's inputs; ``Sequence`` is one live sequence. The scheduling itself is
in inferd/scheduler/sequence_batcher.py.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Hashable, Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inferd.datatypes import numpy_dtype
from inferd.errors import InvalidRequest, ModelLoadError
from inferd.runtimes.base import Signature
from inferd.scheduler.tracehook import RequestTrace
from inferd.sequence_config import SequenceBatching

Outputs = dict[str, np.ndarray]
SequenceId = int | str
# String sequence ids longer than this are refused: every live one is kept in memory.
MAX_STRING_ID = 256
_MAX_UINT64 = 2**64 - 1


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


@dataclass(frozen=True, slots=True)
class StepFlags:
    sequence_id: SequenceId
    start: bool
    end: bool

    @property
    def shown(self) -> str:
        """The id as error messages name it (a string one quoted)."""
        return repr(self.sequence_id) if isinstance(self.sequence_id, str) else str(self.sequence_id)


def step_flags(model: str, parameters: Mapping[str, Any]) -> StepFlags:
    """A request's sequence parameters, as tritonclient sends them over REST and gRPC."""
    sequence_id = parameters.get("sequence_id", 0)
    if isinstance(sequence_id, bool) or not isinstance(sequence_id, int | str):
        raise InvalidRequest(
            f"model '{model}': parameter 'sequence_id' must be an unsigned integer or a string, "
            f"got {type(sequence_id).__name__}"
        )
    if sequence_id in (0, ""):
        raise InvalidRequest(
            f"model '{model}' is a sequence model: each request needs a non-zero 'sequence_id' "
            "parameter (with sequence_start on its first request and sequence_end on its last)"
        )
    if isinstance(sequence_id, int) and not 0 < sequence_id <= _MAX_UINT64:
        raise InvalidRequest(f"model '{model}': sequence_id {sequence_id} is not an unsigned 64-bit integer")
    if isinstance(sequence_id, str) and len(sequence_id) > MAX_STRING_ID:
        raise InvalidRequest(
            f"model '{model}': a string sequence_id may have at most {MAX_STRING_ID} characters"
        )
    flags = []
    for name in ("sequence_start", "sequence_end"):
        value = parameters.get(name, False)
        if not isinstance(value, bool):
            raise InvalidRequest(f"model '{model}': parameter '{name}' must be a boolean, got {value!r}")
        flags.append(value)
    return StepFlags(sequence_id, flags[0], flags[1])


def check_corrid(model: str, plan: SequencePlan, flags: StepFlags) -> None:
    """A sequence id the model's CORRID input can carry (its integer type, or any id as a string)."""
    for control in plan.controls:
        if control.kind != "CONTROL_SEQUENCE_CORRID" or control.dtype.kind == "O":
            continue
        sequence_id = flags.sequence_id
        if isinstance(sequence_id, str):
            raise InvalidRequest(
                f"model '{model}' takes integer sequence ids (its CORRID input is {control.dtype}); "
                f"got string sequence {flags.shown}"
            )
        if sequence_id > np.iinfo(control.dtype).max:
            raise InvalidRequest(
                f"model '{model}': sequence {flags.shown} does not fit its CORRID input ({control.dtype})"
            )


@dataclass(slots=True, eq=False)
class Step:
    """One request of a sequence, waiting for or in an execution."""

    inputs: Outputs
    group: Hashable
    start: bool
    end: bool
    future: asyncio.Future[Outputs]
    enqueued_ns: int
    outputs: frozenset[str] | None
    trace: RequestTrace | None = None


@dataclass(slots=True, eq=False)
class Sequence:
    id: SequenceId
    state: dict[str, np.ndarray]
    # Slot index (direct: instance * rows_per_instance + row); None while in the backlog.
    slot: int | None = None
    steps: deque[Step] = field(default_factory=deque)
    running: bool = False
    # sequence_end was received: no further step is accepted.
    ended: bool = False
    idle_timer: asyncio.TimerHandle | None = None

    @property
    def ready(self) -> bool:
        return bool(self.steps) and not self.running and self.slot is not None


@dataclass(frozen=True, slots=True)
class Row:
    """One batch row of an execution: the sequence and the step it runs."""

    index: int
    sequence: Sequence
    step: Step
    state: dict[str, np.ndarray]


def feed(plan: SequencePlan, rows: Seq[Row], total: int) -> Outputs:
    """Worker thread: an execution's inputs. ``total`` rows; those not in ``rows`` (a direct slot
    without a step) are padding with READY false, zero inputs and zero state."""
    if not plan.batched:
        (row,) = rows
        single: Outputs = dict(row.step.inputs)
        for control in plan.controls:
            single[control.name] = np.array([_control_value(control, row)], control.dtype)
        for state in plan.states:
            single[state.input_name] = row.state[state.input_name]
        return single
    dense = len(rows) == total
    inputs: Outputs = {}
    for spec in plan.served.inputs:
        parts = [row.step.inputs[spec.name] for row in rows]
        if dense:
            inputs[spec.name] = np.concatenate(parts) if len(parts) > 1 else parts[0]
        else:
            first = parts[0]
            merged = np.zeros((total, *first.shape[1:]), first.dtype)
            if first.dtype.kind == "O":
                merged.fill(b"")
            for row, part in zip(rows, parts, strict=True):
                merged[row.index] = part[0]
            inputs[spec.name] = merged
    for control in plan.controls:
        values = np.full((total, 1), control.false, control.dtype)
        for row in rows:
            values[row.index, 0] = _control_value(control, row)
        inputs[control.name] = values
    for state in plan.states:
        stacked = np.zeros((total, *state.initial.shape), state.dtype)
        for row in rows:
            stacked[row.index] = row.state[state.input_name]
        inputs[state.input_name] = stacked
    return inputs


def _control_value(control: ControlFeed, row: Row) -> object:
    kind = control.kind
    if kind == "CONTROL_SEQUENCE_CORRID":
        sequence_id = row.sequence.id
        if control.dtype.kind == "O":
            return str(sequence_id).encode()
        return sequence_id  # an integer that fits: checked when the sequence started (check_corrid)
    if kind == "CONTROL_SEQUENCE_START":
        on = row.step.start
    elif kind == "CONTROL_SEQUENCE_END":
        on = row.step.end
    else:
        on = True  # READY: a row with a step
    return control.true if on else control.false
