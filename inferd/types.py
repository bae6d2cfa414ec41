"""Core values passed between the layers: transport-free, holding numpy arrays."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

Parameters = dict[str, Any]


@dataclass(slots=True)  # not frozen: built per input and output of every request (3x cheaper)
class Tensor:
    """A named tensor. ``data`` has the tensor's shape; BYTES data is an object array of ``bytes``."""

    name: str
    datatype: str
    data: np.ndarray
    parameters: Parameters = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)


@dataclass(frozen=True, slots=True)
class SharedMemoryRef:
    """Where a tensor lies in a registered system shared memory region (inferd/sharedmem)."""

    region: str
    offset: int
    byte_size: int


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    name: str
    # None: the front-end's default encoding; True/False: binary or JSON (REST binary extension).
    binary: bool | None = None
    # Written into this region instead of the response body (system shared memory extension).
    shm: SharedMemoryRef | None = None
    # > 0: return the top-K classes as BYTES "score:index[:label]" (classification extension).
    classification: int = 0


@dataclass(slots=True)
class InferRequest:
    model: str
    version: str | None
    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None = None
    id: str | None = None
    parameters: Parameters = field(default_factory=dict)
    # What the model's Admission returned when the codec checked these inputs as declared: opaque
    # here; the data plane's validation then need not check them again (see dataplane/validation.py).
    admitted: object = None


@dataclass(slots=True)
class InferResponse:
    model: str
    version: str
    outputs: list[Tensor]
    id: str | None = None
    parameters: Parameters = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output of a model signature. ``dims`` exclude the batch dimension; -1 is any size."""

    name: str
    datatype: str
    dims: tuple[int, ...]


class DeclaredInput(Protocol):
    """What a request says about one input before its data is read (a decoded ``Tensor`` fits too)."""

    @property
    def name(self) -> str: ...

    @property
    def datatype(self) -> str: ...

    @property
    def shape(self) -> tuple[int, ...]: ...


class Admission(Protocol):
    """A served model's checks on what a request declares, run by a codec before it decodes any data,
    so that a request the model would refuse costs its header, never its payload.

    Both methods consume their iterable lazily and stop at the first refusal: more entries than the
    model has must hold an unknown or repeated name, so a codec that builds each entry on demand does
    O(model's inputs) work for any number of entries sent."""

    @property
    def input_count(self) -> int:
        """How many inputs the model has: a request declaring more is refused, so a codec may build
        up to this many entries before the check without giving up its bound."""
        ...

    def check_inputs(self, declared: Iterable[DeclaredInput]) -> object:
        """Refuse unknown, repeated or missing names, wrong datatypes, shapes the model does not accept
        and element counts above its limit; the result goes in ``InferRequest.admitted``."""
        ...

    def check_outputs(self, names: Iterable[str]) -> None:
        """Refuse unknown or repeated requested outputs."""
        ...
