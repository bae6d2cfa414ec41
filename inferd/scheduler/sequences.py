"""Sequence batching: a request's sequence parameters, a live sequence, and one execution's rows.

``step_flags`` reads ``sequence_id``/``sequence_start``/``sequence_end`` as tritonclient sends them
(REST ``parameters``, gRPC request parameters). ``feed`` builds one execution's inputs (the steps'
own, the control signals and each sequence's state) and ``split_row`` takes a row's outputs and
next state back out. The plan is inferd/scheduler/sequence_plan.py; the scheduling,
inferd/scheduler/sequence_batcher.py.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable, Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferd.errors import ExecutionError, InvalidRequest
from inferd.runtimes.response_parameters import parameters_of, with_parameters
from inferd.scheduler.sequence_plan import ControlFeed, SequencePlan
from inferd.scheduler.tracehook import RequestTrace

Outputs = dict[str, np.ndarray]
SequenceId = int | str
# String sequence ids longer than this are refused: every live one is kept in memory.
MAX_STRING_ID = 256
_MAX_UINT64 = 2**64 - 1


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


def split_row(
    plan: SequencePlan, model: str, outputs: Outputs, row: Row, total: int
) -> tuple[Outputs, Outputs]:
    """Worker thread: one row's requested outputs and its sequence's next state (copied: not a
    view that would keep the whole batch's arrays alive)."""
    if plan.batched:
        for name, array in outputs.items():
            if array.ndim == 0 or array.shape[0] != total:
                raise ExecutionError(
                    f"the model returned output '{name}' with shape {list(array.shape)} for a batch of "
                    f"{total} rows; a batching model must return one row per input row"
                )
        picked = {name: array[row.index : row.index + 1] for name, array in outputs.items()}
    else:
        picked = outputs
    state: Outputs = {}
    for feed_ in plan.states:
        value = picked[feed_.output_name]
        value = value[0] if plan.batched else value
        if value.shape != feed_.initial.shape:
            raise ExecutionError(
                f"model '{model}' returned state '{feed_.output_name}' with shape "
                f"{list(value.shape)}, expected {list(feed_.initial.shape)}"
            )
        state[feed_.input_name] = value.astype(feed_.dtype, copy=True)
    wanted = row.step.outputs
    served = [spec.name for spec in plan.served.outputs]
    kept = {name: picked[name] for name in served if wanted is None or name in wanted}
    return with_parameters(kept, parameters_of(outputs)), state  # a Python model's, for every row
