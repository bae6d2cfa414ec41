"""A request's own ``parameters`` handed to its Python model (Triton's ``parameters`` extension).

A ``Model`` whose ``predict`` (or ``predict_stream``) takes a second argument receives the request's
parameters there, without the keys inferd and Triton consume themselves (sequence batching, priority,
timeout, binary data, shared memory, ...). They are checked here before the request is queued: at most
``MAX_PARAMETERS`` of them, names of at most ``MAX_NAME_LENGTH`` characters, values that are booleans,
integers, numbers or strings of at most ``MAX_STRING_LENGTH`` characters (the V2 protocol's kinds),
``MAX_TOTAL_LENGTH`` characters of names and strings in all; anything else is a 400 naming the
parameter.

Requests are batched together only when their parameters are equal (``UserParameters.key``), so one
``predict`` call sees one dict that is every request's own (docs/model-repository.md).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from inferd.errors import InvalidRequest

ParameterValue = bool | int | float | str
ModelParameters = dict[str, ParameterValue]

MAX_PARAMETERS = 64
MAX_NAME_LENGTH = 128
MAX_STRING_LENGTH = 8192
# Names and string values together: what a batcher may keep per distinct group (its inline-execution
# estimates remember up to 256 groups) stays small whatever a client sends.
MAX_TOTAL_LENGTH = 16384

# Keys the server or Triton's clients give a meaning of their own: never the model's.
RESERVED = frozenset(
    {
        "priority",
        "timeout",
        "binary_data_output",
        "binary_data",
        "binary_data_size",
        "classification",
        "routing_key",
        "headers",
        "stream",
    }
)
RESERVED_PREFIXES = ("sequence_", "shared_memory_", "triton_")

# Which kind each value is, in the grouping key: True, 1 and 1.0 are equal in Python, but a model
# that was sent 1.0 must not be handed another client's True.
_KINDS: dict[type, str] = {bool: "b", int: "i", float: "f", str: "s"}


@dataclass(frozen=True, slots=True)
class UserParameters:
    """The model's share of one request's parameters: the dict ``predict`` gets, and a hashable key
    that is equal exactly when two requests' dicts are equal value for value and kind for kind."""

    values: ModelParameters
    key: tuple[tuple[str, str, Hashable], ...]


@dataclass(frozen=True, slots=True)
class ParameterGroup:
    """A batcher group for a request with parameters: its non-batch shapes and its parameters' key.
    A class of its own, so it never equals the plain shapes tuple of a request without parameters."""

    shapes: Hashable
    key: tuple[tuple[str, str, Hashable], ...]


def is_reserved(name: str) -> bool:
    return name in RESERVED or name.startswith(RESERVED_PREFIXES)


def user_parameters(parameters: Mapping[str, Any]) -> UserParameters | None:
    """The user's parameters of a request, checked; None when it has none (only reserved keys)."""
    if len(parameters) > 2 * MAX_PARAMETERS:  # reserved keys included: a bound before any walk
        raise InvalidRequest(
            f"a request may carry at most {MAX_PARAMETERS} parameters for its model; it sent "
            f"{len(parameters)}"
        )
    values: ModelParameters = {}
    key: list[tuple[str, str, Hashable]] = []
    total = 0
    for name, value in parameters.items():
        if is_reserved(name):
            continue
        if len(values) == MAX_PARAMETERS:
            raise InvalidRequest(
                f"a request may carry at most {MAX_PARAMETERS} parameters for its model; it sent more"
            )
        if len(name) > MAX_NAME_LENGTH:
            raise InvalidRequest(
                f"parameter '{name[:32]}...' has a name of {len(name)} characters; at most "
                f"{MAX_NAME_LENGTH} are allowed"
            )
        kind = _KINDS.get(type(value))
        if kind is None:
            raise InvalidRequest(
                f"parameter '{name}' is {_kind_of(value)}; a parameter is a boolean, an integer, a "
                "number or a string"
            )
        if kind == "s" and len(value) > MAX_STRING_LENGTH:
            raise InvalidRequest(
                f"parameter '{name}' is a string of {len(value)} characters; at most {MAX_STRING_LENGTH} "
                "are allowed"
            )
        total += len(name) + (len(value) if kind == "s" else 0)
        if total > MAX_TOTAL_LENGTH:
            raise InvalidRequest(
                f"a request's parameters for its model may hold at most {MAX_TOTAL_LENGTH} characters of "
                f"names and strings in all; parameter '{name}' goes past it"
            )
        values[name] = value
        # float.hex: -0.0 and 0.0 stay apart, and every NaN is one value (NaN != NaN would never group).
        key.append((name, kind, value.hex() if kind == "f" else value))
    if not values:
        return None
    key.sort()
    return UserParameters(values, tuple(key))


def _kind_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"


def model_share(
    runtime: object, parameters: Mapping[str, Any], stream: bool = False
) -> UserParameters | None:
    """The parameters ``runtime``'s model gets from a request (checked), or None when it takes none
    (``stream``: through ``predict_stream``) or the request sent none of its own."""
    if not getattr(runtime, "stream_takes_parameters" if stream else "takes_parameters", False):
        return None
    return user_parameters(parameters)


def accepts_parameters(method: Callable[..., Any]) -> bool:
    """Whether a ``predict``/``predict_stream`` (as defined on the class, with ``self``) names a
    second positional argument, the parameters. ``*args`` does not count: a wrapper taking anything
    may call a function that takes inputs only."""
    try:
        signature = inspect.signature(method)
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 3  # self, inputs, parameters
