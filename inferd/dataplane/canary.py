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

from inferd.dataplane.validation import ValidatedInputs, validate
from inferd.errors import InferdError, NotFound
from inferd.repository.manager import LoadedModel, ModelRepository
from inferd.repository.rollout import Rollout
from inferd.scheduler.tracehook import RequestTrace
from inferd.types import InferRequest, InferResponse

log = logging.getLogger(__name__)

# Shadow copies beyond this many in flight are skipped: a slow candidate must not pile up work.
MAX_SHADOWS_IN_FLIGHT = 64
# The request parameter (REST: also the ``inferd-routing-key`` header) that makes a rollout sticky.
ROUTING_KEY = "routing_key"

Outputs = dict[str, np.ndarray]
# The data plane's path from validated inputs to outputs on one version (input limits, queue placement).
RunOn = Callable[[LoadedModel, InferRequest, ValidatedInputs, "RequestTrace | None"], Awaitable[Outputs]]


class CanaryRouter:
    def __init__(self, repository: ModelRepository, run_on: RunOn) -> None:
        self._repository = repository
        self._run_on = run_on
        # Shadow runs in flight (held so they are not garbage-collected mid-run).
        self._shadows: set[asyncio.Task[None]] = set()

    async def infer(
        self, request: InferRequest, stable: LoadedModel, rollout: Rollout, trace: RequestTrace | None = None
    ) -> InferResponse:
        # The client's contract is the stable version's signature: a request it rejects is the client's fault.
        checked = validate(request, stable.signature)
        candidate = self._candidate(request.model, rollout) if _takes_candidate(request, rollout) else None
        if candidate is not None and not rollout.shadow:
            answered = await self._run_candidate(request, candidate, rollout, trace)
            if answered is not None:
                candidate_checked, outputs = answered
                return candidate.response(request.id, outputs, candidate_checked.outputs)
            # The candidate failed: the client still gets an answer, from the stable version.
        start = time.perf_counter_ns()
        try:
            outputs = await self._run_on(stable, request, checked, trace)
        except InferdError as exc:
            elapsed = time.perf_counter_ns() - start
            stable.stats.record_failure(elapsed, exc.kind.value)
            rollout.record_stable(False, elapsed)
            raise
        elapsed = time.perf_counter_ns() - start
        stable.stats.record_success(elapsed)
        stable.stats.last_inference_ms = time.time_ns() // 1_000_000
        rollout.record_stable(True, elapsed)
        if candidate is not None and rollout.shadow and len(self._shadows) < MAX_SHADOWS_IN_FLIGHT:
            task = asyncio.ensure_future(self._shadow(request, candidate, rollout, outputs))
            self._shadows.add(task)
            task.add_done_callback(self._shadows.discard)
        return stable.response(request.id, outputs, checked.outputs)

    def _candidate(self, name: str, rollout: Rollout) -> LoadedModel | None:
        try:
            return self._repository.get(name, rollout.candidate_version)
        except NotFound:  # rolled back between the split and here
            return None

    async def _run_candidate(
        self,
        request: InferRequest,
        candidate: LoadedModel,
        rollout: Rollout,
        trace: RequestTrace | None = None,
    ) -> tuple[ValidatedInputs, Outputs] | None:
        start = time.perf_counter_ns()
        try:
            checked = validate(request, candidate.signature)
            outputs = await self._run_on(candidate, request, checked, trace)
        except InferdError as exc:
            elapsed = time.perf_counter_ns() - start
            candidate.stats.record_failure(elapsed, exc.kind.value)
            rollout.record_candidate(False, elapsed)
            log.debug("model %s candidate %s failed: %s", request.model, candidate.version, exc.message)
            return None
        elapsed = time.perf_counter_ns() - start
        candidate.stats.record_success(elapsed)
        candidate.stats.last_inference_ms = time.time_ns() // 1_000_000
        rollout.record_candidate(True, elapsed)
        return checked, outputs

    async def _shadow(
        self, request: InferRequest, candidate: LoadedModel, rollout: Rollout, expected: Outputs
    ) -> None:
        answered = await self._run_candidate(request, candidate, rollout)
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
