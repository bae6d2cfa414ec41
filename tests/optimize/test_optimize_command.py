"""`inferd optimize` on real models with real quantization: what is written, what is refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import modelfactory as mf
import numpy as np
import pytest
from click.testing import CliRunner, Result

from inferd.cli import main

# Fast settings: a handful of timed runs, one round (speed is not what these tests check).
FAST = ["--bench-time", "0", "--bench-iterations", "3", "--bench-rounds", "1", "--min-speedup", "0"]


def _model(tmp_path: Path, builder: Callable[[Path], None] = mf.matmul_mlp) -> Path:
    return mf.write_model(tmp_path / "models", "mlp", builder, config="max_batch_size: 16\n")


def _samples(tmp_path: Path, rows: int = 64) -> Path:
    path = tmp_path / "samples.npz"
    np.savez(path, input=np.random.default_rng(5).standard_normal((rows, 32)).astype(np.float32))
    return path


def _optimize(*args: str) -> Result:
    return CliRunner().invoke(main, ["optimize", *args])


def test_dynamic_int8_passes_the_gate_and_is_written_with_provenance(tmp_path: Path) -> None:
    model_dir = _model(tmp_path)
    samples = _samples(tmp_path)
    result = _optimize(
        str(model_dir),
        "--samples",
        str(samples),
        "--method",
        "dynamic_int8",
        "--max-drop",
        "0.1",
        "--min-cosine",
        "0.9",
        "--json",
        *FAST,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (candidate,) = report["candidates"]
    assert candidate["name"] == "dynamic_int8" and candidate["status"] == "passed"
    assert candidate["gate_summary"]["min_mean_cosine"] > 0.99
    assert [b["batch_size"] for b in candidate["benchmark"]["batches"]] == [1, 16]
    assert report["written_version"] == 2

    written = model_dir / "2"
    assert sorted(p.name for p in written.iterdir()) == ["model.onnx", "provenance.json"]
    provenance = json.loads((written / "provenance.json").read_text())
    assert provenance["source_version"] == 1 and provenance["candidate"] == "dynamic_int8"
    assert provenance["method"].startswith("dynamic INT8")
    assert provenance["gate"]["passed"] is True
    assert provenance["samples"] == {"origin": str(samples), "kind": "npz", "rows": 64}
    assert set(provenance["tools"]) >= {"onnxruntime", "onnx", "numpy", "python", "inferd"}
    assert provenance["benchmark"]["candidate"]["file_bytes"] == (written / "model.onnx").stat().st_size
    # A quantized graph really was written, smaller than the source.
    assert (written / "model.onnx").stat().st_size < (model_dir / "1" / "model.onnx").stat().st_size
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".")], "staging directory left behind"


def test_a_candidate_failing_a_forced_threshold_is_not_written(tmp_path: Path) -> None:
    model_dir = _model(tmp_path)
    result = _optimize(
        str(model_dir),
        "--samples",
        str(_samples(tmp_path)),
        "--method",
        "dynamic_int8",
        "--min-cosine",
        "0.999999",
        "--max-drop",
        "0",
        *FAST,
    )
    assert result.exit_code == 1
    assert "dynamic_int8: failed gate" in result.stdout
    assert "no candidate passed the accuracy gate; nothing written" in result.stderr
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "config.yaml"]


def test_the_gate_catches_a_perturbed_candidate_file(tmp_path: Path) -> None:
    model_dir = _model(tmp_path)
    perturbed = tmp_path / "pruned.onnx"
    mf.matmul_mlp(perturbed, noise=0.5)
    result = _optimize(
        str(model_dir), "--samples", str(_samples(tmp_path)), "--candidate", str(perturbed), *FAST
    )
    assert result.exit_code == 1, result.output
    assert "pruned: failed gate" in result.stdout
    assert "logits: mean cosine" in result.stdout
    assert not (model_dir / "2").exists()


def test_a_candidate_with_other_inputs_fails_the_gate_with_the_reason(tmp_path: Path) -> None:
    model_dir = _model(tmp_path)
    other = tmp_path / "other.onnx"
    mf.add_constant(other, 1.0)
    result = _optimize(str(model_dir), "--samples", str(_samples(tmp_path)), "--candidate", str(other), *FAST)
    assert result.exit_code == 1
    assert "does not run" in result.stdout


def test_without_samples_optimize_refuses_in_one_line(tmp_path: Path) -> None:
    model_dir = _model(tmp_path)
    result = _optimize(str(model_dir))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "inferd optimize: no samples: give --samples FILE or --from-traffic "
        "(no accuracy claim is made without data)"
    ]
    assert not (model_dir / "2").exists()


def test_jsonl_v2_request_samples(tmp_path: Path) -> None:
    model_dir = _model(tmp_path)
    rng = np.random.default_rng(9)
    lines = []
    for _ in range(8):
        rows = rng.standard_normal((4, 32)).astype(np.float32)
        tensor = {"name": "input", "shape": [4, 32], "datatype": "FP32", "data": rows.ravel().tolist()}
        lines.append(json.dumps({"id": "x", "inputs": [tensor]}))
    requests = tmp_path / "requests.jsonl"
    requests.write_text("\n".join(lines) + "\n")
    perturbed = tmp_path / "perturbed.onnx"
    mf.matmul_mlp(perturbed, noise=0.5)
    # A candidate the gate rejects: the samples are judged on, and no benchmark time is spent.
    result = _optimize(
        str(model_dir), "--samples", str(requests), "--candidate", str(perturbed), "--json", *FAST
    )
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["samples"] == {"origin": str(requests), "kind": "jsonl", "rows": 32}
    (candidate,) = report["candidates"]
    assert candidate["status"] == "failed gate" and candidate["gate_summary"]["min_mean_cosine"] < 0.99
    assert not (model_dir / "2").exists()


def test_methods_that_do_not_apply_are_listed_as_skipped_with_the_reason(tmp_path: Path) -> None:
    model_dir = _model(tmp_path)
    result = _optimize(
        str(model_dir),
        "--samples",
        str(_samples(tmp_path)),
        "--method",
        "fp16",
        "--method",
        "transformer_fusions",
        "--json",
        *FAST,
    )
    assert result.exit_code == 1
    skipped = {c["name"]: c["skipped"] for c in json.loads(result.stdout)["candidates"]}
    assert "not a transformer graph" in skipped["transformer_fusions"]
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert skipped["fp16"].startswith("no GPU execution provider")


@pytest.mark.parametrize("value", ["canary", "canary:0", "canary:101", "shadow:10"])
def test_bad_rollout_values_are_refused_before_any_work(tmp_path: Path, value: str) -> None:
    result = _optimize(str(_model(tmp_path)), "--samples", str(_samples(tmp_path)), "--rollout", value)
    assert result.exit_code == 2
    assert "canary:N" in result.stderr


def test_rollout_with_dry_run_is_refused(tmp_path: Path) -> None:
    args = ["--samples", str(_samples(tmp_path)), "--rollout", "canary:10", "--dry-run"]
    result = _optimize(str(_model(tmp_path)), *args)
    assert result.exit_code == 2
    assert "--dry-run writes no version to roll out" in result.stderr
