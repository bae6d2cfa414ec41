"""``sequence_batching`` in config.yaml: Triton's ModelSequenceBatching, in Triton's field names.

Datatypes may be written as Triton spells them in a model config (``TYPE_FP32``) or as V2 names
(``FP32``); both are kept as V2 names. What the scheduler does with it: inferd/scheduler/sequences.py.
"""

from __future__ import annotations

import posixpath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from inferd.datatypes import DATATYPES

ControlKind = Literal[
    "CONTROL_SEQUENCE_START", "CONTROL_SEQUENCE_READY", "CONTROL_SEQUENCE_END", "CONTROL_SEQUENCE_CORRID"
]
# Triton's default: a sequence with no request for a second is freed.
DEFAULT_IDLE_US = 1_000_000
# Triton's oldest strategy keeps this many sequences in its slots unless told otherwise.
DEFAULT_CANDIDATES = 1024


def v2_datatype(value: object) -> object:
    """``TYPE_FP32`` -> ``FP32`` (``TYPE_STRING``: BYTES); anything else is checked as given."""
    if isinstance(value, str) and value.startswith("TYPE_"):
        value = value.removeprefix("TYPE_")
        return "BYTES" if value == "STRING" else value
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Typed(_Strict):
    data_type: str | None = None

    _v2 = field_validator("data_type", mode="before")(v2_datatype)

    @field_validator("data_type")
    @classmethod
    def _known(cls, datatype: str | None) -> str | None:
        if datatype is not None and datatype not in DATATYPES:
            raise ValueError(f"unknown data_type '{datatype}', expected one of {sorted(DATATYPES)}")
        return datatype


class Control(_Typed):
    """How one control signal is given to the model: the (false, true) values of START, END and
    READY in the input's type, or the type of the CORRID input (the sequence id)."""

    kind: ControlKind
    int32_false_true: tuple[int, int] | None = None
    fp32_false_true: tuple[float, float] | None = None
    bool_false_true: tuple[bool, bool] | None = None

    @model_validator(mode="after")
    def _one_encoding(self) -> Control:
        given = [
            name
            for name in ("int32_false_true", "fp32_false_true", "bool_false_true")
            if getattr(self, name) is not None
        ]
        if self.kind == "CONTROL_SEQUENCE_CORRID":
            if given or self.data_type is None:
                raise ValueError(
                    "CONTROL_SEQUENCE_CORRID takes data_type only (TYPE_UINT64, TYPE_STRING, ...)"
                )
            if self.data_type not in ("UINT64", "INT64", "UINT32", "INT32", "BYTES"):
                raise ValueError("the CORRID data_type must be an integer type or TYPE_STRING")
        elif len(given) != 1 or self.data_type is not None:
            raise ValueError(
                f"{self.kind} takes exactly one of int32_false_true, fp32_false_true, bool_false_true"
            )
        return self

    @property
    def datatype(self) -> str:
        """The V2 datatype of the input this control feeds."""
        if self.data_type is not None:
            return self.data_type
        if self.int32_false_true is not None:
            return "INT32"
        return "FP32" if self.fp32_false_true is not None else "BOOL"

    def values(self) -> tuple[object, object]:
        """(false, true) in the input's type."""
        pair = self.int32_false_true or self.fp32_false_true or self.bool_false_true
        assert pair is not None
        return pair[0], pair[1]


class ControlInput(_Strict):
    name: str = Field(min_length=1)
    control: tuple[Control, ...] = Field(min_length=1, max_length=1)


class InitialState(_Typed):
    """``zero_data: true``, or ``data_file``: raw little-endian elements in ``<model>/initial_state/``."""

    name: str = ""
    dims: tuple[int, ...] = ()
    zero_data: bool = False
    data_file: str | None = None

    @field_validator("data_file")
    @classmethod
    def _inside(cls, file: str | None) -> str | None:
        if file is not None and (
            not file or posixpath.isabs(file) or "\\" in file or ".." in file.split("/")
        ):
            raise ValueError("must be a path inside the model's initial_state directory, without '..'")
        return file

    @model_validator(mode="after")
    def _one_source(self) -> InitialState:
        if self.zero_data == (self.data_file is not None):
            raise ValueError("give one of zero_data: true or data_file")
        return self


class State(_Typed):
    """An implicit state: ``output_name`` of one step is fed as ``input_name`` of the next."""

    input_name: str = Field(min_length=1)
    output_name: str = Field(min_length=1)
    dims: tuple[int, ...] = Field(min_length=1)
    initial_state: tuple[InitialState, ...] = Field(default=(), max_length=1)
    # Triton's buffer options: accepted so Triton configs load; inferd always copies a fixed shape.
    use_same_buffer_for_input_output: bool = False
    use_growable_memory: Literal[False] = False

    @field_validator("dims")
    @classmethod
    def _fixed(cls, dims: tuple[int, ...]) -> tuple[int, ...]:
        if any(d < 1 for d in dims):
            raise ValueError("state dims must be positive sizes (a state has a fixed shape)")
        return dims

    @model_validator(mode="after")
    def _typed(self) -> State:
        if self.data_type is None:
            raise ValueError("a state needs its data_type")
        return self


class StrategyDirect(_Strict):
    """Each sequence owns one batch row (slot) of one instance until it ends."""

    max_queue_delay_microseconds: int = Field(default=0, ge=0, le=60_000_000)
    minimum_slot_utilization: float = Field(default=0.0, ge=0, le=1)


class StrategyOldest(_Strict):
    """Up to ``max_candidate_sequences`` live sequences; one step of each of the oldest is batched."""

    max_candidate_sequences: int = Field(default=DEFAULT_CANDIDATES, ge=1, le=1_000_000)
    preferred_batch_size: tuple[int, ...] = ()
    max_queue_delay_microseconds: int = Field(default=0, ge=0, le=60_000_000)
    preserve_ordering: bool = False


class SequenceBatching(_Strict):
    max_sequence_idle_microseconds: int = Field(default=DEFAULT_IDLE_US, ge=1, le=86_400_000_000)
    direct: StrategyDirect | None = None
    oldest: StrategyOldest | None = None
    control_input: tuple[ControlInput, ...] = ()
    state: tuple[State, ...] = ()
    # Triton's iterative scheduling (a request re-run until it ends) is not implemented.
    iterative_sequence: Literal[False] = False
    # inferd's own: sequences started while every slot is taken wait for one, at most this many;
    # beyond it a start is refused with 400 (0: refused at once). Triton's backlog is unbounded.
    max_sequence_backlog: int = Field(default=0, ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _one_strategy(self) -> SequenceBatching:
        if self.direct is not None and self.oldest is not None:
            raise ValueError("give one strategy: direct or oldest")
        kinds = [c.control[0].kind for c in self.control_input]
        repeated = sorted({kind for kind in kinds if kinds.count(kind) > 1})
        if repeated:
            raise ValueError(f"control kind(s) {repeated} given more than once")
        names = [c.name for c in self.control_input] + [s.input_name for s in self.state]
        if len(set(names)) != len(names):
            raise ValueError("control inputs and state inputs must have distinct names")
        return self

    @property
    def strategy(self) -> Literal["direct", "oldest"]:
        return "oldest" if self.oldest is not None else "direct"
