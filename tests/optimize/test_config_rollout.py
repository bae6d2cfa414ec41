"""The rollout section optimize writes into config.yaml for a polling server: the rest of the file
kept as written, an earlier section replaced, a file it cannot edit safely refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from inferd.model_config import load_model_config
from inferd.optimize.config_rollout import ConfigRolloutError, restore, with_rollout, write_rollout

CONFIG = """\
# the team's notes stay
max_batch_size: 64
rollout:
  candidate: 2
  canary_percent: 5
  # an old comment inside the old section goes with it
version_policy: {latest: 1}   # trailing comment
"""


def test_the_section_is_replaced_and_the_rest_kept_as_written() -> None:
    edited = with_rollout(CONFIG, 3, 12.5)
    assert "# the team's notes stay\n" in edited and "{latest: 1}   # trailing comment\n" in edited
    assert "old comment" not in edited
    document = yaml.safe_load(edited)
    assert document["rollout"] == {"candidate": 3, "canary_percent": 12.5}
    assert document["max_batch_size"] == 64 and document["version_policy"] == {"latest": 1}


def test_a_file_without_a_section_or_without_a_final_newline_gets_one() -> None:
    assert with_rollout("", 2, 10) == "rollout:\n  candidate: 2\n  canary_percent: 10\n"
    assert yaml.safe_load(with_rollout("max_batch_size: 8", 2, 10)) == {
        "max_batch_size": 8,
        "rollout": {"candidate": 2, "canary_percent": 10},
    }


def test_a_file_it_cannot_split_safely_is_refused() -> None:
    with pytest.raises(ConfigRolloutError, match="add it by hand"):
        with_rollout("{max_batch_size: 8, rollout: {candidate: 2}}\n", 3, 10)
    with pytest.raises(ConfigRolloutError, match="not valid YAML"):
        with_rollout("max_batch_size: [8\n", 3, 10)


def test_written_then_restored(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(CONFIG)
    previous = write_rollout(tmp_path, 4, 50)
    config = load_model_config(tmp_path)
    assert config.rollout is not None and (config.rollout.candidate, config.rollout.canary_percent) == (4, 50)
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # no staging file left
    restore(tmp_path, previous)
    assert (tmp_path / "config.yaml").read_text() == CONFIG
    bare = tmp_path / "bare"
    bare.mkdir()
    restore(bare, write_rollout(bare, 2, 10))
    assert not (bare / "config.yaml").exists()
