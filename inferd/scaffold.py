"""``inferd new-model``: write a working model directory (model, config.yaml and a test) to start from."""

from __future__ import annotations

import re
from pathlib import Path

PLATFORMS = ("python",)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")

_MODEL = '''"""{name}: a custom Python model served by inferd (platform: python)."""

from pathlib import Path

import numpy as np

from inferd import Model, Tensor


class {cls}(Model):
    # Shapes as the model's metadata shows them: the batch dimension first (-1) when it batches.
    inputs = [Tensor("text", "BYTES", [-1])]
    outputs = [Tensor("upper", "BYTES", [-1]), Tensor("length", "INT64", [-1])]
    max_batch_size = 64

    def load(self, path: Path) -> None:
        # Once per instance, with this version directory: read weights, vocabularies... from it.
        self.encoding = "utf-8"

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # A whole batch: one row per request row, requests merged by the server. BYTES tensors are
        # object arrays of bytes; return bytes or str for BYTES outputs.
        texts = [t.decode(self.encoding, errors="replace") for t in inputs["text"]]
        upper = np.array([t.upper().encode(self.encoding) for t in texts], dtype=object)
        length = np.array([len(t) for t in texts], dtype=np.int64)
        return {{"upper": upper, "length": length}}
'''

_CONFIG = """# Settings: docs/model-repository.md. The signature and max_batch_size come from model.py.
platform: python
instances: 1
dynamic_batching:
  max_queue_delay_ms: 1
"""

_TEST = '''"""Tests for {name}, run in-process without a server: pytest {test_path}"""

from pathlib import Path

import numpy as np
import pytest

from inferd import InvalidRequest, testing

VERSION = Path(__file__).parent / "1"


@pytest.fixture
def model():
    with testing.load(VERSION) as loaded:
        yield loaded


def test_declared_signature_holds(model) -> None:
    assert [spec.name for spec in model.signature.inputs] == ["text"]
    outputs = model.check_signature()
    assert outputs["length"].dtype == np.int64


def test_a_v2_request(model) -> None:
    outputs = model.infer([{{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["hi", "héllo"]}}])
    assert outputs["upper"].tolist() == [b"HI", "HÉLLO".encode()]
    assert outputs["length"].tolist() == [2, 5]


def test_requests_are_batched_into_one_predict(model) -> None:
    first, second = model.infer_batch([{{"text": ["a"]}}, {{"text": ["bc", "def"]}}])
    assert first["length"].tolist() == [1]
    assert second["length"].tolist() == [2, 3]


def test_a_wrong_request_is_refused(model) -> None:
    with pytest.raises(InvalidRequest):
        model.infer({{"words": ["a"]}})


def test_a_wrong_datatype_is_refused(model) -> None:
    with pytest.raises(InvalidRequest, match="expects datatype BYTES"):
        model.infer([{{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}}])
'''


def class_name(name: str) -> str:
    words = [w for w in re.split(r"[^A-Za-z0-9]+", name) if w]
    joined = "".join(w[:1].upper() + w[1:] for w in words) or "Custom"
    return joined if joined[0].isalpha() else f"Model{joined}"


def new_model(name: str, platform: str, repository: Path) -> list[Path]:
    """Write ``repository/name``; returns the files written. Refuses a name already taken."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"model name '{name}': use letters, digits, '_', '-' and '.', starting with a letter or digit"
        )
    if platform not in PLATFORMS:
        raise ValueError(f"platform '{platform}': new-model writes {', '.join(PLATFORMS)} models")
    model_dir = repository / name
    if model_dir.exists():
        raise ValueError(f"{model_dir} already exists")
    test_path = model_dir / f"test_{re.sub(r'[^A-Za-z0-9_]', '_', name)}.py"
    files = {
        model_dir / "1" / "model.py": _MODEL.format(name=name, cls=class_name(name)),
        model_dir / "config.yaml": _CONFIG,
        test_path: _TEST.format(name=name, test_path=test_path),
    }
    (model_dir / "1").mkdir(parents=True)
    for path, text in files.items():
        path.write_text(text)
    return list(files)
