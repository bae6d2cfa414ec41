"""A request's place in its model's queue: priority level and deadline, from its parameters.

Follows Triton's schedule_policy extension: ``priority`` 1 is the highest, 0 (or absent) means the
model's default; ``timeout`` is in microseconds, 0 (or absent) means the model's or the server's default.
"""

from __future__ import annotations

import time
from typing import Any

from inferd.errors import InvalidRequest
from inferd.model_config import ModelConfig

# Longer timeouts are treated as this (a day): event-loop timers overflow on absurd delays.
MAX_TIMEOUT_US = 86_400 * 1_000_000


def queue_placement(
    parameters: dict[str, Any], config: ModelConfig, server_timeout_us: int
) -> tuple[int, int]:
    """(priority level, deadline as perf_counter_ns or 0) for one request."""
    levels = config.priority_levels
    priority = _non_negative_int(parameters.get("priority", 0), "priority")
    if levels == 0:
        priority = 0  # Triton ignores priorities on a model without levels
    elif priority == 0:
        priority = config.default_priority_level or levels
    elif priority > levels:
        raise InvalidRequest(f"priority {priority} is outside the model's levels 1..{levels}")
    timeout_us = _non_negative_int(parameters.get("timeout", 0), "timeout")
    timeout_us = timeout_us or config.default_timeout_us or server_timeout_us
    timeout_us = min(timeout_us, MAX_TIMEOUT_US)
    deadline_ns = time.perf_counter_ns() + timeout_us * 1000 if timeout_us else 0
    return priority, deadline_ns


def _non_negative_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequest(f"parameter '{name}' must be a non-negative integer, got {value!r}")
    return value
