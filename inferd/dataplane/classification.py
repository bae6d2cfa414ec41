"""Triton's classification extension: a requested output with ``classification: K`` is answered as
its top K classes, BYTES ``"score:index[:label]"`` (labels from the model's labels.txt), per batch
row when the model batches."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from inferd.errors import InvalidRequest
from inferd.types import InferResponse, RequestedOutput, Tensor


def wants_classes(requested: list[RequestedOutput] | None) -> bool:
    return requested is not None and any(output.classification for output in requested)


def classify(
    response: InferResponse, requested: list[RequestedOutput], labels: Sequence[str], batched: bool
) -> InferResponse:
    """``response`` with each output that asked for classes replaced by them."""
    counts = {output.name: output.classification for output in requested if output.classification}
    outputs = []
    for tensor in response.outputs:
        count = counts.get(tensor.name)
        outputs.append(tensor if count is None else _top_classes(tensor, count, labels, batched))
    response.outputs = outputs
    return response


def _top_classes(tensor: Tensor, count: int, labels: Sequence[str], batched: bool) -> Tensor:
    data = tensor.data
    if data.dtype.kind not in "biuf":
        raise InvalidRequest(
            f"output '{tensor.name}': classification needs a numeric output, this one is {tensor.datatype}"
        )
    rows = data.reshape(data.shape[0] if batched and data.ndim else 1, -1)
    integral = data.dtype.kind in "biu"
    classes = [_row_classes(row, count, labels, integral) for row in rows]
    result = np.empty((len(classes), len(classes[0]) if classes else 0), dtype=object)
    for index, row in enumerate(classes):
        result[index, :] = row
    return Tensor(tensor.name, "BYTES", result if batched else result.reshape(-1))


def _row_classes(row: np.ndarray, count: int, labels: Sequence[str], integral: bool) -> list[bytes]:
    scores = row.astype(np.float64)
    top = np.argsort(-scores, kind="stable")[:count]  # ties: the lower index first
    entries = []
    for index in top.tolist():
        value = row[index]
        score = str(int(value)) if integral else f"{float(value):f}"
        entry = f"{score}:{index}:{labels[index]}" if index < len(labels) else f"{score}:{index}"
        entries.append(entry.encode("utf-8"))
    return entries
