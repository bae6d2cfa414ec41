"""onnxruntime-genai's own generator loop over a model folder: the in-process baseline for one stream.

``og.Generator`` on the very folder inferd serves (``inferd examples build DIR --generative`` writes the
builder's model.onnx and genai_config.json into the version directory), greedy, prompts encoded with the
same tokenizer; a stream ends at the model's end-of-sequence token or after ``max_tokens``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnxruntime_genai as og
from tokenizers import Tokenizer


class OgLoop:
    def __init__(self, version: Path, threads: int, spinning: bool | None = None) -> None:
        """``spinning``: ONNX Runtime's ``session.intra_op.allow_spinning`` for the decoder session
        (onnxruntime-genai passes unknown session options on as config entries); None: its default."""
        config = og.Config(str(version))
        options: dict[str, object] = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
        if spinning is not None:
            options["session.intra_op.allow_spinning"] = "1" if spinning else "0"
        config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
        self.model = og.Model(config)
        self.tokenizer = Tokenizer.from_file(str(version / "tokenizer.json"))

    def generate(self, prompt: str, max_tokens: int) -> int:
        ids = self.tokenizer.encode(prompt, add_special_tokens=False).ids
        params = og.GeneratorParams(self.model)
        params.set_search_options(max_length=len(ids) + max_tokens, do_sample=False)
        generator = og.Generator(self.model, params)
        generator.append_tokens(ids)
        generated = 0
        while not generator.is_done():
            generator.generate_next_token()
            generated += 1
        return generated

    def tokens_per_s(self, prompts: list[str], max_tokens: int, duration_s: float, seed: int = 0) -> float:
        """Prompts in a seeded random order, one after another, for ``duration_s``."""
        order = np.random.default_rng(seed).permutation(len(prompts)).tolist()
        self.generate(prompts[0], 4)  # warm the session
        start, tokens, index = time.perf_counter(), 0, 0
        while time.perf_counter() - start < duration_s:
            tokens += self.generate(prompts[order[index % len(order)]], max_tokens)
            index += 1
        return tokens / (time.perf_counter() - start)
