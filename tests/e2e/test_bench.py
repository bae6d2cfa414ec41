"""``inferd bench`` end to end: each scenario for a second or so against the real inferd of this session.

Nothing here asserts on speed: only that every scenario measures, counts and reports consistently.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from serverctl import RunningServer

SHORT = ["--duration", "1", "--warmup", "0.2", "--no-progress"]


def bench(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "inferd", "bench", *args], capture_output=True, text=True, timeout=120
    )
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def bench_json(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "out.json"
    done = bench(*args, *SHORT, "--json", str(out))
    assert "p99 ms" in done.stdout  # the table went to stdout as well
    document: dict[str, Any] = json.loads(out.read_text())
    return document


def check_run(run: dict[str, Any], rows: int = 1) -> None:
    assert run["errors"] == {}
    assert run["requests_ok"] > 0
    assert run["requests_sent"] == run["requests_ok"]
    assert run["rows_per_request"] == rows
    assert run["inferences_per_s"] == pytest.approx(run["requests_per_s"] * rows)
    latency = run["latency_ms"]
    ordered = [latency[k] for k in ("min", "p50", "p90", "p95", "p99", "p99.9", "max")]
    assert ordered == sorted(ordered) and ordered[0] > 0
    generator = run["generator"]
    assert generator["cpu_s"] > 0 and generator["wall_s"] > 0
    server = run["server"]  # inferd serves the statistics extension
    assert server is not None and server["requests"] > 0
    assert server["queue_ms"] >= 0 and server["compute_ms"] > 0


def test_single_stream_rest_binary(server: RunningServer, tmp_path: Path) -> None:
    document = bench_json(tmp_path, f"http://{server.http_url}", "-m", "simple", "--price-per-hour", "0.34")
    assert document["scenario"] == "single-stream" and document["encoding"] == "binary"
    assert document["inputs"] == [
        {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16]},
        {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16]},
    ]
    (run,) = document["runs"]
    check_run(run)
    assert run["concurrency"] == 1
    assert run["cost_per_1000_inferences_usd"] == pytest.approx(0.34 / 3.6 / run["inferences_per_s"])


def test_server_scenario_grpc(server: RunningServer, tmp_path: Path) -> None:
    args = ("-m", "simple", "--rate", "100,200", "--goodput-ms", "60000")
    document = bench_json(tmp_path, f"grpc://{server.grpc_url}", *args)
    assert document["scenario"] == "server" and document["protocol"] == "grpc"
    assert [r["offered_rate"] for r in document["runs"]] == [100, 200]
    for run in document["runs"]:
        check_run(run)
        assert run["generator"]["send_lag_ms"]["p50"] >= 0
        # Every answer came within a minute: goodput is every success scheduled in the window.
        assert run["goodput_within_ms"] == 60000
        assert run["goodput_per_s"] == pytest.approx(run["requests_ok"] / run["window_s"])


def test_offline_rest_json_with_dynamic_dims(server: RunningServer, tmp_path: Path) -> None:
    document = bench_json(
        tmp_path, f"http://{server.http_url}", "-m", "dynamic", "--scenario", "offline",
        "-b", "8", "--shape", "INPUT0:5", "--encoding", "json",
    )  # fmt: skip
    assert document["inputs"] == [{"name": "INPUT0", "datatype": "FP32", "shape": [8, 5]}]
    (run,) = document["runs"]
    check_run(run, rows=8)
    assert run["concurrency"] == 2


def test_concurrency_sweep_with_plot_and_two_processes(server: RunningServer, tmp_path: Path) -> None:
    plot = tmp_path / "sweep.png"
    document = bench_json(
        tmp_path, f"http://{server.http_url}", "-m", "simple", "--concurrency", "1,4",
        "--processes", "2", "--plot", str(plot),
    )  # fmt: skip
    assert [r["concurrency"] for r in document["runs"]] == [1, 4]
    for run in document["runs"]:
        check_run(run)
    assert document["runs"][1]["generator"]["processes"] == 2
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_slo_search(server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "slo.json"
    bench(
        f"grpc://{server.grpc_url}", "-m", "simple", "--slo-p99-ms", "50", "--slo-tolerance", "0.5",
        "--duration", "0.5", "--warmup", "0.1", "--no-progress", "--json", str(out),
    )  # fmt: skip
    document = json.loads(out.read_text())
    search = document["slo_search"]
    assert search["slo_ms"] == 50 and search["percentile"] == 99
    assert search["probes"] and len(search["probes"]) == len(document["runs"])
    for probe in search["probes"]:
        assert probe["passed"] == (probe["latency_ms"] is not None and probe["latency_ms"] <= 50)
    passed = [p["rate"] for p in search["probes"] if p["passed"]]
    assert search["max_rate"] == (max(passed) if passed else None)


def test_json_to_stdout_with_perf_analyzer_flags(server: RunningServer) -> None:
    # perf_analyzer's -i grpc with a bare host:port, -p in milliseconds
    done = bench(server.grpc_url, "-i", "grpc", "-m", "simple", *SHORT, "-p", "500", "--json", "-")
    document = json.loads(done.stdout)
    assert document["protocol"] == "grpc"
    assert document["runs"][0]["requests_ok"] > 0
    assert document["runs"][0]["window_s"] == 0.5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "no_such_model"], "no_such_model"),
        (["-m", "dynamic"], "--shape INPUT0"),
        (["-m", "simple", "--scenario", "server"], "needs --rate"),
        (["-m", "simple", "--instance-type", "z9.huge"], "no price known"),
        (["-m", "simple", "-i", "grpc"], "contradicts the URL"),
    ],
)
def test_errors_are_clear(server: RunningServer, args: list[str], message: str) -> None:
    done = bench(f"http://{server.http_url}", *args, *SHORT, check=False)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_server_is_a_clear_error() -> None:
    done = bench("http://127.0.0.1:1", "-m", "m", *SHORT, check=False)
    assert done.returncode != 0 and "cannot reach" in done.stderr
