"""The decoder graph in an ONNX Runtime session, and the KV caches of the sequences it advances together.

Sequences of different lengths share one execution by padding their caches on the left to the longest
(the graph's ``attention_mask`` hides the padding; layout: inferd/generative/export.py). Between steps
the batch's caches stay in the layout the graph returned them in (``present`` becomes the next
``past``), so a step copies nothing on the Python side unless a sequence joins or leaves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from inferd.errors import ModelLoadError

_PAST = re.compile(r"past\.(\d+)\.(key|value)")
_INPUTS = ("input_ids", "attention_mask", "position_ids")


@dataclass(frozen=True, slots=True)
class Layout:
    layers: int
    kv_heads: int
    head_dim: int

    @property
    def bytes_per_token(self) -> int:
        return self.layers * 2 * self.kv_heads * self.head_dim * 4

    def empty(self, rows: int) -> list[np.ndarray]:
        return [np.zeros((rows, self.kv_heads, 0, self.head_dim), np.float32) for _ in range(2 * self.layers)]


def open_session(
    path: Path, threads: int, spinning: bool = False, graph: bytes | None = None
) -> ort.InferenceSession:
    """``graph``: a serialized graph to load instead of the file at ``path`` (its external weights
    are read from beside ``path``)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if graph is not None:
        options.add_session_config_entry(
            "session.model_external_initializers_file_folder_path", str(path.parent)
        )
    try:
        return ort.InferenceSession(
            graph if graph is not None else str(path), options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # ORT raises its own exception types for a bad graph
        raise ModelLoadError(f"{path}: ONNX Runtime could not load the decoder: {exc}") from None


class DecoderSession:
    """inferd's own float32 layout (inferd/generative/export.py): left-padded caches."""

    def __init__(self, path: Path, threads: int, session: ort.InferenceSession | None = None) -> None:
        self._session = session if session is not None else open_session(path, threads)
        self.layout = _layout(self._session, path)
        self._past_names = [
            f"past.{i}.{kind}" for i in range(self.layout.layers) for kind in ("key", "value")
        ]

    def run(
        self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, past: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Logits of each row's last position [B, vocab], and the caches extended by ``ids``."""
        feed = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
        feed.update(zip(self._past_names, past, strict=True))
        logits, *present = self._session.run(None, feed)
        return logits, present

    @property
    def bytes_per_token(self) -> int:
        return self.layout.bytes_per_token

    def prefill_many(self, prompts: list[list[int]]) -> tuple[np.ndarray, list[list[np.ndarray]]]:
        """Whole prompts in one left-padded execution: each row's last logits and its cache."""
        width = max(len(prompt) for prompt in prompts)
        ids = np.zeros((len(prompts), width), np.int64)
        mask = np.zeros_like(ids)
        positions = np.zeros_like(ids)
        for row, prompt in enumerate(prompts):
            length = len(prompt)
            ids[row, width - length :] = prompt
            mask[row, width - length :] = 1
            positions[row, width - length :] = np.arange(length)
        logits, present = self.run(ids, mask, positions, self.layout.empty(len(prompts)))
        caches = [
            [array[row : row + 1, :, width - len(prompt) :, :] for array in present]
            for row, prompt in enumerate(prompts)
        ]
        return logits, caches

    def prefill_chunk(
        self, cache: list[np.ndarray] | None, chunk: list[int], start: int
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """One sequence's next prompt chunk over its cache so far (``start`` tokens): the last logits,
        the cache."""
        past = cache if cache is not None else self.layout.empty(1)
        positions = np.arange(start, start + len(chunk), dtype=np.int64)[None, :]
        mask = np.ones((1, start + len(chunk)), np.int64)
        logits, present = self.run(np.asarray([chunk], np.int64), mask, positions, past)
        return logits[0], present

    def new_batch(self, max_rows: int, max_positions: int) -> PaddedBatch:
        return PaddedBatch(self)


def _layout(session: ort.InferenceSession, path: Path) -> Layout:
    names = {node.name: node for node in session.get_inputs()}
    missing = [name for name in _INPUTS if name not in names]
    past = [(int(m.group(1)), node) for name, node in names.items() if (m := _PAST.fullmatch(name))]
    outputs = [node.name for node in session.get_outputs()]
    if missing or not past or not outputs or outputs[0] != "logits":
        raise ModelLoadError(
            f"{path}: not a decoder inferd serves: neither onnxruntime-genai's (past_key_values.N.key/value "
            "inputs) nor inferd's own layout (inputs input_ids, attention_mask, position_ids, "
            "past.N.key/value; outputs logits, present.N.key/value): see docs/generative.md"
        )
    layers = max(index for index, _ in past) + 1
    shape = past[0][1].shape
    if len(past) != 2 * layers or len(shape) != 4 or not all(isinstance(d, int) for d in shape[1::2]):
        raise ModelLoadError(
            f"{path}: past.N.key/value must be [batch, kv_heads, past, head_dim] for every layer"
        )
    return Layout(layers, int(shape[1]), int(shape[3]))


class KVBatch:
    """The caches of the sequences decoded together: row ``i`` is ``rows[i]``'s, left-padded."""

    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        self.rows: list[int] = []  # sequence ids
        self.past = layout.empty(0)
        self.mask = np.zeros((0, 0), np.int64)
        self.lengths = np.zeros(0, np.int64)  # real (unpadded) tokens per row

    @property
    def width(self) -> int:
        return self.mask.shape[1]

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for array in self.past)

    def join(self, seq_id: int, cache: list[np.ndarray]) -> None:
        """Add a sequence whose cache ([1, kv_heads, length, head_dim] per tensor) was just prefilled."""
        length = cache[0].shape[2]
        width = max(self.width, length)
        self.past = [
            np.concatenate([_pad_left(old, width), _pad_left(new, width)], axis=0)
            for old, new in zip(self.past, cache, strict=True)
        ]
        row_mask = np.zeros((1, width), np.int64)
        row_mask[0, width - length :] = 1
        self.mask = np.concatenate([_pad_left(self.mask, width), row_mask], axis=0)
        self.lengths = np.append(self.lengths, length)
        self.rows.append(seq_id)

    def keep(self, keep: list[int]) -> None:
        """Keep only the rows at indices ``keep``, dropping the padding no remaining row needs."""
        if len(keep) == len(self.rows):
            return
        width = int(self.lengths[keep].max()) if keep else 0
        start = self.width - width
        self.past = [np.ascontiguousarray(array[keep, :, start:, :]) for array in self.past]
        self.mask = np.ascontiguousarray(self.mask[keep, start:])
        self.lengths = self.lengths[keep]
        self.rows = [self.rows[index] for index in keep]

    def step_inputs(self, tokens: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids = np.asarray(tokens, np.int64)[:, None]
        mask = np.concatenate([self.mask, np.ones((len(tokens), 1), np.int64)], axis=1)
        return ids, mask, self.lengths[:, None].copy()

    def advance(self, mask: np.ndarray, present: list[np.ndarray]) -> None:
        self.mask = mask
        self.past = present
        self.lengths = self.lengths + 1


class PaddedBatch:
    """A KVBatch that runs its own decode steps (the engine's view of it: inferd/generative/backend.py)."""

    def __init__(self, session: DecoderSession) -> None:
        self._kv = KVBatch(session.layout)
        self._session = session

    @property
    def rows(self) -> list[int]:
        return self._kv.rows

    @property
    def nbytes(self) -> int:
        return self._kv.nbytes

    def join(self, seq_id: int, cache: list[np.ndarray], length: int) -> None:
        self._kv.join(seq_id, cache)  # the cache holds exactly ``length`` positions

    def keep(self, keep: list[int]) -> None:
        self._kv.keep(keep)

    def decode(self, tokens: list[int]) -> np.ndarray:
        ids, mask, positions = self._kv.step_inputs(tokens)
        logits, present = self._session.run(ids, mask, positions, self._kv.past)
        self._kv.advance(mask, present)
        return logits


def _pad_left(array: np.ndarray, width: int) -> np.ndarray:
    """Pad axis 2 (caches) or axis 1 (masks) with zeros on the left up to ``width``."""
    axis = 2 if array.ndim == 4 else 1
    missing = width - array.shape[axis]
    if missing == 0:
        return array
    pad = [(0, 0)] * array.ndim
    pad[axis] = (missing, 0)
    return np.pad(array, pad)
