"""The lifecycle keys of config.yaml: version_policy, warmup, rollout."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferd.errors import ModelLoadError
from inferd.model_config import VersionPolicy, load_model_config


@pytest.mark.parametrize(
    ("yaml", "selected", "triton"),
    [
        ("", [3, 4], None),
        ("version_policy: {latest: 2}\n", [3, 4], {"latest": {"num_versions": 2}}),
        ("version_policy: all\n", [1, 2, 3, 4], {"all": {}}),
        ("version_policy: {specific: [4, 1, 7]}\n", [1, 4], {"specific": {"versions": [1, 4, 7]}}),
    ],
)
def test_version_policies_select_like_triton(
    tmp_path: Path, yaml: str, selected: list[int], triton: dict[str, object] | None
) -> None:
    if yaml:
        (tmp_path / "config.yaml").write_text(yaml)
    policy = load_model_config(tmp_path).version_policy
    if triton is None:  # the default: the highest version only
        assert policy == VersionPolicy() and policy.select([4, 1, 3]) == [4]
        return
    assert policy.select([4, 2, 1, 3]) == selected
    assert policy.as_triton() == triton


@pytest.mark.parametrize(
    ("yaml", "named"),
    [
        ("version_policy: latest\n", "'version_policy'"),
        ("version_policy: {latest: 1, all: true}\n", "give one of latest, specific or all"),
        ("version_policy: {specific: []}\n", "'version_policy.specific'"),
        ("warmup:\n  - data: file\n", "'file' is required"),
        ("warmup:\n  - batch_size: 0\n", "'warmup.0.batch_size'"),
        ("rollout: {canary_percent: 10}\n", "'rollout.candidate'"),
        ("rollout: {candidate: 2, canary_percent: 150}\n", "'rollout.canary_percent'"),
        (
            "rollout: {candidate: 2, guard: {max_error_rte: 1}}\n",
            "'rollout.guard.max_error_rte': unknown key",
        ),
    ],
)
def test_bad_lifecycle_keys_are_named(tmp_path: Path, yaml: str, named: str) -> None:
    (tmp_path / "config.yaml").write_text(yaml)
    with pytest.raises(ModelLoadError) as raised:
        load_model_config(tmp_path)
    assert named in raised.value.message


def test_a_config_override_replaces_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("max_batch_size: 4\n")
    assert load_model_config(tmp_path, '{"max_batch_size": 2}').max_batch_size == 2
    with pytest.raises(ModelLoadError, match="config override: 'max_batch_size'"):
        load_model_config(tmp_path, '{"max_batch_size": -2}')
