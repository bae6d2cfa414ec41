"""Usable cores and worker counts: CPU affinity and the cgroup CPU quota, not os.cpu_count()."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inferd.cores import cgroup_cpu_limit, resolve_workers


def _cores_under_taskset(cpus: str) -> int:
    code = "from inferd.cores import resolve_workers, thread_budget; print(resolve_workers('auto'))"
    output = subprocess.run(
        ["taskset", "-c", cpus, sys.executable, "-c", code], check=True, capture_output=True, text=True
    )
    return int(output.stdout)


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) is not installed")
def test_workers_auto_follows_the_affinity_mask() -> None:
    first = min(os.sched_getaffinity(0))
    assert _cores_under_taskset(str(first)) == 1
    if len(os.sched_getaffinity(0)) > 1:
        second = sorted(os.sched_getaffinity(0))[1]
        assert _cores_under_taskset(f"{first},{second}") == 2


def test_workers_count_is_checked() -> None:
    assert resolve_workers("3") == 3
    assert resolve_workers("AUTO") >= 1
    for bad in ("0", "-1", "two", "100000"):
        with pytest.raises(ValueError):
            resolve_workers(bad)


def test_cgroup_v2_quota_is_the_smallest_on_the_path(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("0::/kubepods/pod1/container\n")
    (tmp_path / "fs" / "kubepods" / "pod1" / "container").mkdir(parents=True)
    (tmp_path / "fs" / "cpu.max").write_text("max 100000\n")
    (tmp_path / "fs" / "kubepods" / "pod1" / "cpu.max").write_text("250000 100000\n")
    (tmp_path / "fs" / "kubepods" / "pod1" / "container" / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path / "fs", proc) == 2.5


def test_cgroup_v1_quota_and_no_quota(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/x\n2:cpu,cpuacct:/docker/abc\n")
    group = tmp_path / "fs" / "cpu,cpuacct" / "docker" / "abc"
    group.mkdir(parents=True)
    (group / "cpu.cfs_quota_us").write_text("150000\n")
    (group / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path / "fs", proc) == 1.5
    (group / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(tmp_path / "fs", proc) is None
    assert cgroup_cpu_limit(tmp_path / "fs", tmp_path / "absent") is None


def test_onnx_runtime_threads_are_the_workers_share_of_the_cores() -> None:
    from inferd.cores import set_worker_count, usable_cores
    from inferd.model_config import OnnxRuntimeOptions
    from inferd.runtimes.onnx import _session_options

    try:
        for workers in (1, 2, 64):
            set_worker_count(workers)
            for instances in (1, 2):
                threads = _session_options(OnnxRuntimeOptions(), instances).intra_op_num_threads
                assert threads == max(1, usable_cores() // workers // instances)
                assert workers * instances * threads <= max(usable_cores(), workers * instances)
    finally:
        set_worker_count(1)
