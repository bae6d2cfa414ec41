"""Sampling parameters from a protocol's JSON (generate extension ``parameters``, OpenAI bodies, gRPC
request parameters), checked against the generator's limits before any token is generated.

Every protocol refuses what it does not know rather than ignore it: a misspelt ``temprature`` silently
sampling at 1.0 is the bug users then spend a day on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from inferd.errors import InvalidRequest
from inferd.generative.contract import GeneratorLimits, SamplingParams

SAMPLING_KEYS = frozenset({"max_tokens", "temperature", "top_p", "top_k", "seed", "stop"})
# Above this a temperature only flattens the distribution into noise; OpenAI allows up to 2.
MAX_TEMPERATURE = 2.0
MAX_STOP_STRINGS = 16
MAX_STOP_LENGTH = 256


def sampling_params(
    values: Mapping[str, Any], limits: GeneratorLimits, ignored: frozenset[str] = frozenset()
) -> SamplingParams:
    """``values`` as SamplingParams; unknown keys (other than ``ignored``) and bad values are
    InvalidRequest naming the key."""
    unknown = sorted(set(values) - SAMPLING_KEYS - ignored)
    if unknown:
        known = ", ".join(sorted(SAMPLING_KEYS))
        raise InvalidRequest(f"unknown sampling parameter(s): {', '.join(unknown)} (known: {known})")
    max_tokens = _integer(values, "max_tokens", 1, limits.max_tokens, min(128, limits.max_tokens))
    temperature = _number(values, "temperature", 0.0, MAX_TEMPERATURE, 1.0)
    top_p = _number(values, "top_p", 0.0, 1.0, 1.0)
    if top_p == 0.0:
        raise InvalidRequest("'top_p' must be greater than 0 and at most 1")
    top_k = _integer(values, "top_k", 0, 2**31 - 1, 0)
    seed = values.get("seed")
    if seed is not None:
        seed = _integer(values, "seed", -(2**63), 2**64 - 1, 0)
    return SamplingParams(max_tokens, temperature, top_p, top_k, seed, _stop(values.get("stop")))


def _integer(values: Mapping[str, Any], key: str, low: int, high: int, default: int) -> int:
    value = values.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"'{key}' must be an integer")
    if not low <= value <= high:
        raise InvalidRequest(f"'{key}' must be between {low} and {high}, got {value}")
    return value


def _number(values: Mapping[str, Any], key: str, low: float, high: float, default: float) -> float:
    value = values.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequest(f"'{key}' must be a number")
    if not low <= value <= high:
        raise InvalidRequest(f"'{key}' must be between {low:g} and {high:g}, got {value:g}")
    return float(value)


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise InvalidRequest("'stop' must be a non-empty string or a list of them")
    if len(stops) > MAX_STOP_STRINGS or any(len(s) > MAX_STOP_LENGTH for s in stops):
        raise InvalidRequest(
            f"'stop' takes at most {MAX_STOP_STRINGS} strings of at most {MAX_STOP_LENGTH} characters"
        )
    return tuple(stops)
