"""A Python model's response ``parameters`` (``inferd.Response``), from its ``predict`` to each response.

``check_outputs`` (inferd/runtimes/python.py) unpacks what ``predict`` returned: a plain outputs
dict passes with one isinstance check; a ``Response`` has its parameters checked here, with the
request parameters' limits (inferd/runtimes/request_parameters.py) and the server's own keys
refused, a 500 saying what was wrong. The checked outputs then travel as ``ResponseOutputs``, the
outputs dict carrying the parameters, so the batcher's split, the process hop and the data plane
need no second channel; ``parameters_of`` reads them back (None for a plain dict).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from inferd.errors import ExecutionError
from inferd.runtimes.request_parameters import (
    MAX_NAME_LENGTH,
    MAX_PARAMETERS,
    MAX_STRING_LENGTH,
    MAX_TOTAL_LENGTH,
    ModelParameters,
    is_reserved,
)


class ResponseOutputs(dict[str, np.ndarray]):
    """Outputs (checked) with the response parameters the model set for them."""

    __slots__ = ("parameters",)

    def __init__(self, outputs: Mapping[str, np.ndarray], parameters: ModelParameters) -> None:
        super().__init__(outputs)
        self.parameters = parameters


def parameters_of(outputs: Mapping[str, np.ndarray]) -> ModelParameters | None:
    """The response parameters ``outputs`` carry; None when the model set none."""
    return outputs.parameters if isinstance(outputs, ResponseOutputs) else None


def with_parameters(
    outputs: dict[str, np.ndarray], parameters: ModelParameters | None
) -> dict[str, np.ndarray]:
    """``outputs`` carrying ``parameters`` (as they are when None or empty)."""
    return ResponseOutputs(outputs, parameters) if parameters else outputs


def checked_parameters(parameters: object, label: str) -> ModelParameters:
    """A model's response parameters as a plain dict; ExecutionError naming what is wrong."""
    where = f"model {label}: predict returned response parameters"
    if not isinstance(parameters, Mapping):
        raise ExecutionError(f"{where} as {type(parameters).__name__}; expected a dict")
    if len(parameters) > MAX_PARAMETERS:
        raise ExecutionError(f"{where} with {len(parameters)} entries; at most {MAX_PARAMETERS} are allowed")
    values: ModelParameters = {}
    total = 0
    for name, value in parameters.items():
        if type(name) is not str or not name or len(name) > MAX_NAME_LENGTH:  # exact: marshal carries it
            raise ExecutionError(
                f"{where} with the key {_shown(name)}; a key is a string of 1 to {MAX_NAME_LENGTH} characters"
            )
        if is_reserved(name):
            raise ExecutionError(f"{where} with the key '{name}', which is the server's own")
        if type(value) not in (bool, int, float, str):
            raise ExecutionError(
                f"{where}: '{name}' has type {type(value).__name__}; a value is a bool, int, float or str"
            )
        if isinstance(value, str) and len(value) > MAX_STRING_LENGTH:
            raise ExecutionError(
                f"{where}: '{name}' is a string of {len(value)} characters; at most {MAX_STRING_LENGTH}"
            )
        total += len(name) + (len(value) if isinstance(value, str) else 0)
        if total > MAX_TOTAL_LENGTH:
            raise ExecutionError(
                f"{where} past {MAX_TOTAL_LENGTH} characters of keys and strings in all (at '{name}')"
            )
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            # Not printed: str() of a huge int is itself refused (sys.set_int_max_str_digits).
            raise ExecutionError(f"{where}: '{name}' is an integer outside the 64-bit range")
        if isinstance(value, float) and not math.isfinite(value):
            raise ExecutionError(f"{where}: '{name}' is {value}, which JSON cannot carry")
        values[name] = value
    return values


def _shown(name: Any) -> str:
    text = repr(name)
    return text if len(text) <= 40 else text[:37] + "..."
