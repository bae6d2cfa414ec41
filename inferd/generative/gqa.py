"""The decoder onnxruntime-genai's model builder writes (int4 MatMulNBits, GroupQueryAttention), driven
for continuous batching.

The graph (``python -m onnxruntime_genai.models.builder ... -p int4 -e cpu``): inputs ``input_ids`` [B,
S], ``attention_mask`` [B, T] and ``past_key_values.{i}.key/value`` [B, kv_heads, P, head_dim]; outputs
``logits`` [B, S, vocab] and ``present.{i}.key/value`` [B, kv_heads, max(T, P), head_dim].
GroupQueryAttention reads each row's length from the mask (``seqlens_k = sum(mask) - 1``) and expects the
row's cache contiguous from position 0; it derives the rotary positions from that length, so rows of
different lengths share one execution when their caches are right-padded.

Decode steps run over slot buffers: one [rows, kv_heads, capacity, head_dim] array per cache tensor,
bound as both ``past`` and ``present`` (the kernel then writes each row's new key/value in place at its
length instead of copying the cache), so a step copies nothing. Decoding sequences occupy rows
``0..n-1``; a sequence that leaves is replaced by the last row (one row's valid prefix copied).
Prefill returns fresh caches (the graph allocates them) that ``SlotBatch.join`` copies into a row.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort

from inferd.errors import ModelLoadError

_PAST = re.compile(r"past_key_values\.(\d+)\.(key|value)")
GENAI_CONFIG = "genai_config.json"
_MIN_CAPACITY = 64  # positions per row allocated at first: doubling from here keeps regrowth rare
Cache = list[np.ndarray]


def is_genai_decoder(session: ort.InferenceSession) -> bool:
    return any(_PAST.fullmatch(node.name) for node in session.get_inputs())


class GqaDecoder:
    """An ONNX Runtime session over the builder's graph, with the geometry of its KV cache."""

    def __init__(self, session: ort.InferenceSession, path: Path) -> None:
        self._session = session
        inputs = {node.name: node for node in session.get_inputs()}
        outputs = [node.name for node in session.get_outputs()]
        layers = sorted({int(m.group(1)) for name in inputs if (m := _PAST.fullmatch(name))})
        if (
            "input_ids" not in inputs
            or "attention_mask" not in inputs
            or "logits" not in outputs
            or layers != list(range(len(layers)))
        ):
            raise ModelLoadError(
                f"{path}: not an onnxruntime-genai decoder (inputs input_ids, attention_mask, "
                "past_key_values.N.key/value; outputs logits, present.N.key/value): see docs/generative.md"
            )
        self.layers = len(layers)
        self._positions = "position_ids" in inputs
        self.kv_heads, self.head_dim = _geometry(inputs["past_key_values.0.key"].shape, path)
        self.past_names = [
            f"past_key_values.{i}.{kind}" for i in range(self.layers) for kind in ("key", "value")
        ]
        self.present_names = [f"present.{i}.{kind}" for i in range(self.layers) for kind in ("key", "value")]
        vocab = session.get_outputs()[outputs.index("logits")].shape[-1]
        # Known: decode steps bind their own logits array (see run_step); else learnt at the first run.
        self._vocab: int | None = vocab if isinstance(vocab, int) and vocab > 0 else None

    @property
    def bytes_per_token(self) -> int:
        return self.layers * 2 * self.kv_heads * self.head_dim * 4

    def run_shared(
        self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, buffers: Cache
    ) -> np.ndarray:
        """One execution with ``buffers`` bound as both past and present (the layout this graph is
        run in: the kernel writes each row's new keys/values in place at the row's length); returns
        the logits [B, S, vocab]."""
        binding = self._session.io_binding()
        binding.bind_output("logits")  # first: get_outputs() lists outputs in binding order
        held = bind_buffers(self, binding, buffers)
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("attention_mask", mask)
        if self._positions:  # builders that emit it; GroupQueryAttention's rotary reads the lengths
            binding.bind_cpu_input("position_ids", positions)
        self._session.run_with_iobinding(binding)
        del held
        logits: np.ndarray = binding.get_outputs()[0].numpy()
        return logits

    def buffers(self, rows: int, positions: int) -> Cache:
        shape = (rows, self.kv_heads, positions, self.head_dim)
        return [np.zeros(shape, np.float32) for _ in self.past_names]

    def prefill_many(self, prompts: list[list[int]]) -> tuple[np.ndarray, list[Cache]]:
        """Whole prompts in one execution (right-padded): each row's last logits [B, vocab] and its
        cache ([1, kv_heads, width, head_dim] per tensor, valid up to the prompt's length)."""
        lengths = [len(prompt) for prompt in prompts]
        width = max(lengths)
        ids = np.zeros((len(prompts), width), np.int64)
        mask = np.zeros_like(ids)
        for row, prompt in enumerate(prompts):
            ids[row, : len(prompt)] = prompt
            mask[row, : len(prompt)] = 1
        buffers = self.buffers(len(prompts), width)
        positions = np.broadcast_to(np.arange(width, dtype=np.int64), ids.shape).copy()
        logits = self.run_shared(ids, mask, positions, buffers)
        if logits.shape[1] == 1:  # the LM head on each row's last position only (last_logits.py)
            last = logits[:, 0]
        else:
            last = logits[np.arange(len(prompts)), np.asarray(lengths) - 1]
        return last, [[array[row : row + 1] for array in buffers] for row in range(len(prompts))]

    def prefill_chunk(self, cache: Cache | None, chunk: list[int], start: int) -> tuple[np.ndarray, Cache]:
        """One sequence's next prompt chunk after its first ``start`` tokens: the last logits [vocab]
        and the cache ([1, kv_heads, capacity, head_dim], valid up to start + len(chunk))."""
        total = start + len(chunk)
        buffers = cache if cache is not None else []
        if not buffers or buffers[0].shape[2] < total:
            grown = self.buffers(1, _grown(buffers[0].shape[2] if buffers else 0, total, _MIN_CAPACITY))
            for old, new in zip(buffers, grown, strict=False):
                new[:, :, :start] = old[:, :, :start]
            buffers = grown
        positions = np.arange(start, total, dtype=np.int64)[None, :]
        ids = np.asarray([chunk], np.int64)
        logits = self.run_shared(ids, np.ones((1, total), np.int64), positions, buffers)
        return logits[0, -1], buffers

    def new_batch(self, max_rows: int, max_positions: int) -> SlotBatch:
        return SlotBatch(self, max_rows, max_positions)

    def bind(self) -> ort.IOBinding:
        return self._session.io_binding()

    def run_step(self, binding: ort.IOBinding, rows: int) -> np.ndarray:
        """Run a bound decode step (logits bound first): the logits [rows, 1, vocab]. They land in an
        array bound as the output, not read back with ``get_outputs()``, which wraps every bound
        output (the logits and each cache tensor: ~0.2 ms a step for 60 of them)."""
        if self._vocab is None:
            self._session.run_with_iobinding(binding)
            logits: np.ndarray = binding.get_outputs()[0].numpy().copy()  # the next step reuses it
            self._vocab = logits.shape[-1]
            return logits
        logits = np.empty((rows, 1, self._vocab), np.float32)
        binding.bind_ortvalue_output("logits", ort.OrtValue.ortvalue_from_numpy(logits))
        self._session.run_with_iobinding(binding)
        return logits

    @property
    def needs_positions(self) -> bool:
        return self._positions


