"""Reading a version's provenance.json: what the index and the model configuration show, and files
that are not provenance (bad JSON, not an object, too big) showing nothing rather than failing a load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inferd.repository.provenance import MAX_PROVENANCE_BYTES, index_note, read_provenance, summary

DOCUMENT = {
    "source_version": 1,
    "candidate": "dynamic_int8",
    "method": "dynamic INT8, per-channel QInt8 weights",
    "gate": {"min_mean_cosine": 0.9989, "min_top1_agreement": None},
    "speedup": 1.8,
    "created": "2026-12-01T00:00:00+00:00",
}


def test_summary_and_index_note(tmp_path: Path) -> None:
    (tmp_path / "provenance.json").write_text(json.dumps(DOCUMENT))
    document = read_provenance(tmp_path)
    assert document == DOCUMENT
    brief = summary(document)
    assert brief == {
        "optimized_from_version": "1",
        "optimized_method": "dynamic INT8, per-channel QInt8 weights",
        "optimized_candidate": "dynamic_int8",
        "optimized_min_mean_cosine": "0.9989",
        "optimized_speedup": "1.8",
        "optimized_at": "2026-12-01T00:00:00+00:00",
    }
    assert index_note(brief) == "optimized from version 1 (dynamic_int8)"
    assert index_note(summary({"method": "x"})) == ""
    assert summary({"source_version": "v" * 1000})["optimized_from_version"] == "v" * 200


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", json.dumps({"pad": "x" * MAX_PROVENANCE_BYTES})])
def test_unusable_files_read_as_none(tmp_path: Path, content: str) -> None:
    (tmp_path / "provenance.json").write_text(content)
    assert read_provenance(tmp_path) is None


def test_a_version_without_provenance(tmp_path: Path) -> None:
    assert read_provenance(tmp_path) is None
    assert summary({"gate": "not a dict"}) == {}
