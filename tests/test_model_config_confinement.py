"""What a config.yaml (or a load's config override) may ask for: threads and instances within the
cores, warm-up files inside the model directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferd.errors import ModelLoadError
from inferd.model_config import available_cores, load_model_config


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("onnxruntime: {intra_op_threads: 100000}", "'onnxruntime.intra_op_threads'"),
        ('{"onnxruntime": {"inter_op_threads": 100000}}', "'onnxruntime.inter_op_threads'"),
        ("instances: 64", "'instances'"),
    ],
)
def test_threads_and_instances_beyond_the_cores_are_refused(
    tmp_path: Path, override: str, field: str
) -> None:
    cores = available_cores()
    if cores >= 64:
        pytest.skip("a machine with 64 cores or more may run 64 instances")
    with pytest.raises(ModelLoadError) as raised:
        load_model_config(tmp_path, override)
    assert field in raised.value.message and f"limit of {cores}" in raised.value.message


def test_up_to_the_cores_is_accepted(tmp_path: Path) -> None:
    cores = available_cores()
    text = f"instances: {cores}\nonnxruntime: {{intra_op_threads: {cores}, inter_op_threads: {cores}}}\n"
    config = load_model_config(tmp_path, text)
    assert config.instances == cores and config.onnxruntime.intra_op_threads == cores


@pytest.mark.parametrize(
    "file", ["/etc/passwd", "/nonexistent.npz", "../other/warm.npz", "a/../../x", "a\\b", ""]
)
def test_warm_up_files_must_be_named_inside_the_model_directory(tmp_path: Path, file: str) -> None:
    (tmp_path / "config.yaml").write_text(f"warmup:\n  - data: file\n    file: '{file}'\n")
    with pytest.raises(ModelLoadError) as raised:
        load_model_config(tmp_path)
    # The same answer for every such name: nothing depends on what exists there.
    assert raised.value.message == (
        f"{tmp_path / 'config.yaml'}: 'warmup.0.file': must be a path inside the model directory, "
        "relative to it, without '..'"
    )
