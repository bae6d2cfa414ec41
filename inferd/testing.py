"""Test a model without a server: load it as the server does, send it V2-shaped requests in-process.

::

    from inferd import testing

    with testing.load("models/sentiment/1") as model:        # or testing.load(MyModel)
        model.check_signature()                              # a generated batch passes through
        out = model.infer([{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["great"]}])
        outs = model.infer_batch([{"text": [b"a"]}, {"text": [b"b", b"c"]}])  # one predict call
        for out in model.infer_stream({"prompt": [b"hi"]}):  # predict_stream's responses
            ...
        out = model.infer({"x": [[1.0]]}, parameters={"scale": 2})  # predict(inputs, parameters)
        response = model.infer_response({"x": [[1.0]]})  # .outputs, and .parameters it set

Requests go through the server's own decoding and signature checks, and outputs through the same
checks as in the server: what fails here fails there with the same message.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import orjson

from inferd.dataplane.validation import ValidatedInputs, validate
from inferd.datatypes import numpy_dtype
from inferd.model import Model, Response
from inferd.model_config import WarmupSample, load_model_config
from inferd.protocol.json_codec import decode_request
from inferd.repository.warmup import sample_inputs
from inferd.runtimes.base import Runtime, RuntimeSettings, Signature, Streaming, TakesParameters
from inferd.runtimes.python import (
    call_predict,
    call_predict_stream,
    instantiate,
    parameter_use,
    signature_of,
    stream_parameters,
)
from inferd.runtimes.registry import create_runtime
from inferd.runtimes.request_parameters import ModelParameters, model_share
from inferd.runtimes.response_parameters import parameters_of
from inferd.scheduler.batching import concatenate, split
from inferd.types import InferRequest, Tensor

__all__ = ["LocalModel", "load"]

# What ``infer`` accepts: {input name: array-like}, a list of V2 input objects
# ({"name", "datatype", "shape", "data"}), or a whole V2 request body ({"inputs": [...], ...}).
Inputs = Mapping[str, Any] | Sequence[Mapping[str, Any]]

_NAME = "model"


class LocalModel:
    """A loaded model, called in-process. Use it as a context manager, or call ``close``."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    @property
    def signature(self) -> Signature:
        return self._runtime.signature

    def infer(self, inputs: Inputs, parameters: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """One request: its outputs (those it asks for, else all), as the server would answer.

        ``parameters``: the request's (else those of a V2 body's ``parameters``), checked and
        stripped of the server's own keys as the server does; a model whose ``predict`` takes no
        parameters never sees them."""
        return dict(self.infer_response(inputs, parameters).outputs)

    def infer_response(self, inputs: Inputs, parameters: Mapping[str, Any] | None = None) -> Response:
        """``infer``, with the response parameters the model set (``inferd.Response``; empty when
        ``predict`` returned the outputs dict), as the server would send them."""
        request = _request(inputs, self.signature)
        checked = validate(request, self.signature)
        outputs = self._run(checked.arrays, request.parameters if parameters is None else parameters)
        if self.signature.max_batch_size > 0:
            outputs = split(outputs, [checked.rows])[0]
        return Response({name: outputs[name] for name in checked.outputs}, parameters_of(outputs) or {})

    def infer_batch(
        self, requests: Sequence[Inputs], parameters: Mapping[str, Any] | None = None
    ) -> list[dict[str, np.ndarray]]:
        """Several requests merged into one ``predict`` call, as the batcher merges them; each gets
        its own rows back. Requests whose non-batch shapes differ are never merged by the server, so
        they are refused here. ``parameters``: what every one of them sent (the server merges only
        requests whose parameters are equal)."""
        if self.signature.max_batch_size == 0:
            raise ValueError("the model does not batch (max_batch_size 0): send requests one by one")
        checked = [self._validated(request) for request in requests]
        if len({c.group for c in checked}) > 1:
            raise ValueError("these requests have different non-batch shapes: the server runs them apart")
        rows = [c.rows for c in checked]
        if sum(rows) > self.signature.max_batch_size:
            raise ValueError(f"{sum(rows)} rows exceed the max_batch_size {self.signature.max_batch_size}")
        outputs = split(self._run(concatenate([c.arrays for c in checked]), parameters or {}), rows)
        return [{n: out[n] for n in c.outputs} for c, out in zip(checked, outputs, strict=True)]

    def infer_stream(
        self, inputs: Inputs, parameters: Mapping[str, Any] | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """One request to a decoupled model: each response ``predict_stream`` yields, checked as the
        server checks it (its requested outputs, else all). ``parameters``: as ``infer``'s."""
        runtime = self._runtime
        if not isinstance(runtime, Streaming):
            raise TypeError(f"{type(runtime).__name__} models do not stream (predict_stream)")
        request = _request(inputs, self.signature)
        checked = validate(request, self.signature)
        given = request.parameters if parameters is None else parameters
        share = model_share(runtime, given, stream=True) if given else None
        for outputs in runtime.stream(0, checked.arrays, share.values if share is not None else None):
            yield {name: outputs[name] for name in checked.outputs}

    def check_signature(self, batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Run a generated batch (``batch_size`` rows, by default 2 or the max_batch_size when
        smaller; variable dims of size 1) and check the outputs against the declared signature."""
        limit = self.signature.max_batch_size
        rows = batch_size if batch_size is not None else (min(2, limit) if limit else 1)
        sample = WarmupSample(batch_size=rows, data="random")
        arrays = sample_inputs(sample, self.signature, Path("."), np.random.default_rng(0))
        return self._runtime.run(0, arrays)

    def close(self) -> None:
        self._runtime.close()

    def __enter__(self) -> LocalModel:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _validated(self, inputs: Inputs) -> ValidatedInputs:
        return validate(_request(inputs, self.signature), self.signature)

    def _run(self, arrays: dict[str, np.ndarray], parameters: Mapping[str, Any]) -> dict[str, np.ndarray]:
        runtime = self._runtime
        share = model_share(runtime, parameters) if parameters else None
        if share is not None and isinstance(runtime, TakesParameters):
            return runtime.run_parameters(0, arrays, share.values)
        return runtime.run(0, arrays)


def load(
    source: str | Path | type[Model],
    *,
    path: str | Path | None = None,
    max_batch_size: int | None = None,
) -> LocalModel:
    """Load a model as the server would.

    ``source``: a version directory (or a file in it, such as its ``model.py``); config.yaml is read
    from the model directory above it and the platform chosen as the server chooses it, so ONNX models
    work too. Or a ``Model`` subclass: then ``path`` is the directory handed to its ``load`` (the
    current one by default) and ``max_batch_size`` stands in for config.yaml's.
    """
    if isinstance(source, type):
        settings = RuntimeSettings(max_batch_size=max_batch_size)
        where = Path(path if path is not None else ".")
        signature = signature_of(source, settings, Path(source.__qualname__))
        return LocalModel(_ClassRuntime(instantiate(source, where), signature, source.__name__))
    location = Path(source)
    version_dir = location.parent if location.is_file() else location
    config = load_model_config(version_dir.parent)
    return LocalModel(create_runtime(version_dir / "model", config))


class _ClassRuntime:
    """One instance of a Model subclass with no model.py behind it."""

    def __init__(self, model: Model, signature: Signature, label: str) -> None:
        self._model = model
        self._signature = signature
        self._label = label
        self.takes_parameters, self.stream_takes_parameters = parameter_use(type(model))

    @property
    def signature(self) -> Signature:
        return self._signature

    @property
    def instances(self) -> int:
        return 1

    def run(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        parameters: ModelParameters | None = {} if self.takes_parameters else None
        return call_predict(self._model, inputs, self._signature, self._label, parameters)

    def run_parameters(
        self, instance: int, inputs: dict[str, np.ndarray], parameters: ModelParameters
    ) -> dict[str, np.ndarray]:
        return call_predict(self._model, inputs, self._signature, self._label, parameters)

    def stream(
        self, instance: int, inputs: dict[str, np.ndarray], parameters: ModelParameters | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        passed = stream_parameters(self.stream_takes_parameters, parameters)
        return call_predict_stream(self._model, inputs, self._signature, self._label, passed)

    def close(self) -> None:
        pass


def _request(inputs: Inputs, signature: Signature) -> InferRequest:
    if isinstance(inputs, Mapping) and "inputs" in inputs and isinstance(inputs["inputs"], list):
        return decode_request(orjson.dumps(dict(inputs)), None, _NAME, None)
    if isinstance(inputs, Sequence) and not isinstance(inputs, str | bytes):
        return decode_request(orjson.dumps({"inputs": list(inputs)}), None, _NAME, None)
    if not isinstance(inputs, Mapping):
        raise TypeError("inputs: a dict of arrays, a list of V2 input objects, or a V2 request body")
    tensors = []
    for name, value in inputs.items():
        spec = signature.input(name)
        datatype = spec.datatype if spec is not None else "BYTES" if _is_text(value) else "FP32"
        tensors.append(Tensor(name, datatype, _array(value, datatype)))
    return InferRequest(_NAME, None, tensors)


def _is_text(value: Any) -> bool:
    return np.asarray(value).dtype.kind in "OSU"


def _array(value: Any, datatype: str) -> np.ndarray:
    if datatype != "BYTES":
        return np.asarray(value, dtype=numpy_dtype(datatype))
    array = np.asarray(value, dtype=object)
    flat = [e.encode("utf-8") if isinstance(e, str) else bytes(e) for e in array.reshape(-1)]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(array.shape)
