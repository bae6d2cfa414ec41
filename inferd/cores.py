"""How many CPU cores this process may really use, and each worker process's share of them.

``os.cpu_count()`` counts the machine; a container is bounded by its CPU affinity (cpuset) and by its
cgroup CPU quota (``--cpus``, a Kubernetes CPU limit), and ``inferd serve --workers N`` splits what is
left between N processes, so per-process thread pools (ONNX Runtime's intra-op pool, the tabular and
PyTorch runtimes') are sized from ``thread_budget()`` and N workers never oversubscribe the CPU.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")

# Worker processes sharing this machine's cores (set in each worker by inferd.workers; 1 otherwise).
_workers = 1


def affinity_cores() -> int:
    """Cores in this process's affinity mask (taskset, a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """CPUs allowed by the cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), the smallest
    along this process's cgroup path up to the root; None when there is no quota."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits: list[float] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2 unified hierarchy
            limits += _walk(root, path, _v2_limit)
        elif "cpu" in controllers.split(","):
            for mount in (root / controllers, root / "cpu", root / "cpu,cpuacct"):
                if mount.is_dir():
                    limits += _walk(mount, path, _v1_limit)
                    break
    return min(limits) if limits else None


def _walk(mount: Path, path: str, read: Callable[[Path], float | None]) -> list[float]:
    found = []
    parts = [p for p in path.split("/") if p]
    for depth in range(len(parts), -1, -1):
        limit = read(mount.joinpath(*parts[:depth]))
        if limit is not None:
            found.append(limit)
    return found


def _v2_limit(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _v1_limit(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def usable_cores() -> int:
    """Whole cores this process may keep busy: its affinity, lowered to the cgroup quota (rounded
    down, at least 1: a quota of 1.5 CPUs keeps one core busy without being throttled)."""
    cores = affinity_cores()
    quota = cgroup_cpu_limit()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return cores


def set_worker_count(workers: int) -> None:
    global _workers
    _workers = max(1, workers)


def thread_budget() -> int:
    """Threads one process's model instances may share: the usable cores over the worker count."""
    return max(1, usable_cores() // _workers)


# More workers than this is a typo, not a machine (each holds its own copy of every model).
MAX_WORKERS = 1024


def resolve_workers(value: str) -> int:
    """``--workers``: a positive count, or ``auto``: one per usable core."""
    if value.strip().lower() == "auto":
        return usable_cores()
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"expected a number of worker processes or 'auto', got {value!r}") from None
    if not 1 <= count <= MAX_WORKERS:
        raise ValueError(f"expected between 1 and {MAX_WORKERS} worker processes, got {count}")
    return count
