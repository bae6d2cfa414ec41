"""The core package imports without any optional extra: the container image installs only the core
dependencies, and its entry point failed when a new module imported the `generative` extra's
tokenizers at the top (found by tests/deploy/test_container.py)."""

from __future__ import annotations

import subprocess
import sys

OPTIONAL = (
    "tokenizers", "jinja2", "torch", "transformers", "onnxruntime_genai", "gguf", "ray", "sklearn",
    "skl2onnx", "xgboost", "lightgbm", "onnxmltools", "redis", "opentelemetry", "tritonclient",
)  # fmt: skip


def test_the_server_and_cli_import_without_optional_packages() -> None:
    blocked = "; ".join(f"sys.modules[{name!r}] = None" for name in OPTIONAL)
    modules = "inferd.cli, inferd.app, inferd.metrics.registry, inferd.runtimes.registry"
    code = f"import sys; {blocked}; import {modules}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
