"""c=1 over REST JSON, several servers running at once, wrk alternated between them round after round.

On a shared machine the floor's own p50 moves more between runs minutes apart than a change of 15-30
µs, so overhead.py (each server in turn) cannot show one. Here every server runs for the whole
measurement and each round visits all of them (order reversed every other round); it reports the
median of the rounds' p50s and the server's CPU per request (its /proc stat over the round).

    python benchmarks/alternate_c1.py --rounds 10 --duration 2 floor=floor main=../main branch=.

Each target is NAME=floor (benchmarks/floor_server.py, one process per model) or NAME=TREE (a checkout
with a .venv, served as `python -m inferd serve` with its code). Needs wrk.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import overhead  # noqa: E402  (its request bodies and free ports)

from inferd.examples import build_repository  # noqa: E402


def _cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _wait_ready(url: str, body: bytes) -> None:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(request, timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@contextlib.contextmanager
def _started(
    target: str, repository: Path, models: list[str], log: Path
) -> Iterator[tuple[list[int], dict[str, str]]]:
    processes = []
    urls = {}
    try:
        if target == "floor":
            for model in models:
                port = overhead.free_port()
                command = [sys.executable, str(HERE / "floor_server.py"),
                           str(repository / model / "1" / "model.onnx"), "--port", str(port)]  # fmt: skip
                processes.append(subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT))
                urls[model] = f"http://127.0.0.1:{port}/"
        else:
            tree = Path(target).resolve()
            port = overhead.free_port()
            command = [str(tree / ".venv" / "bin" / "python"), "-m", "inferd", "serve", str(repository),
                       "--http-port", str(port), "--grpc-port", str(overhead.free_port()),
                       "--log-level", "warning"]  # fmt: skip
            env = dict(os.environ, PYTHONPATH=str(tree))
            processes.append(
                subprocess.Popen(command, cwd=tree, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
            )
            urls = {model: f"http://127.0.0.1:{port}/v2/models/{model}/infer" for model in models}
        for model, url in urls.items():
            _wait_ready(url, overhead.json_body(overhead.FEATURES[model]))
        yield [p.pid for p in processes], urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def _wrk(url: str, script: Path, duration: int) -> tuple[float, int]:
    """p50 in µs and the number of requests."""
    command = ["wrk", "-t1", "-c1", f"-d{duration}s", "--latency", "-s", str(script), url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", out)
    count = re.search(r"(\d+) requests in", out)
    assert p50 is not None and count is not None, out
    scale = {"us": 1, "ms": 1e3, "s": 1e6}[p50.group(2)]
    return float(p50.group(1)) * scale, int(count.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("targets", nargs="+", help="NAME=floor or NAME=TREE")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--duration", type=int, default=2, help="seconds per wrk run")
    parser.add_argument("--models", default="tabular,mlp")
    args = parser.parse_args()
    models = args.models.split(",")
    work = Path(tempfile.mkdtemp(prefix="inferd-alternate-"))
    repository = work / "models"
    build_repository(repository)
    scripts = {}
    for model in models:
        body = work / f"{model}.json"
        body.write_bytes(overhead.json_body(overhead.FEATURES[model]))
        scripts[model] = work / f"{model}.lua"
        scripts[model].write_text(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f'local f = io.open("{body}", "rb"); wrk.body = f:read("*a"); f:close()\n'
        )
    with contextlib.ExitStack() as stack:
        servers = {}
        for spec in args.targets:
            name, _, target = spec.partition("=")
            servers[name] = stack.enter_context(_started(target, repository, models, work / f"{name}.log"))
        for model in models:  # warm-up
            for _, urls in servers.values():
                _wrk(urls[model], scripts[model], 1)
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        start = time.strftime("%H:%M:%S", time.gmtime())
        load = [os.getloadavg()]
        for round_ in range(args.rounds):
            names = list(servers) if round_ % 2 == 0 else list(reversed(servers))
            for model in models:
                for name in names:
                    pids, urls = servers[name]
                    cpu = _cpu_s(pids)
                    p50, count = _wrk(urls[model], scripts[model], args.duration)
                    cpu_us = (_cpu_s(pids) - cpu) * 1e6 / max(1, count)
                    results.setdefault((name, model), []).append((p50, cpu_us))
            load.append(os.getloadavg())
    end = time.strftime("%H:%M:%S", time.gmtime())
    low, high = min(x[0] for x in load), max(x[0] for x in load)
    print(f"{start}-{end} UTC, load average (1 min) {low:.2f}-{high:.2f}")
    for model in models:
        for name in servers:
            rounds = results[(name, model)]
            p50 = statistics.median(r[0] for r in rounds)
            cpu_us = statistics.median(r[1] for r in rounds)
            print(f"{model:8} {name:10} p50 {p50:7.0f} µs  CPU {cpu_us:6.0f} µs/request  "
                  f"rounds {[round(r[0]) for r in rounds]}")  # fmt: skip


if __name__ == "__main__":
    main()
