"""The inference path, independent of any transport: decode (through the call's codec), check,
version and canary split, response cache, batcher, statistics, encode. Also the server's health and
metadata; what the front-ends ask about models besides inference is ``DataPlane.control``
(dataplane/control.py)."""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import AsyncIterator, Hashable
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar

import numpy as np

from inferd import __version__
from inferd.cache.base import ResponseCache
from inferd.dataplane.access_log import log_request
from inferd.dataplane.admission import queue_placement
from inferd.dataplane.cached import CachedInference
from inferd.dataplane.calls import InferCall, Reply, RequestTracer
from inferd.dataplane.canary import CanaryRouter
from inferd.dataplane.checks import RequestChecks
from inferd.dataplane.classification import classify, wants_classes
from inferd.dataplane.control import ControlPlane
from inferd.dataplane.ensemble import EnsembleRunner
from inferd.dataplane.loop_shedding import LoopShedding
from inferd.dataplane.streaming import Generation, Streams
from inferd.dataplane.trace_settings import TraceSettings
from inferd.dataplane.validation import ValidatedInputs
from inferd.drift.monitor import DriftMonitor
from inferd.errors import ExecutionError, InferdError, NotLoadedYet
from inferd.repository.manager import LoadedModel, ModelRepository
from inferd.runtimes.base import StreamKind
from inferd.runtimes.ensemble import EnsembleRuntime
from inferd.runtimes.request_parameters import ParameterGroup, model_share
from inferd.scheduler.batcher import Batcher
from inferd.scheduler.sequence_batcher import SequenceBatcher
from inferd.scheduler.tracehook import RequestTrace
from inferd.sharedmem import RegionRegistry
from inferd.types import Admission, InferRequest, InferResponse

log = logging.getLogger(__name__)

SERVER_NAME = "inferd"
# THE list of Triton extensions /v2 announces (REST and gRPC server metadata): only what is really
# served, since perf_analyzer and Triton's clients read it to decide what they may ask for. Add a name
# here when its extension lands; docs/triton-compat.md describes each one.
EXTENSIONS = (
    "model_configuration",
    "statistics",
    "binary_tensor_data",
    "model_repository",
    "system_shared_memory",
    "classification",
    "parameters",
    "logging",
    "trace",
    "sequence",
    "generate",
)


class Unchecked(enum.Enum):
    """``DataPlane.serve``'s default: the front-end has not checked that the model is servable."""

    UNCHECKED = enum.auto()


UNCHECKED = Unchecked.UNCHECKED


