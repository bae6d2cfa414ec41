"""One small real `inferd advise` run: measured on this machine, config.yaml printed and written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import modelfactory as mf
import pytest
import yaml
from click.testing import CliRunner

from inferd.advise.search import MAX_VERIFICATIONS
from inferd.cli import main
from inferd.model_config import load_model_config


def test_advise_measures_the_served_and_optimized_versions_and_writes_the_config(tmp_path: Path) -> None:
    model_dir = mf.write_model(tmp_path / "models", "mlp", mf.matmul_mlp, config="max_batch_size: 8\n")
    # A version written by `inferd optimize` (its provenance marks it): advise measures it too.
    (model_dir / "2").mkdir()
    shutil.copyfile(model_dir / "1" / "model.onnx", model_dir / "2" / "model.onnx")
    (model_dir / "2" / "provenance.json").write_text(json.dumps({"source_version": 1}))
    (model_dir / "config.yaml").write_text("max_batch_size: 8\nversion_policy: {specific: [1]}\n")

    result = CliRunner().invoke(
        main,
        [
            "advise",
            str(model_dir),
            "--slo-p99-ms",
            "500",
            "--rate",
            "250",
            "--price-per-hour",
            "0.36",
            "--cores",
            "1",
            "--json",
            "--write",
        ],
    )
    assert result.exit_code == 0, result.output
    advice = json.loads(result.stdout)
    assert advice["probes"] == 6  # two versions x one layout x three batch sizes
    assert 1 <= advice["verifications"] <= MAX_VERIFICATIONS
    config = advice["config"]
    assert any(v["batch_cap"] == config["max_batch_size"] and v["throughput"] for v in advice["verified"])
    assert config["instances"] == 1 and config["onnxruntime"]["intra_op_threads"] == 1
    assert config["max_batch_size"] in (1, 2, 4, 8)
    measured = advice["measured"]["throughput"]
    assert advice["machines"] == -(-250 // measured)
    assert advice["cost_per_1000"] == pytest.approx(0.36 / 3600 / measured * 1000, rel=1e-3)
    if config.get("rollout"):  # the optimized version won: it goes out as a canary
        assert config["rollout"] == {"candidate": 2, "canary_percent": 10}

    written = yaml.safe_load((model_dir / "config.yaml").read_text())
    assert written == config
    load_model_config(model_dir)  # what was written is a valid config.yaml
    assert [p.name for p in model_dir.glob("config.yaml.bak-*")]
