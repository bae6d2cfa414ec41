"""The public API of a custom Python model: subclass ``Model`` in a version's ``model.py``.

::

    import numpy as np
    from inferd import Model, Tensor

    class Double(Model):
        inputs = [Tensor("x", "FP32", [-1, 4])]
        outputs = [Tensor("y", "FP32", [-1, 4])]
        max_batch_size = 64

        def load(self, path):
            ...  # once per instance, with the version directory

        def predict(self, inputs):
            return {"y": inputs["x"] * 2}  # a whole batch in, a whole batch out

A ``predict(self, inputs, parameters)`` (a second argument, any name) also gets the request's own
``parameters`` (tritonclient's ``infer(..., parameters={...})``) as a dict of bool, int, float and
str values; requests are then batched together only when their parameters are equal, so the dict is
every row's own (docs/model-repository.md, "Request parameters").

``predict`` may return ``Response(outputs, parameters={...})`` instead of the outputs dict: the
parameters (bool, int, float, str) then go back in the response of every request of that batch, as
Triton's ``InferenceResponse(..., parameters=...)`` does ("Response parameters" in that doc).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from inferd.datatypes import DATATYPES


@dataclass(frozen=True, slots=True, init=False)
class Tensor:
    """A declared input or output: a V2 datatype and the full shape as the model's metadata shows it
    (batch dimension first, as -1, when the model batches; -1 is any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def __init__(self, name: str, datatype: str, shape: Sequence[int]) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a tensor name must be a non-empty string, got {name!r}")
        if datatype not in DATATYPES:
            raise ValueError(
                f"tensor '{name}': unknown datatype '{datatype}'; expected one of {sorted(DATATYPES)}"
            )
        dims = tuple(shape)
        if not all(isinstance(d, int) and not isinstance(d, bool) and (d == -1 or d > 0) for d in dims):
            raise ValueError(f"tensor '{name}': shape {list(dims)} must hold positive sizes or -1 (any size)")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "datatype", datatype)
        object.__setattr__(self, "shape", dims)


@dataclass(frozen=True, slots=True)
class Response:
    """What ``predict`` (or each step of ``predict_stream``) may return instead of the outputs dict:
    the outputs and the response's ``parameters``, sent back to every request of the batch (so they
    may depend on the request's parameters, which the batch's requests share, or on the model, never
    on one row's data: that is an output). Checked as request parameters are; the server's own keys
    (``binary_data_size``, ``sequence_*``, ``triton_*``, ...) are refused."""

    outputs: Mapping[str, Any]
    parameters: Mapping[str, bool | int | float | str] = field(default_factory=dict)


class Model:
    """Subclass it and implement ``predict``. Each instance (``instances:`` in config.yaml) is one
    object, called from one worker thread at a time (``instance_kind: process``: in a worker process
    of its own, which imports model.py and calls ``load`` itself).

    ``inputs``/``outputs``: the signature; when None, config.yaml's ``inputs``/``outputs`` give it.
    ``max_batch_size``: rows per ``predict`` call (0: no batch dimension); config.yaml's wins.
    """

    inputs: ClassVar[Sequence[Tensor] | None] = None
    outputs: ClassVar[Sequence[Tensor] | None] = None
    max_batch_size: ClassVar[int | None] = None

    def load(self, path: Path) -> None:
        """Once per instance before any request, with the version directory (weights live there)."""

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray] | Response:
        """A whole batch: every input has the batch's rows first (when the model batches); return
        every declared output with as many rows (or a ``Response`` holding them and the response's
        parameters). BYTES tensors are object arrays of ``bytes``.
        Declared as ``predict(self, inputs, parameters)``, it also gets the parameters every request
        of the batch sent (they are equal; ``{}`` when none were sent), without the server's own keys.
        Input arrays may be read-only: copy one before changing it in place. With
        ``instance_kind: process`` they are views of a shared buffer that the next batch overwrites:
        copy what you keep beyond the call."""
        raise NotImplementedError(f"{type(self).__name__} does not implement predict")

    def predict_stream(self, inputs: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray] | Response]:
        """Several responses to one request (a decoupled model, such as a generator of tokens).

        ``inputs`` are ONE request's (never merged with other requests; its rows first when the
        model batches). Yield zero or more responses, each a dict holding every declared output with
        the request's rows (or a ``Response``), checked as ``predict``'s result is; the stream ends
        when the generator returns, and an exception ends it with an error after the responses
        already yielded. The default yields ``predict(inputs)`` once, so any model can be called as
        a stream. Declared as ``predict_stream(self, inputs, parameters)``, it gets the request's
        parameters as ``predict`` does (the default passes them on to a ``predict`` that takes them).
        """
        yield self.predict(inputs)
