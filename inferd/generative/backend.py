"""What the engine needs from a decoder graph, and the adapter chosen for the graph a version ships.

Two layouts are served: onnxruntime-genai's builder output (int4, GroupQueryAttention, per-row caches
in slot buffers: inferd/generative/gqa.py), what ``inferd examples build --generative`` writes, and
inferd's own float32 export (left-padded caches: inferd/generative/decoder.py, export.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from inferd.generative.decoder import DecoderSession, open_session
from inferd.generative.gqa import GqaDecoder, is_genai_decoder
from inferd.generative.last_logits import last_position_graph

Cache = list[np.ndarray]


class Batch(Protocol):
    """The sequences decoded together, one row each."""

    @property
    def rows(self) -> list[int]:
        """Sequence ids, in row order."""
        ...

    @property
    def nbytes(self) -> int: ...

    def join(self, seq_id: int, cache: Cache, length: int) -> None:
        """Add a prefilled sequence whose cache holds ``length`` positions."""
        ...

    def keep(self, keep: list[int]) -> None: ...

    def decode(self, tokens: list[int]) -> np.ndarray:
        """Advance each row by its token: logits [rows, vocab]."""
        ...


class Decoder(Protocol):
    @property
    def bytes_per_token(self) -> int: ...

    def prefill_many(self, prompts: list[list[int]]) -> tuple[np.ndarray, list[Cache]]:
        """Whole prompts in one execution: each one's last logits [B, vocab] and its cache."""
        ...

    def prefill_chunk(self, cache: Cache | None, chunk: list[int], start: int) -> tuple[np.ndarray, Cache]:
        """The next chunk of one prompt after its first ``start`` tokens: last logits, the cache."""
        ...

    def new_batch(self, max_rows: int, max_positions: int) -> Batch: ...


def open_decoder(path: Path, threads: int, spinning: bool = False) -> Decoder:
    # The builder's graph is served with its LM head on each row's last position only (one session).
    trimmed = last_position_graph(path)
    session = open_session(path, threads, spinning, trimmed)
    if is_genai_decoder(session):
        return GqaDecoder(session, path)
    return DecoderSession(path, threads, session)
