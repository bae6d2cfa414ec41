"""The classes of API a key can be allowed, shared by the REST and gRPC front-ends."""

from __future__ import annotations

import enum


class Api(enum.Enum):
    INFERENCE = "inference"  # infer, streaming infer
    METADATA = "metadata"  # server and model metadata, model config
    HEALTH = "health"  # live, ready, model ready
    REPOSITORY = "repository"  # repository index, model load/unload
    METRICS = "metrics"  # statistics (and /metrics where served)


# What a key may call when its entry names no `apis`.
DEFAULT_APIS = frozenset({Api.INFERENCE, Api.METADATA, Api.HEALTH})
