"""`inferd profile`: check reference data against the model's signature and write its profile."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inferd.drift.profile import NUMERIC_DATATYPES, PROFILE_FILE, build_profile
from inferd.errors import InferdError
from inferd.model_config import load_model_config
from inferd.repository.source import MODEL_FILE
from inferd.runtimes.base import Signature
from inferd.runtimes.registry import create_runtime


def _signature(model_dir: Path) -> Signature:
    versions = sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        raise ValueError(f"{model_dir}: no version directory (expected e.g. {model_dir.name}/1/)")
    try:
        runtime = create_runtime(model_dir / str(versions[-1]) / MODEL_FILE, load_model_config(model_dir))
    except InferdError as exc:
        raise ValueError(exc.message) from None
    try:
        return runtime.signature
    finally:
        runtime.close()


def write_profile(model_dir: Path, data_path: Path, bins: int, max_features: int) -> Path:
    signature = _signature(model_dir)
    with np.load(data_path, allow_pickle=False) as archive:
        data = {name: archive[name] for name in archive.files}
    for name, array in data.items():
        spec = signature.input(name)
        if spec is None:
            expected = ", ".join(s.name for s in signature.inputs)
            raise ValueError(f"{data_path}: '{name}' is not an input of the model (inputs: {expected})")
        if spec.datatype not in NUMERIC_DATATYPES:
            raise ValueError(f"input '{name}' is {spec.datatype}: only numeric inputs are profiled")
        if array.dtype == object or not np.can_cast(array.dtype, np.float64, "same_kind"):
            raise ValueError(f"'{name}' in {data_path} is {array.dtype}, not numeric")
    profile = build_profile(data, signature.max_batch_size > 0, bins, max_features)
    path = model_dir / PROFILE_FILE
    profile.save(path)
    return path
