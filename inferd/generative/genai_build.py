"""Run onnxruntime-genai's model builder on a Hugging Face model folder: an int4 decoder (MatMulNBits
weights, GroupQueryAttention with a KV cache) that inferd/generative/gqa.py serves and og.Generator runs.

The builder is run as its command line (``python -m onnxruntime_genai.models.builder``), the interface
onnxruntime-genai documents; it needs torch, transformers and onnx-ir (the ``generative`` extra).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# What the builder writes that a version directory keeps (the model folder og.Model loads, too).
GENAI_FILES = (
    "model.onnx",
    "model.onnx.data",
    "genai_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
)
_TAIL = 4000


def build_int4(hf_dir: Path, version_dir: Path, timeout_s: float = 1800) -> None:
    """Write the int4 CPU decoder of the model in ``hf_dir`` (config, safetensors, tokenizer) and the
    files that go with it into ``version_dir``."""
    version_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="inferd-genai-") as scratch:
        out = Path(scratch) / "out"
        command = [
            sys.executable,
            "-m",
            "onnxruntime_genai.models.builder",
            "-i",
            str(hf_dir),
            "-o",
            str(out),
            "-p",
            "int4",
            "-e",
            "cpu",
            "-c",
            str(Path(scratch) / "cache"),
        ]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            check=False,
        )
        if done.returncode != 0 or not (out / "model.onnx").is_file():
            raise ValueError(
                f"onnxruntime-genai's model builder failed (exit {done.returncode}): "
                f"{(done.stderr or done.stdout)[-_TAIL:]}"
            )
        for name in GENAI_FILES:
            if (out / name).is_file():
                shutil.copyfile(out / name, version_dir / name)
