"""``platform: generative``: a decoder-only language model served by the continuous-batching engine.

Requests reach it through ``generator`` (the generate extension, gRPC decoupled streams, the OpenAI
API), never through the batcher: a V2 ``infer`` on it is refused with a pointer to those.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inferd.errors import InvalidRequest, ModelLoadError
from inferd.model_config import CONFIG_FILE, GenerativeOptions, available_cores
from inferd.runtimes.base import RuntimeSettings, Signature
from inferd.types import TensorSpec

if TYPE_CHECKING:  # the engine needs the `generative` extra (tokenizers, jinja2): imported at load
    from inferd.generative.engine import Engine
    from inferd.generative.generator import OnnxGenerator

MISSING_EXTRA = "pip install 'inferd[generative]'"


class GenerativeRuntime:
    platform = "generative"
    device_kind = "KIND_CPU"

    def __init__(self, path: Path, settings: RuntimeSettings, options: GenerativeOptions) -> None:
        version_dir = path.parent
        self.name = version_dir.parent.name
        if settings.instances != 1:
            raise ModelLoadError(
                f"{version_dir.parent / CONFIG_FILE}: a generative model runs one engine per version: "
                "'instances' must be 1 (max_num_seqs sets how many sequences run together)"
            )
        try:
            from inferd.generative.backend import open_decoder
            from inferd.generative.engine import Engine
            from inferd.generative.files import read_model_files
            from inferd.generative.generator import OnnxGenerator
        except ImportError as exc:
            raise ModelLoadError(
                f"{path}: a generative model needs {exc.name}, which is not installed: {MISSING_EXTRA}"
            ) from None
        files = read_model_files(version_dir)
        context = options.context_length or files.max_position_embeddings
        if context > files.max_position_embeddings:
            raise ModelLoadError(
                f"{version_dir.parent / CONFIG_FILE}: 'generative.context_length' {context} exceeds the "
                f"model's max_position_embeddings {files.max_position_embeddings}"
            )
        decoder = open_decoder(path, options.threads or available_cores(), options.allow_spinning)
        self.engine: Engine = Engine(self.name, decoder, files, options, context)
        self._generator = OnnxGenerator(self.engine, files)
        self._signature = Signature(
            (TensorSpec("text_input", "BYTES", (1,)),), (TensorSpec("text_output", "BYTES", (1,)),), 0
        )

    @property
    def generator(self) -> OnnxGenerator:
        return self._generator

    @property
    def signature(self) -> Signature:
        return self._signature

    @property
    def instances(self) -> int:
        return 1

    def run(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise InvalidRequest(
            f"model '{self.name}' is a generative model: use POST /v2/models/{self.name}/generate (or "
            "generate_stream), gRPC ModelStreamInfer, or the OpenAI API (/v1/completions, "
            "/v1/chat/completions)"
        )

    def close(self) -> None:
        self.engine.close()


def stop_accepting(runtimes: Iterable[object]) -> None:
    """At shutdown: generative models refuse new sequences; running ones finish (the front-ends' drain
    timeout bounds them, then unloading ends what is left with an error)."""
    for runtime in runtimes:
        if isinstance(runtime, GenerativeRuntime):
            runtime.engine.stop_accepting()
