"""A generative model's version directory: the decoder graph, its tokenizer and its chat template.

<model>/<version>/
  model.onnx              the decoder: onnxruntime-genai's builder output (inferd/generative/gqa.py; with
                          model.onnx.data and genai_config.json) or inferd's own export (export.py)
  tokenizer.json          a Hugging Face ``tokenizers`` tokenizer
  tokenizer_config.json   optional: ``eos_token``, ``bos_token``, ``chat_template``
  chat_template.jinja     optional: the chat template (wins over tokenizer_config.json's)
  config.json             optional: ``max_position_embeddings`` (the default context length)
  generation_config.json  optional: ``eos_token_id`` (an id or a list)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from inferd.errors import ModelLoadError

# The model's own limit is unknown without config.json: a context most small models handle.
DEFAULT_CONTEXT_LENGTH = 2048
# ChatML, for a model directory that ships no template.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_MAX_JSON_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ModelFiles:
    tokenizer: Tokenizer
    chat_template: str
    eos_token_ids: frozenset[int]
    bos_token: str
    eos_token: str
    max_position_embeddings: int


def read_model_files(version_dir: Path) -> ModelFiles:
    """Read what the engine needs besides the graph; raise ModelLoadError naming the file at fault."""
    tokenizer_path = version_dir / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise ModelLoadError(f"{tokenizer_path}: file not found (a generative model needs its tokenizer)")
    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
    except Exception as exc:  # tokenizers raises a bare Exception on a malformed file
        raise ModelLoadError(f"{tokenizer_path}: not a tokenizers file: {exc}") from None
    tokenizer_config = _json(version_dir / "tokenizer_config.json")
    model_config = _json(version_dir / "config.json")
    generation = _json(version_dir / "generation_config.json")
    eos_token = _token_text(tokenizer_config.get("eos_token")) or ""
    bos_token = _token_text(tokenizer_config.get("bos_token")) or ""
    eos_ids: set[int] = set()
    raw_ids = generation.get("eos_token_id", model_config.get("eos_token_id"))
    for value in raw_ids if isinstance(raw_ids, list) else [raw_ids]:
        if isinstance(value, int):
            eos_ids.add(value)
    if eos_token and (token_id := tokenizer.token_to_id(eos_token)) is not None:
        eos_ids.add(token_id)
    if not eos_ids:
        raise ModelLoadError(
            f"{version_dir}: no end-of-sequence token (set eos_token in tokenizer_config.json or "
            "eos_token_id in generation_config.json)"
        )
    template_path = version_dir / "chat_template.jinja"
    template = tokenizer_config.get("chat_template")
    if template_path.is_file():
        template = template_path.read_text()
    max_positions = model_config.get("max_position_embeddings")
    return ModelFiles(
        tokenizer=tokenizer,
        chat_template=template if isinstance(template, str) and template else DEFAULT_CHAT_TEMPLATE,
        eos_token_ids=frozenset(eos_ids),
        bos_token=bos_token,
        eos_token=eos_token,
        max_position_embeddings=max_positions
        if isinstance(max_positions, int) and max_positions > 0
        else DEFAULT_CONTEXT_LENGTH,
    )


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    if path.stat().st_size > _MAX_JSON_BYTES:
        raise ModelLoadError(f"{path}: larger than {_MAX_JSON_BYTES} bytes")
    try:
        value = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ModelLoadError(f"{path}: expected a JSON object")
    return value


def _token_text(value: object) -> str | None:
    # tokenizer_config.json spells a special token as a string or as {"content": ...}.
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None
