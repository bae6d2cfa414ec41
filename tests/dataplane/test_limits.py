"""Value checks on decoded inputs, including the BF16 words numpy cannot see as floats."""

from __future__ import annotations

import numpy as np
import pytest

from inferd.dataplane.limits import InputChecks, build_checks, check_inputs
from inferd.errors import InvalidRequest
from inferd.model_config import ModelConfig
from inferd.runtimes.base import Signature
from inferd.types import TensorSpec


def _checks(datatype: str, **config: object) -> InputChecks:
    signature = Signature(inputs=(TensorSpec("x", datatype, (-1,)),), outputs=(), max_batch_size=0)
    return build_checks(ModelConfig.model_validate(config), signature, 100, 10)


def test_bf16_nan_and_infinity_words_are_found() -> None:
    checks = _checks("BF16", limits={"allow_nan": False})
    check_inputs(checks, {"x": np.array([0x3F80, 0xBF80, 0x0000], np.uint16)})
    for word in (0x7FC0, 0x7F80, 0xFF80):  # NaN, +Inf, -Inf
        with pytest.raises(InvalidRequest, match="NaN or infinity"):
            check_inputs(checks, {"x": np.array([0x3F80, word], np.uint16)})


def test_ranges_refuse_nan_and_apply_to_integers() -> None:
    checks = _checks("INT32", inputs=[{"name": "x", "min": 0, "max": 9}])
    check_inputs(checks, {"x": np.arange(10, dtype=np.int32)})
    with pytest.raises(InvalidRequest, match="above its maximum 9"):
        check_inputs(checks, {"x": np.arange(11, dtype=np.int32)})
    float_checks = _checks("FP32", inputs=[{"name": "x", "min": 0}])
    with pytest.raises(InvalidRequest, match="below its minimum 0"):
        check_inputs(float_checks, {"x": np.array([1, np.nan], np.float32)})


def test_defaults_come_from_the_server_and_models_may_tighten_or_loosen_them() -> None:
    server_default = _checks("BYTES")
    assert (server_default.max_elements, server_default.max_bytes_length) == (100, 10)
    own = _checks("BYTES", limits={"max_elements": 5, "max_bytes_length": 0})
    assert (own.max_elements, own.max_bytes_length) == (5, 0)
    empty = np.empty(1, dtype=object)
    empty[0] = b""
    check_inputs(own, {"x": empty})
