"""Picking the next token from one sequence's logits: greedy, temperature, top-k, top-p, seeded."""

from __future__ import annotations

import math

import numpy as np

from inferd.errors import InvalidRequest
from inferd.generative.contract import SamplingParams

MAX_STOP_STRINGS = 16
MAX_STOP_LENGTH = 256


def check_params(params: SamplingParams, max_tokens: int) -> None:
    """Raise InvalidRequest naming the first sampling value out of range."""
    if not isinstance(params.max_tokens, int) or not 1 <= params.max_tokens <= max_tokens:
        raise InvalidRequest(f"max_tokens must be between 1 and {max_tokens}, got {params.max_tokens!r}")
    if not _finite(params.temperature) or not 0 <= params.temperature <= 100:
        raise InvalidRequest(f"temperature must be between 0 and 100, got {params.temperature!r}")
    if not _finite(params.top_p) or not 0 < params.top_p <= 1:
        raise InvalidRequest(f"top_p must be in (0, 1], got {params.top_p!r}")
    if not isinstance(params.top_k, int) or params.top_k < 0:
        raise InvalidRequest(f"top_k must be a non-negative integer, got {params.top_k!r}")
    if params.seed is not None and (not isinstance(params.seed, int) or not 0 <= params.seed < 2**64):
        raise InvalidRequest(f"seed must be an integer in [0, 2**64), got {params.seed!r}")
    if len(params.stop) > MAX_STOP_STRINGS:
        raise InvalidRequest(f"at most {MAX_STOP_STRINGS} stop strings, got {len(params.stop)}")
    for stop in params.stop:
        if not isinstance(stop, str) or not 0 < len(stop) <= MAX_STOP_LENGTH:
            raise InvalidRequest(
                f"stop strings must be non-empty strings of at most {MAX_STOP_LENGTH} characters"
            )


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def sample(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> int:
    """One token id from ``logits`` [vocab]; uses ``rng`` only when sampling (not greedy), so a seeded
    sequence draws the same numbers whatever runs beside it."""
    if params.temperature == 0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / params.temperature
    if 0 < params.top_k < scaled.size:
        candidates = np.argpartition(scaled, -params.top_k)[-params.top_k :]
    else:
        candidates = np.arange(scaled.size)
    values = scaled[candidates]
    order = np.argsort(-values, kind="stable")
    candidates, values = candidates[order], values[order]
    probs = np.exp(values - values[0])
    probs /= probs.sum()
    if params.top_p < 1:
        # The smallest prefix whose mass reaches top_p (at least the most likely token).
        keep = int(np.searchsorted(np.cumsum(probs), params.top_p)) + 1
        candidates, probs = candidates[:keep], probs[:keep] / probs[:keep].sum()
    return int(candidates[rng.choice(probs.size, p=probs)])
