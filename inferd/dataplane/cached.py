"""The response-cache path of a model that enables it: look the request up, schedule it on a miss,
store the outputs. A cache that fails never fails the request; it is counted and logged."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import numpy as np

from inferd.cache.base import ResponseCache
from inferd.cache.entries import CorruptEntry, decode_outputs, encode_outputs
from inferd.cache.keys import response_key
from inferd.dataplane.validation import ValidatedInputs
from inferd.repository.manager import LoadedModel
from inferd.runtimes.response_parameters import parameters_of
from inferd.scheduler.tracehook import RequestTrace
from inferd.types import InferRequest

log = logging.getLogger(__name__)

# The data plane's path to a version's batcher: (model, request, checked, trace) -> outputs.
Schedule = Callable[
    [LoadedModel, InferRequest, ValidatedInputs, RequestTrace | None], Awaitable[dict[str, np.ndarray]]
]


class CachedInference:
    def __init__(self, cache: ResponseCache, schedule: Schedule) -> None:
        self._cache = cache
        self._schedule = schedule

    async def infer(
        self,
        model: LoadedModel,
        request: InferRequest,
        checked: ValidatedInputs,
        trace: RequestTrace | None,
        partition: str | None,
    ) -> dict[str, np.ndarray]:
        """Triton's accounting: a hit costs the lookup; a miss, the lookup plus the insertion.
        ``partition``: the caller's cache partition (its API key id), None when entries are shared."""
        cache = self._cache
        stats = model.stats
        start = time.perf_counter_ns()
        try:
            key = response_key(
                model.name,
                model.cache_version or model.version,
                {t.name: (t.datatype, checked.arrays[t.name]) for t in request.inputs},
                checked.outputs,
                request.parameters,
                partition,
            )
            value = await cache.get(key)
        except Exception as exc:  # never fail a request because of the cache
            _cache_failed(model, exc)
            return await self._schedule(model, request, checked, trace)
        if value is not None:
            try:
                cached = decode_outputs(value)
            except CorruptEntry as exc:
                log.debug("model %s: ignoring a corrupt cache entry: %s", model.name, exc)
            else:
                stats.cache_hit.add(time.perf_counter_ns() - start)
                return {name: array for name, (_, array) in cached.items()}
        lookup_ns = time.perf_counter_ns() - start
        # Still this version's batcher after the await: the caller's hold keeps it open.
        outputs = await self._schedule(model, request, checked, trace)
        if parameters_of(outputs):  # entries hold tensors only: a response with parameters is not stored
            stats.cache_miss.add(lookup_ns)
            return outputs
        insert_start = time.perf_counter_ns()
        datatypes = model.output_datatypes
        try:
            await cache.put(key, encode_outputs({n: (datatypes[n], outputs[n]) for n in checked.outputs}))
        except Exception as exc:
            _cache_failed(model, exc)
        stats.cache_miss.add(lookup_ns + time.perf_counter_ns() - insert_start)
        return outputs


def _cache_failed(model: LoadedModel, exc: Exception) -> None:
    model.stats.cache_errors += 1
    log.debug("model %s: response cache failed: %s", model.name, exc)
