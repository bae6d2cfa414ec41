"""A tiny random-weight Llama decoder built the way the smollm2 example is (a Hugging Face folder turned
into an int4 GroupQueryAttention decoder by onnxruntime-genai's model builder), with a byte-level BPE
tokenizer trained here and a ChatML template: a servable ``platform: generative`` version directory in
seconds."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Continuous batching advances every running sequence one token per step.",
    "Caf\u00e9, na\u00efve, \u00fcber, \u65e5\u672c\u8a9e, \U0001f600 emoji and other characters.",
    "What is the capital of France? Paris is the capital of France.",
] * 4
CONTEXT = 512


def write_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    tokenizer.save(str(path))


def tiny_model(seed: int = 0) -> object:
    """The random-weight ``LlamaForCausalLM``: output projection tied to the embeddings and scaled up,
    so sampled text varies and a stream practically never meets its end-of-sequence token (tests that
    cancel long generations rely on it)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=400,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=CONTEXT,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    return model


def build_tiny_decoder(version_dir: Path, seed: int = 0) -> Path:
    """Write the int4 decoder, the tokenizer and its configuration into ``version_dir``."""
    from inferd.generative.genai_build import build_int4

    version_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_config = {"eos_token": "<|im_end|>", "bos_token": None, "chat_template": CHAT_TEMPLATE}
    with tempfile.TemporaryDirectory(prefix="tiny-hf-") as scratch:
        hf_dir = Path(scratch)
        tiny_model(seed).save_pretrained(str(hf_dir))  # type: ignore[attr-defined]
        write_tokenizer(hf_dir / "tokenizer.json")
        (hf_dir / "tokenizer_config.json").write_text(
            json.dumps({**tokenizer_config, "tokenizer_class": "PreTrainedTokenizerFast"})
        )
        build_int4(hf_dir, version_dir)
    (version_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    (version_dir / "config.json").write_text(json.dumps({"max_position_embeddings": CONTEXT}))
    return version_dir
