"""Prompts for the generative scenario: a built-in set of mixed lengths, or the user's file."""

from __future__ import annotations

import json
from pathlib import Path

from inferd.bench.endpoint import BenchError

_MAX_FILE_BYTES = 64 * 1024 * 1024

_PASSAGE = (
    "Continuous batching lets a language model server advance every running request by one token in "
    "a single execution of the model. New requests join the batch at the next step instead of waiting "
    "for the whole batch to finish, and finished requests leave it at once, so the hardware stays busy "
    "and short answers are not held back by long ones. The key and value caches of each sequence grow "
    "by one position per step; a scheduler admits new sequences only while the memory those caches "
    "need fits in its budget, and lets the others wait. Prefill, the pass over a new prompt, costs "
    "more than one decode step, so a long prompt is split into chunks that run between decode steps. "
)

# Short (a few tokens), medium (tens) and long (a few hundred, with SmolLM2's tokenizer) prompts, so
# prefill and decode both show in the figures.
BUILTIN_PROMPTS: tuple[str, ...] = (
    "The capital of France is",
    "Write a haiku about autumn.",
    "Once upon a time, in a small village by the sea,",
    "Explain in simple words why the sky is blue and why sunsets are red.",
    "List three things to check before deploying a web service to production, and say why each matters.",
    "Summarize the following text in two sentences.\n\n" + _PASSAGE,
    "Read this description of a server and suggest one improvement.\n\n" + _PASSAGE * 2,
    "Here are some notes from a design review. What questions should the reviewers ask next?\n\n"
    + _PASSAGE * 3,
)


def load_prompts(path: Path) -> tuple[str, ...]:
    """A ``.jsonl`` file (each line a JSON string, or an object with ``prompt`` or ``text_input``) or a
    text file with one prompt per line; blank lines are skipped."""
    if path.stat().st_size > _MAX_FILE_BYTES:
        raise BenchError(f"{path}: larger than {_MAX_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise BenchError(f"{path}: not UTF-8 text") from None
    if path.suffix == ".jsonl":
        prompts = [_json_prompt(path, number, line) for number, line in enumerate(lines, 1)]
    else:
        prompts = lines
    if not prompts:
        raise BenchError(f"{path}: no prompts in it")
    return tuple(prompts)


def _json_prompt(path: Path, number: int, line: str) -> str:
    try:
        value = json.loads(line)
    except ValueError as exc:
        raise BenchError(f"{path}:{number}: not JSON: {exc}") from None
    if isinstance(value, dict):
        value = value.get("prompt", value.get("text_input"))
    if not isinstance(value, str) or not value:
        raise BenchError(f"{path}:{number}: expected a string or an object with a 'prompt' string")
    return value
