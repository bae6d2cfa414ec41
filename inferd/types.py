"""Core values passed between the layers: transport-free, holding numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Parameters = dict[str, Any]


@dataclass(frozen=True, slots=True)
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
class RequestedOutput:
    name: str
    # None: the front-end's default encoding; True/False: binary or JSON (REST binary extension).
    binary: bool | None = None


@dataclass(slots=True)
class InferRequest:
    model: str
    version: str | None
    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None = None
    id: str | None = None
    parameters: Parameters = field(default_factory=dict)


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
