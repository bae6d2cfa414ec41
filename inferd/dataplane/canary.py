"""Inference on a model with a running rollout: the canary split, fallback to stable, shadow runs.

Only requests without a version on a model whose default handle carries a ``Rollout`` come here; the
plain hot path in ``DataPlane.infer`` pays one attribute check for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import numpy as np

from inferd.dataplane.validation import ValidatedInputs
from inferd.errors import InferdError, NotFound
from inferd.repository.registry import LoadedModel, ModelRegistry
from inferd.repository.rollout import Rollout
from inferd.scheduler.tracehook import RequestTrace
from inferd.types import InferRequest, InferResponse

log = logging.getLogger(__name__)

# Shadow copies beyond this many in flight are skipped: a slow candidate must not pile up work.
MAX_SHADOWS_IN_FLIGHT = 64
# The request parameter (REST: also the ``inferd-routing-key`` header) that makes a rollout sticky.
ROUTING_KEY = "routing_key"

Outputs = dict[str, np.ndarray]
# The data plane's steps for one version: check a request against its signature and input limits;
# run it (response cache or batcher, statistics). Both are the plain path's own, so a rollout keeps
# the cache and the statistics (``RequestChecks.prepare``, ``DataPlane._run``).
Prepare = Callable[[LoadedModel, InferRequest], ValidatedInputs]
Run = Callable[
    [LoadedModel, InferRequest, ValidatedInputs, "RequestTrace | None", "str | None", int], Awaitable[Outputs]
]


class CanaryRouter:
    def __init__(self, registry: ModelRegistry, prepare: Prepare, run: Run) -> None:
        self._registry = registry
        self._prepare = prepare
        self._run = run
        # Shadow runs in flight (held so they are not garbage-collected mid-run).
        self._shadows: set[asyncio.Task[None]] = set()

    async def infer(
        self,
        request: InferRequest,
        stable: LoadedModel,
        checked: ValidatedInputs,
        rollout: Rollout,
        trace: RequestTrace | None = None,
        partition: str | None = None,
    ) -> InferResponse:
        """``checked``: the request against the stable version (a request it rejects is the client's
        fault and never gets here). The caller holds ``stable``."""
        candidate = self._candidate(request.model, rollout) if _takes_candidate(request, rollout) else None
        if candidate is not None and not rollout.shadow:
            try:
                answered = await self._run_candidate(request, candidate, rollout, trace, partition)
            finally:
                candidate.release()
            if answered is not None:
                candidate_checked, outputs = answered
                return candidate.response(request.id, outputs, candidate_checked.outputs)
            # The candidate failed: the client still gets an answer, from the stable version.
        start = time.perf_counter_ns()
        try:
            outputs = await self._run(stable, request, checked, trace, partition, start)
        except InferdError:
            if candidate is not None and rollout.shadow:
                candidate.release()
            rollout.record_stable(False, time.perf_counter_ns() - start)
            raise
        rollout.record_stable(True, time.perf_counter_ns() - start)
        if candidate is not None and rollout.shadow:
            if len(self._shadows) < MAX_SHADOWS_IN_FLIGHT:
                task = asyncio.ensure_future(self._shadow(request, candidate, rollout, outputs, partition))
                self._shadows.add(task)
                task.add_done_callback(self._shadows.discard)
            else:
                candidate.release()
        return stable.response(request.id, outputs, checked.outputs)

    def _candidate(self, name: str, rollout: Rollout) -> LoadedModel | None:
        """The candidate's handle, held (the caller releases it once done with it)."""
        try:
            candidate = self._registry.get(name, rollout.candidate_version)
        except NotFound:  # rolled back between the split and here
            return None
        candidate.hold()
        return candidate

    async def _run_candidate(
        self,
        request: InferRequest,
        candidate: LoadedModel,
        rollout: Rollout,
        trace: RequestTrace | None,
        partition: str | None,
    ) -> tuple[ValidatedInputs, Outputs] | None:
        start = time.perf_counter_ns()
        try:
            try:
                checked = self._prepare(candidate, request)
            except InferdError as exc:
                candidate.stats.record_failure(time.perf_counter_ns() - start, exc.kind.value)
                raise
            outputs = await self._run(candidate, request, checked, trace, partition, start)
        except InferdError as exc:
            rollout.record_candidate(False, time.perf_counter_ns() - start)
            log.debug("model %s candidate %s failed: %s", request.model, candidate.version, exc.message)
            return None
        rollout.record_candidate(True, time.perf_counter_ns() - start)
        return checked, outputs

    async def _shadow(
        self,
        request: InferRequest,
        candidate: LoadedModel,
        rollout: Rollout,
        expected: Outputs,
        partition: str | None,
    ) -> None:
        try:
            answered = await self._run_candidate(request, candidate, rollout, None, partition)
        finally:
            candidate.release()
        if answered is None:
            return
        _, outputs = answered
        tolerance = rollout.config.guard.tolerance
        rollout.record_shadow(all(_agree(expected[name], outputs.get(name), tolerance) for name in expected))

    async def close(self) -> None:
        await asyncio.gather(*list(self._shadows), return_exceptions=True)


def _takes_candidate(request: InferRequest, rollout: Rollout) -> bool:
    if rollout.config.sticky:
        key = request.parameters.get(ROUTING_KEY)
        if isinstance(key, str) and key:
            return rollout.takes_candidate_for(key)
    return rollout.takes_candidate()


def _agree(expected: np.ndarray, actual: np.ndarray | None, tolerance: float) -> bool:
    if actual is None or actual.shape != expected.shape:
        return False
    if expected.dtype.kind in "fc" and actual.dtype.kind in "fc":
        return bool(np.allclose(expected, actual, rtol=0.0, atol=tolerance, equal_nan=True))
    return bool(np.array_equal(expected, actual))