class DataPlane:
    # Set where this data plane cannot hold shared memory registrations for the whole server: why.
    no_shared_memory: ClassVar[str | None] = None
    # inferd/workers swaps in its control plane (a lifecycle call takes effect on every worker).
    control_class: ClassVar[type[ControlPlane]] = ControlPlane

    def __init__(
        self,
        repository: ModelRepository,
        cache: ResponseCache | None = None,
        default_timeout_us: int = 0,
        max_tensor_elements: int = 2**26,
        max_bytes_length: int = 16 * 1024 * 1024,
        access_log: bool = False,
        drift: DriftMonitor | None = None,
        model_control: str = "none",
        tracing: RequestTracer | None = None,
        cache_shared_across_keys: bool = False,
        regions: RegionRegistry | None = None,
    ) -> None:
        self._repository = repository
        # What every request asks: which handle serves a model now (repository/registry.py).
        self._registry = repository.registry
        # Readiness, metadata, statistics and the model lifecycle: what the front-ends ask besides
        # inference (dataplane/control.py).
        self.control = self.control_class(repository, model_control, drift)
        self._checks = RequestChecks(self._registry, max_tensor_elements, max_bytes_length)
        # The checks' own table and method, used as they are (one lookup per request).
        self._admissions = self._checks.admissions
        self._prepare = self._checks.prepare
        # The response-cache path (dataplane/cached.py); None: no cache configured.
        self._infer_cached = CachedInference(cache, self._schedule).infer if cache is not None else None
        # Queue deadline for requests that send no `timeout` on models that set no default; 0: none.
        self._default_timeout_us = default_timeout_us
        self._draining = False
        # Requests inside ``infer`` now: the one alone may run inline at once (scheduler/batcher.py).
        self._in_progress = 0
        self._access_log = access_log
        self._drift = drift
        self._tracing = tracing
        # Which requests get a span, changed at run time through Triton's trace extension.
        self.trace_settings = TraceSettings(tracing is not None)
        # Off: a caller's entries are only ever hits for the same API key (docs/security.md).
        self._cache_shared_across_keys = cache_shared_across_keys
        # Registered system shared memory regions; both front-ends' codecs read and write them.
        self.regions = regions if regions is not None else RegionRegistry(unavailable=self.no_shared_memory)
        # Refuses requests for models with a target before decoding when the event loop lags.
        self._loop_shedding = LoopShedding()
        self._canary = CanaryRouter(self._registry, self._prepare, self._run)
        self._ensembles = EnsembleRunner(self.infer)
        self.streams = Streams(repository, self._prepare, lambda: self._draining)

    # Health -------------------------------------------------------------------------------------
    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return not self._draining and self._repository.all_ready()

    async def server_ready(self) -> bool:
        """Readiness as the front-ends report it (with --workers: every worker's, inferd/workers)."""
        return self.ready()

    def start_draining(self) -> None:
        self._draining = True

    async def close(self) -> None:
        """Wait for background work started by requests (shadow runs of a canary candidate); release
        the shared memory registrations (the front-ends have stopped)."""
        await self._canary.close()
        self.regions.close()

    # Server metadata ----------------------------------------------------------------------------
    def server_metadata(self) -> dict[str, Any]:
        extensions = list(EXTENSIONS)
        if self.regions.unavailable is not None:
            extensions.remove("system_shared_memory")
        return {"name": SERVER_NAME, "version": __version__, "extensions": extensions}

    # Inference ----------------------------------------------------------------------------------
    def check_servable(self, name: str, version: str | None, counted: bool = False) -> Admission | None:
        """Raise NotFound/Unavailable before a front-end spends time decoding a request body; return
        the model's checks for the codec to run on the declared inputs before it decodes their data
        (None for a lazy model not loaded yet: its request is checked once decoded, after the load).
        ``counted``: the request is already counted in the server (its ``serve`` began)."""
        try:
            model = self._registry.get(name, version)
        except NotLoadedYet:
            return None  # infer loads it
        batcher = model.batcher
        if isinstance(batcher, Batcher) and batcher.adaptive is not None:
            refusal = self._loop_shedding.refusal(model.name, batcher.adaptive, batcher.backlog, counted)
            if refusal is not None:  # predicted past the target (dataplane/loop_shedding.py)
                model.stats.shed_frontend += 1
                self.record_rejected(name, version, refusal)
                raise refusal
        admission = self._admissions.get(model)
        if admission is None:
            self._checks.build(model)
            admission = self._admissions[model]
        return admission

    def record_rejected(self, name: str, version: str | None, error: InferdError) -> None:
        """Count a request for a servable model that its front-end could not decode as a failure
        (its duration is not measured: it never reached the data plane)."""
        try:
            model = self._registry.get(name, version)
        except InferdError:  # e.g. a lazy model not loaded yet: nothing to count it against
            return
        model.stats.record_failure(0, error.kind.value)
        if self._access_log:
            log_request(error.request_id, model.name, model.version, error.kind.value, 0)

    async def serve(
        self, call: InferCall[Reply], admission: Admission | None | Unchecked = UNCHECKED
    ) -> Reply:
        """One inference call from a front-end: decode, infer, encode, in a span when tracing is on.
        ``admission``: what ``check_servable`` returned, when the front-end already called it for
        this call (REST does, before reading the body); otherwise it is called here, once."""
        # A gRPC call counts twice, so it is never alone: grpc.aio hands the loop one call per turn,
        # so under load each call would find itself alone and run unbatched; the queued path's
        # dispatch turn is what makes gRPC calls wait for company (scheduler/lone.py).
        extra = 0 if call.protocol == "http" else 1
        self._in_progress += extra
        ticket = self._loop_shedding.enter()  # the requests in the server and their time in it
        answered = False
        try:
            reply = await self._serve(call, admission)
            answered = True
            return reply
        finally:
            self._in_progress -= extra
            self._loop_shedding.leave(ticket, answered)

    async def _serve(self, call: InferCall[Reply], admission: Admission | None | Unchecked) -> Reply:
        tracing = self._tracing
        if tracing is None or not self.trace_settings.sample(call.model):
            request = self._decode(call, admission)
            return call.encode(request, await self.infer(request, None, call.caller))
        span = tracing.start_request(call.protocol, call.model, call.version, call.carrier())
        try:
            request = self._decode(call, admission)
            span.set_request_id(request.id)
            response = await self.infer(request, span, call.caller)
            with span.encoding():
                reply = call.encode(request, response)
        except BaseException as exc:
            if isinstance(exc, InferdError) and exc.request_id is not None:
                span.set_request_id(exc.request_id)  # refused while decoding
            span.end(exc)
            raise
        span.end()
        return reply

    # Streaming (dataplane/streaming.py) ----------------------------------------------------------
    def stream_kind(self, name: str, version: str | None) -> StreamKind | None:
        return self.streams.kind(name, version)

    def stream(self, request: InferRequest) -> AsyncIterator[InferResponse]:
        """A decoupled model's responses to one request; the version is held until the stream ends."""
        return self.streams.decoupled(request)

    def generation(self, name: str, version: str | None) -> AbstractAsyncContextManager[Generation]:
        """A generative version held for one stream: ``async with dp.generation(m, v) as g: ...``."""
        return self.streams.generation(name, version)

    def _decode(self, call: InferCall[Reply], admission: Admission | None | Unchecked) -> InferRequest:
        if admission is UNCHECKED:  # the front-end did not check (gRPC; REST checks before the body)
            admission = self.check_servable(call.model, call.version, counted=True)
        try:
            return call.decode(admission)
        except InferdError as exc:
            self.record_rejected(call.model, call.version, exc)
            raise

    async def infer(
        self, request: InferRequest, trace: RequestTrace | None = None, caller: str | None = None
    ) -> InferResponse:
        """The one inference path: version (and canary split), validation, drift sampling, response
        cache, batcher, statistics. ``caller``: the API key id, when cache entries are per key."""
        self._in_progress += 1
        try:
            return await self._infer(request, trace, caller)
        finally:
            self._in_progress -= 1

    async def _infer(
        self, request: InferRequest, trace: RequestTrace | None, caller: str | None
    ) -> InferResponse:
        start = time.perf_counter_ns()
        try:
            model = self._registry.get(request.model, request.version)
        except NotLoadedYet:
            await self._repository.load_on_demand(request.model)
            model = self._registry.get(request.model, request.version)
        # Held until the request is done with this version: a swap meanwhile (the cache lookup
        # awaits) cannot close its batcher before the request is queued there (docs/architecture.md).
        model.hold()
        try:
            response = await self._answer(model, request, trace, self._partition(caller), start)
        except InferdError as exc:
            if isinstance(exc, ExecutionError) and exc.error_id and request.id:
                # The runtime logged the traceback under the error id without knowing the request.
                log.error("model %s: request id %s failed: error id %s", model.name, request.id, exc.error_id)
            if self._access_log:
                elapsed = time.perf_counter_ns() - start
                log_request(request.id, model.name, model.version, exc.kind.value, elapsed)
            raise
        finally:
            model.release()
        if self._access_log:
            elapsed = time.perf_counter_ns() - start
            log_request(request.id, response.model, response.version, "ok", elapsed)
        return response

    def _partition(self, caller: str | None) -> str | None:
        """The cache partition of a caller: its key id, unless entries are shared across keys."""
        return None if self._cache_shared_across_keys else caller

    async def _answer(
        self,
        model: LoadedModel,
        request: InferRequest,
        trace: RequestTrace | None,
        partition: str | None,
        start: int,
    ) -> InferResponse:
        try:
            # A model with a running canary: the client's contract is its stable (default) version.
            checked = self._prepare(model, request)
        except InferdError as exc:
            model.stats.record_failure(time.perf_counter_ns() - start, exc.kind.value)
            raise
        if self._drift is not None:  # once per request, whichever version answers
            self._drift.offer(model.name, checked.arrays)
        rollout = model.rollout
        if rollout is not None and not request.version:
            response = await self._canary.infer(request, model, checked, rollout, trace, partition)
        else:
            outputs = await self._run(model, request, checked, trace, partition, start)
            response = model.response(request.id, outputs, checked.outputs)
        if request.outputs is not None and wants_classes(request.outputs):
            return classify(response, request.outputs, model.labels, model.signature.max_batch_size > 0)
        return response

    async def _run(
        self,
        model: LoadedModel,
        request: InferRequest,
        checked: ValidatedInputs,
        trace: RequestTrace | None,
        partition: str | None,
        start: int,
    ) -> dict[str, np.ndarray]:
        """One version's outputs, from the response cache or its batcher, counted in its statistics
        (``start``: when its share of the request began). The caller holds ``model``."""
        try:
            runtime = model.runtime
            if isinstance(runtime, EnsembleRuntime):
                outputs = await self._ensembles.outputs(model, runtime, request, checked, partition)
            elif self._infer_cached is not None and model.config.response_cache:
                outputs = await self._infer_cached(model, request, checked, trace, partition)
            else:
                outputs = await self._schedule(model, request, checked, trace)
        except InferdError as exc:
            model.stats.record_failure(time.perf_counter_ns() - start, exc.kind.value)
            raise
        model.stats.record_success(time.perf_counter_ns() - start)
        model.stats.last_inference_ms = time.time_ns() // 1_000_000
        return outputs

    async def _schedule(
        self,
        model: LoadedModel,
        request: InferRequest,
        checked: ValidatedInputs,
        trace: RequestTrace | None = None,
    ) -> dict[str, np.ndarray]:
        config = model.config
        # Only named outputs narrow what a runtime computes (inferd/scheduler/batcher.py).
        wanted = frozenset(checked.outputs) if request.outputs else None
        batcher = model.batcher
        if isinstance(batcher, SequenceBatcher):  # a stateful model: its sequence's slot, in order
            return await batcher.infer(
                request.parameters, checked.arrays, checked.rows, checked.group, trace, wanted
            )
        if (
            request.parameters
            or config.priority_levels
            or config.default_timeout_us
            or self._default_timeout_us
        ):
            priority, deadline_ns = queue_placement(request.parameters, config, self._default_timeout_us)
            group: Hashable = checked.group
            # A Python model's predict(inputs, parameters): only equal parameters share a batch.
            share = model_share(model.runtime, request.parameters) if request.parameters else None
            if share is not None:
                group = ParameterGroup(group, share.key)
            return await batcher.infer(
                checked.arrays,
                checked.rows,
                group,
                trace,
                priority,
                deadline_ns,
                wanted,
                share.values if share is not None else None,
                alone=self._in_progress == 1,
            )
        return await batcher.infer(
            checked.arrays, checked.rows, checked.group, trace, outputs=wanted, alone=self._in_progress == 1
        )
