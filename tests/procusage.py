"""CPU time and peak memory a server process spends on something, read from /proc (Linux)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Usage:
    cpu_s: float = 0.0
    # Growth of the peak resident set over the resident set at the start.
    peak_growth_mb: float = 0.0


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime, all threads


def _status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/status")


@contextmanager
def measured(pid: int) -> Iterator[Usage]:
    """Measure the process over the block. CPU time, unlike wall time, barely depends on how busy
    the machine is; the peak is reset first (clear_refs 5), so earlier work does not hide it."""
    with open(f"/proc/{pid}/clear_refs", "w") as clear:
        clear.write("5")
    start_rss = _status_kb(pid, "VmRSS")
    start_cpu = _cpu_s(pid)
    usage = Usage()
    yield usage
    usage.cpu_s = _cpu_s(pid) - start_cpu
    usage.peak_growth_mb = (_status_kb(pid, "VmHWM") - start_rss) / 1024
