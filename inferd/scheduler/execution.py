"""One execution of a batch on a runtime instance: merge the requests' inputs, run, split the outputs.

Runs on the instance's worker thread (or on the loop for an inline run); it touches no queue state,
so the batcher owns when and where it runs and this module only what it does. Errors stay with the
requests that caused them: a failing merged batch is rerun request by request, so only the request
that poisoned it fails.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from inferd.errors import ExecutionError, InferdError, InstanceCrashed
from inferd.runtimes.base import Runtime, TakesParameters
from inferd.runtimes.request_parameters import ModelParameters
from inferd.scheduler.batching import concatenate, split
from inferd.scheduler.queue import Outputs, Pending

log = logging.getLogger(__name__)


@dataclass(slots=True)  # not frozen: built per execution, and a frozen __init__ costs 3x
class Executed:
    """Each request's outputs or error, with the time spent merging, running and splitting."""

    results: list[Outputs | InferdError]
    input_ns: int
    infer_ns: int
    output_ns: int


class Executor:
    """Runs batches on one model version's runtime; ``batched``: the model has a batch dimension."""

    def __init__(self, runtime: Runtime, batched: bool, name: str) -> None:
        self._runtime = runtime
        self._batched = batched
        self._name = name
        self._run_parameters = runtime.run_parameters if isinstance(runtime, TakesParameters) else None

    def execute(
        self,
        instance: int,
        inputs: list[Outputs],
        rows: list[int],
        wanted: frozenset[str] | None = None,
        parameters: ModelParameters | None = None,
    ) -> Executed:
        """Merge, run, split. Errors stay with the requests that caused them."""
        start = time.perf_counter_ns()
        merged = concatenate(inputs)
        ready = time.perf_counter_ns()
        try:
            outputs = self._run(instance, merged, wanted, parameters)
            ran = time.perf_counter_ns()
            results: list[Outputs | InferdError] = list(split(outputs, rows) if self._batched else [outputs])
        except Exception as exc:
            ran = time.perf_counter_ns()
            results = self._isolate_failure(instance, inputs, rows, exc, wanted, parameters)
        return Executed(results, ready - start, ran - ready, time.perf_counter_ns() - ran)

    def _run(
        self,
        instance: int,
        inputs: Outputs,
        wanted: frozenset[str] | None,
        parameters: ModelParameters | None,
    ) -> Outputs:
        if parameters is not None:  # only ever set for a runtime that takes them (the data plane checks)
            assert self._run_parameters is not None
            return self._run_parameters(instance, inputs, parameters)
        run_outputs = getattr(self._runtime, "run_outputs", None)
        if wanted is not None and run_outputs is not None:
            selected: Outputs = run_outputs(instance, inputs, wanted)
            return selected
        return self._runtime.run(instance, inputs)

    def _isolate_failure(
        self,
        instance: int,
        inputs: list[Outputs],
        rows: list[int],
        exc: Exception,
        wanted: frozenset[str] | None,
        parameters: ModelParameters | None,
    ) -> list[Outputs | InferdError]:
        if len(inputs) == 1 or isinstance(exc, InstanceCrashed):
            # A crashed worker fails its whole batch: rerunning each request would crash it again.
            return [execution_error(self._name, exc)] * len(inputs)
        # One request may have poisoned a merged batch: rerun each alone so only it fails.
        results: list[Outputs | InferdError] = []
        for request_inputs, count in zip(inputs, rows, strict=True):
            try:
                results.append(split(self._run(instance, request_inputs, wanted, parameters), [count])[0])
            except Exception as single_exc:
                results.append(execution_error(self._name, single_exc))
        return results


def outputs_wanted(batch: list[Pending]) -> frozenset[str] | None:
    """The outputs a batch needs: the union of what its requests asked for (None: all)."""
    if any(item.outputs is None for item in batch):
        return None
    return frozenset().union(*(item.outputs for item in batch if item.outputs is not None))


def execution_error(model: str, exc: BaseException) -> InferdError:
    if isinstance(exc, InferdError):
        return exc
    log.warning("model %s: execution failed: %s", model, exc)
    return ExecutionError(f"model '{model}' failed to execute: {exc}")
