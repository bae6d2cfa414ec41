"""Streaming inference: one request, many responses, through the same version resolution and holds as
``DataPlane.serve``.

Two kinds of model stream: a decoupled Python model (``predict_stream``; its runtime is
``Streaming``), whose responses are tensors, and a generative model (``GenerativeRuntime``), whose
responses are ``TokenEvent``s. Either way the version is held from the first response to the last (a
swap meanwhile waits for the stream to end, as it waits for a queued request), the stream is counted
in the version's statistics, and closing the iterator (a client gone) stops the model's generator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from inferd.dataplane.validation import ValidatedInputs
from inferd.errors import ExecutionError, InferdError, InvalidRequest, NotLoadedYet, Unavailable
from inferd.generative.contract import GenerativeRuntime, Generator
from inferd.repository.loader import LoadedModel
from inferd.repository.manager import ModelRepository
from inferd.runtimes.base import Streaming, StreamKind, stream_kind
from inferd.runtimes.request_parameters import model_share
from inferd.types import InferRequest, InferResponse

log = logging.getLogger(__name__)

_SHUTTING_DOWN = "the server is shutting down: retry on another replica"
_END = object()


@dataclass(frozen=True, slots=True)
class Generation:
    """A generative model version held for the life of one stream."""

    model: str
    version: str
    generator: Generator


class Streams:
    """The data plane's streaming half (DataPlane.stream / DataPlane.generation)."""

    def __init__(
        self,
        repository: ModelRepository,
        prepare: Callable[[LoadedModel, InferRequest], ValidatedInputs],
        draining: Callable[[], bool],
    ) -> None:
        self._repository = repository
        self._registry = repository.registry
        self._prepare = prepare
        self._draining = draining
        # Streams take instances in turn. Each runs on its own thread: thread instances serve several
        # streams at once (as they serve batches), a worker process one stream at a time (its pipe).
        self._turn = 0
        self.active = 0  # streams running now, both kinds (draining waits on none; tests read it)

    def kind(self, name: str, version: str | None) -> StreamKind | None:
        """How ``name`` streams; None when it does not (or is not loaded yet: then it is not known)."""
        try:
            runtime = self._registry.get(name, version).runtime
        except NotLoadedYet:
            return None
        return stream_kind(runtime)

    async def _resolve(self, name: str, version: str | None) -> LoadedModel:
        if self._draining():
            raise Unavailable(_SHUTTING_DOWN)
        try:
            return self._registry.get(name, version)
        except NotLoadedYet:
            await self._repository.load_on_demand(name)
            return self._registry.get(name, version)

    @asynccontextmanager
    async def generation(self, name: str, version: str | None) -> AsyncIterator[Generation]:
        """Hold a generative version while the caller streams from its generator."""
        model = await self._resolve(name, version)
        runtime = model.runtime
        if not isinstance(runtime, GenerativeRuntime):
            raise InvalidRequest(f"model '{model.name}' is not a generative model")
        async with self._accounted(model):
            yield Generation(model.name, model.version, runtime.generator)

    @asynccontextmanager
    async def _accounted(self, model: LoadedModel) -> AsyncIterator[None]:
        """One stream on ``model``: the version held and counted active until it ends, then recorded
        in its statistics as one inference, failed by the InferdError that ended it."""
        model.hold()
        self.active += 1
        start = time.perf_counter_ns()
        try:
            yield
        except InferdError as exc:
            model.stats.record_failure(time.perf_counter_ns() - start, exc.kind.value)
            raise
        else:
            stats = model.stats
            took_ns = time.perf_counter_ns() - start
            stats.record_success(took_ns)
            stats.last_inference_ms = time.time_ns() // 1_000_000
            # As Triton counts a decoupled model's request: one inference, one execution, and one
            # pass through the queue, with no wait: a stream goes to its instance, or to the
            # generative engine, at once (the engine's own wait shows in time to first token).
            # perf_analyzer, given no version, measures the version whose queue count grew.
            stats.inference_count += 1
            stats.execution_count += 1
            stats.queue.add(0)
            # The stream is the model's work, from start to end; perf_analyzer wants the three
            # compute counts equal.
            stats.compute_input.add(0)
            stats.compute_infer.add(took_ns)
            stats.compute_output.add(0)
        finally:
            self.active -= 1
            model.release()

    async def decoupled(self, request: InferRequest) -> AsyncIterator[InferResponse]:
        """Each response of a decoupled model's ``predict_stream`` for one request."""
        model = await self._resolve(request.model, request.version)
        runtime = model.runtime
        if not isinstance(runtime, Streaming):
            raise InvalidRequest(f"model '{model.name}' does not stream (it has no predict_stream)")
        async with self._accounted(model):
            checked = self._prepare(model, request)
            self._turn += 1
            instance = self._turn % runtime_instances(model)
            share = model_share(runtime, request.parameters, stream=True) if request.parameters else None
            responses = runtime.stream(instance, checked.arrays, share.values if share is not None else None)
            stream = _ThreadedIterator(responses, f"stream-{model.name}")
            try:
                async for outputs in stream:
                    yield model.response(request.id, outputs, checked.outputs)
            finally:
                await stream.aclose()


def runtime_instances(model: LoadedModel) -> int:
    return max(1, model.runtime.instances)


class _ThreadedIterator:
    """A blocking iterator (user code, a worker process's pipe) advanced on its own thread.

    One thread per stream runs ``next`` and, once the consumer stops, ``close``, in order: a generator
    is never closed while another thread is inside it. The thread is a daemon, as the batcher's are,
    so a ``predict_stream`` that never yields cannot keep the process from exiting.
    """

    def __init__(self, iterator: Iterator[dict[str, np.ndarray]], name: str) -> None:
        self._iterator = iterator
        self._loop = asyncio.get_running_loop()
        self._commands: queue.SimpleQueue[tuple[str, asyncio.Future[Any]]] = queue.SimpleQueue()
        self._closed = False
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def __aiter__(self) -> _ThreadedIterator:
        return self

    async def __anext__(self) -> dict[str, np.ndarray]:
        future: asyncio.Future[Any] = self._loop.create_future()
        self._commands.put(("next", future))
        # Shielded: a cancelled consumer leaves the step running; aclose (queued after it) ends it.
        result = await asyncio.shield(future)
        if result is _END:
            raise StopAsyncIteration
        return result  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        future: asyncio.Future[Any] = self._loop.create_future()
        self._commands.put(("close", future))
        # Shielded: cancelled while waiting, the thread still closes the iterator.
        await asyncio.shield(future)

    def _run(self) -> None:
        while True:
            command, future = self._commands.get()
            if command == "close":
                try:
                    close = getattr(self._iterator, "close", None)
                    if close is not None:
                        close()
                except Exception as exc:  # user code's cleanup: logged, never the client's concern
                    log.warning("closing a stream raised %s: %s", type(exc).__name__, exc)
                self._settle(future, None)
                return
            try:
                self._settle(future, next(self._iterator, _END))
            except BaseException as exc:
                if not isinstance(exc, InferdError):
                    log.error("stream step failed", exc_info=exc)
                    exc = ExecutionError(f"streaming failed: {type(exc).__name__}")
                self._settle(future, exc)

    def _settle(self, future: asyncio.Future[Any], result: object) -> None:
        def settle() -> None:
            if future.done():
                return
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

        with contextlib.suppress(RuntimeError):  # the loop is closed: the server is gone
            self._loop.call_soon_threadsafe(settle)