class SlotBatch:
    """The caches of the sequences decoded together, row ``i`` holding ``rows[i]``'s first
    ``lengths[i]`` positions."""

    def __init__(self, decoder: GqaDecoder, max_rows: int, max_positions: int) -> None:
        self._decoder = decoder
        self._max_rows = max_rows
        self._max_positions = max_positions
        self.rows: list[int] = []
        self.lengths: list[int] = []
        self._buffers: Cache = []
        self._binding: ort.IOBinding | None = None
        self._bound_rows = -1
        self._held: list[object] = []  # what the binding points into, kept alive while bound

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for array in self._buffers)

    @property
    def _shape(self) -> tuple[int, int]:
        return (self._buffers[0].shape[0], self._buffers[0].shape[2]) if self._buffers else (0, 0)

    def join(self, seq_id: int, cache: Cache, length: int) -> None:
        """Add a prefilled sequence (valid up to ``length`` in ``cache``) as the last row."""
        self._reserve(len(self.rows) + 1, length + 1)
        row = len(self.rows)
        for buffer, array in zip(self._buffers, cache, strict=True):
            buffer[row, :, :length] = array[0, :, :length]
        self.rows.append(seq_id)
        self.lengths.append(length)

    def keep(self, keep: list[int]) -> None:
        """Keep only the rows at indices ``keep``: rows past the new count move into the holes (one
        row's valid prefix copied per hole), so the order of ``rows`` may change."""
        if len(keep) == len(self.rows):
            return
        if not keep:
            self.rows, self.lengths = [], []
            self._buffers, self._binding, self._held, self._bound_rows = [], None, [], -1
            return
        count = len(keep)
        kept = set(keep)
        holes = [row for row in range(count) if row not in kept]
        movers = [row for row in keep if row >= count]
        for hole, source in zip(holes, movers, strict=True):
            length = self.lengths[source]
            for buffer in self._buffers:
                buffer[hole, :, :length] = buffer[source, :, :length]
            self.rows[hole] = self.rows[source]
            self.lengths[hole] = length
        del self.rows[count:], self.lengths[count:]

    def decode(self, tokens: list[int]) -> np.ndarray:
        """Advance every row by its token: the logits [rows, vocab]."""
        count = len(self.rows)
        width = max(self.lengths) + 1
        self._reserve(count, width)
        binding = self._bind(count)
        ids = np.asarray(tokens, np.int64)[:, None]
        mask = (np.arange(width)[None, :] <= np.asarray(self.lengths)[:, None]).astype(np.int64)
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("attention_mask", mask)
        held = [ids, mask]
        if self._decoder.needs_positions:
            positions = np.asarray(self.lengths, np.int64)[:, None]
            binding.bind_cpu_input("position_ids", positions)
            held.append(positions)
        logits = self._decoder.run_step(binding, count)[:, -1]
        self.lengths = [length + 1 for length in self.lengths]
        return logits

    def _reserve(self, rows: int, positions: int) -> None:
        """Grow the buffers (doubling, within the limits) so ``rows`` rows of ``positions`` fit."""
        have_rows, have_positions = self._shape
        if rows <= have_rows and positions <= have_positions:
            return
        new_rows = min(self._max_rows, _grown(have_rows, rows, 1))
        new_positions = min(self._max_positions, _grown(have_positions, positions, _MIN_CAPACITY))
        if rows > new_rows or positions > new_positions:
            raise ValueError(f"{rows} rows of {positions} positions exceed the batch's limits")
        decoder = self._decoder
        shape = (new_rows, decoder.kv_heads, new_positions, decoder.head_dim)
        grown = [np.zeros(shape, np.float32) for _ in decoder.past_names]
        for old, new in zip(self._buffers, grown, strict=False):  # no old buffers at first
            new[: old.shape[0], :, : old.shape[2]] = old
        self._buffers = grown
        self._binding, self._held, self._bound_rows = None, [], -1

    def _bind(self, count: int) -> ort.IOBinding:
        """The binding of the first ``count`` rows as past and present (rebuilt when they change)."""
        if self._binding is not None and self._bound_rows == count:
            return self._binding
        binding = self._decoder.bind()
        binding.bind_output("logits")  # first: get_outputs() lists outputs in binding order
        held = bind_buffers(self._decoder, binding, [buffer[:count] for buffer in self._buffers])
        self._binding, self._held, self._bound_rows = binding, held, count
        return binding


