"""The advisor's measurements with a real ONNX Runtime session: a verification that cannot hold its
SLO any more stops there, and the count of late requests it stops at is sure to make the p99 late."""

from __future__ import annotations

from pathlib import Path

import modelfactory as mf
import numpy as np
import pytest

from inferd.advise.measure import UNSERVED_S, Sessions, late_enough, random_feeder
from inferd.advise.search import Config, Layout


@pytest.mark.parametrize("count", [1, 2, 30, 50, 99, 100, 101, 1000, 20_000])
def test_late_enough_late_requests_make_the_p99_late_whatever_the_others(count: int) -> None:
    enough = late_enough(count)
    latencies = np.zeros(count)
    latencies[count - enough :] = 2.0  # late against an SLO of 1, the others at 0
    assert np.percentile(latencies, 99) > 1.0
    assert enough <= 0.01 * count + 2  # about the 1% a p99 allows: a miss is known early


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = mf.write_model(tmp_path_factory.mktemp("measure"), "mlp", mf.matmul_mlp)
    return directory / "1" / "model.onnx"


def test_a_verification_sure_to_miss_its_slo_stops_there(model: Path) -> None:
    config = Config(Layout(1, 1, 1), 4)
    # An SLO no execution meets: once late_enough(50) requests were answered, the p99 is known to
    # miss; the rest of the half second's arrivals are never served and count as unserved.
    sessions = Sessions({1: model}, random_feeder(model), verify_s=0.5, slo_s=1e-9)
    missed = sessions.verify(config, 100.0)
    assert missed.p99_s > 1e-9
    assert missed.p99_s > UNSERVED_S / 2  # most of the run was never served: it stopped early
    # Without an SLO the same run serves every request.
    complete = Sessions({1: model}, random_feeder(model), verify_s=0.5).verify(config, 100.0)
    assert complete.p99_s < UNSERVED_S / 2 and complete.throughput > 0