def bind_buffers(decoder: GqaDecoder, binding: ort.IOBinding, buffers: Cache) -> list[ort.OrtValue]:
    """Bind each buffer as its layer's past and present (one OrtValue over the numpy memory, no copy);
    the values returned must stay alive while the binding is used."""
    held: list[ort.OrtValue] = []
    for past, present, buffer in zip(decoder.past_names, decoder.present_names, buffers, strict=True):
        value = ort.OrtValue.ortvalue_from_numpy(buffer)
        binding.bind_ortvalue_input(past, value)
        binding.bind_ortvalue_output(present, value)
        held.append(value)
    return held


def _grown(have: int, need: int, floor: int) -> int:
    size = max(have, floor)
    while size < need:
        size *= 2
    return size


def _geometry(shape: list[object], path: Path) -> tuple[int, int]:
    """kv_heads and head_dim: from the graph when static, else from genai_config.json."""
    kv_heads, head_dim = shape[1], shape[3]
    if isinstance(kv_heads, int) and isinstance(head_dim, int):
        return kv_heads, head_dim
    config_path = path.parent / GENAI_CONFIG
    try:
        decoder = json.loads(config_path.read_text())["model"]["decoder"]
        kv = decoder["num_key_value_heads"]
        size = decoder["head_size"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ModelLoadError(
            f"{config_path}: needed for the KV cache's shape (model.decoder.num_key_value_heads and "
            "head_size), and missing or malformed"
        ) from None
    if not isinstance(kv, int) or not isinstance(size, int) or kv < 1 or size < 1:
        raise ModelLoadError(f"{config_path}: num_key_value_heads and head_size must be positive integers")
    return kv, size
