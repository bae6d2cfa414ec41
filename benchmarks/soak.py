"""Soak: sustained mixed load for a long time; the server's RSS must stay flat and no request may fail.

Load (all at once, for --duration seconds):
  wrk           REST JSON on `tabular`, fixed body, --wrk-connections connections (if wrk is installed)
  threads       REST JSON with fresh random inputs (tabular); REST binary and gRPC on `mlp`;
                `mlp_cached` (response_cache: true) with fresh inputs (misses that churn a small LRU)
                and a repeated one (hits); malformed requests that must get 400
RSS of the server process is sampled every --sample seconds from /proc. After --warmup seconds the
sample is the baseline; the run passes when the last sample is within --max-growth percent of it and
no request got an unexpected answer.

    PYTHONPATH=. python benchmarks/soak.py [--duration 600] [--warmup 60]

Not part of the test suite. Writes benchmarks/results/soak.json (or --out).
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from inferd.examples import build_repository

HERE = Path(__file__).resolve().parent


@dataclass
class Counters:
    requests: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, kind: str, ok: bool) -> None:
        with self.lock:
            self.requests[kind] = self.requests.get(kind, 0) + 1
            if not ok:
                self.errors[kind] = self.errors.get(kind, 0) + 1


def _rss_kib(pid: int) -> int:
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(match.group(1)) if match else 0


def _json_body(name: str, rows: np.ndarray) -> bytes:
    document = {
        "inputs": [
            {"name": name, "datatype": "FP32", "shape": list(rows.shape), "data": rows.ravel().tolist()}
        ]
    }
    return json.dumps(document).encode()


def _rest_worker(port: int, stop: threading.Event, counters: Counters, kind: str, make: object) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    rng = np.random.default_rng(hash(kind) % 2**32)
    while not stop.is_set():
        path, body, headers, expected = make(rng)  # type: ignore[operator]
        try:
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            response.read()
            counters.count(kind, response.status == expected)
        except (OSError, http.client.HTTPException):
            counters.count(kind, False)
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)


def _tabular(rng: np.random.Generator) -> tuple[str, bytes, dict[str, str], int]:
    return (
        "/v2/models/tabular/infer",
        _json_body("input", rng.standard_normal((1 + int(rng.integers(4)), 30))),
        {},
        200,
    )


def _mlp_binary(rng: np.random.Generator) -> tuple[str, bytes, dict[str, str], int]:
    rows = rng.standard_normal((1, 256)).astype(np.float32)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [1, 256],
                    "parameters": {"binary_data_size": rows.nbytes},
                }
            ],
            "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return (
        "/v2/models/mlp/infer",
        head + rows.tobytes(),
        {"Inference-Header-Content-Length": str(len(head))},
        200,
    )


_REPEATED = _json_body("input", np.ones((1, 256), np.float32))


def _cached(rng: np.random.Generator) -> tuple[str, bytes, dict[str, str], int]:
    fresh = rng.random() < 0.5
    body = _json_body("input", rng.standard_normal((1, 256))) if fresh else _REPEATED
    return "/v2/models/mlp_cached/infer", body, {}, 200


_BAD = [
    b"{",
    b'{"inputs":[{"name":"input","datatype":"FP32","shape":[0,99999999999],"data":[]}]}',
    b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1,30],"data":[1]}]}',
    b'{"inputs":[{"name":"nope","datatype":"FP32","shape":[1,30],"data":[]}]}',
]


def _malformed(rng: np.random.Generator) -> tuple[str, bytes, dict[str, str], int]:
    return "/v2/models/tabular/infer", _BAD[int(rng.integers(len(_BAD)))], {}, 400


def _grpc_worker(port: int, stop: threading.Event, counters: Counters) -> None:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    rng = np.random.default_rng(7)
    while not stop.is_set():
        tensor = grpcclient.InferInput("input", [1, 256], "FP32")
        tensor.set_data_from_numpy(rng.standard_normal((1, 256)).astype(np.float32))
        try:
            ok = client.infer("mlp", [tensor]).as_numpy("logits").shape == (1, 10)
        except Exception:
            ok = False
        counters.count("grpc mlp", ok)


def _wrk(port: int, duration: int, connections: int, work: Path) -> subprocess.Popen[str] | None:
    if not shutil.which("wrk"):
        return None
    body = work / "tabular.json"
    body.write_bytes(_json_body("input", np.zeros((1, 30))))
    script = work / "post.lua"
    script.write_text(
        f'wrk.method = "POST"\nlocal f = io.open("{body}", "rb")\nwrk.body = f:read("*a")\nf:close()\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    url = f"http://127.0.0.1:{port}/v2/models/tabular/infer"
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s", str(script), url]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=60)
    parser.add_argument("--sample", type=float, default=5.0)
    parser.add_argument("--max-growth", type=float, default=5.0)
    parser.add_argument("--wrk-connections", type=int, default=4)
    # Small, so the LRU is full (and evicting) well before the warm-up ends: a filling cache is not a leak.
    parser.add_argument("--cache-bytes", type=int, default=2**20)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "soak.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        repository = work / "models"
        build_repository(repository)
        shutil.copytree(repository / "mlp", repository / "mlp_cached")
        config = repository / "mlp_cached" / "config.yaml"
        config.write_text(config.read_text() + "response_cache: true\n")
        port_file = work / "ports.json"
        server = subprocess.Popen(
            [sys.executable, "-m", "inferd", "serve", str(repository), "--http-port", "0", "--grpc-port", "0",
             "--port-file", str(port_file), "--cache-bytes", str(args.cache_bytes)],
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("inferd did not start")
            time.sleep(0.05)
        ports = json.loads(port_file.read_text())
        stop = threading.Event()
        counters = Counters()
        workers = [
            threading.Thread(
                target=_rest_worker, args=(ports["http"], stop, counters, kind, make), daemon=True
            )
            for kind, make in (
                ("rest json tabular", _tabular),
                ("rest binary mlp", _mlp_binary),
                ("rest cached mlp", _cached),
                ("rest malformed", _malformed),
            )
        ]
        workers.append(
            threading.Thread(target=_grpc_worker, args=(ports["grpc"], stop, counters), daemon=True)
        )
        wrk = _wrk(ports["http"], args.duration, args.wrk_connections, work)
        for worker in workers:
            worker.start()
        start = time.monotonic()
        samples: list[tuple[float, int]] = []
        while (elapsed := time.monotonic() - start) < args.duration:
            samples.append((round(elapsed, 1), _rss_kib(server.pid)))
            print(
                f"{elapsed:6.0f} s  RSS {samples[-1][1] / 1024:7.1f} MiB  "
                f"requests {sum(counters.requests.values())}",
                flush=True,
            )
            time.sleep(args.sample)
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
        samples.append((round(time.monotonic() - start, 1), _rss_kib(server.pid)))
        wrk_output = wrk.communicate()[0] if wrk else ""
        server.terminate()
        exit_code = server.wait(timeout=60)

    wrk_requests = re.search(r"(\d+) requests in", wrk_output)
    wrk_errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", wrk_output))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", wrk_output
    )
    if socket_errors:
        wrk_errors += sum(int(n) for n in socket_errors.groups())
    if wrk:
        counters.requests["wrk rest json tabular"] = int(wrk_requests.group(1)) if wrk_requests else 0
        counters.errors["wrk rest json tabular"] = wrk_errors
    baseline = next(rss for t, rss in samples if t >= args.warmup)
    final = samples[-1][1]
    growth = 100.0 * (final - baseline) / baseline
    report = {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rss_baseline_mib": round(baseline / 1024, 1),
        "rss_final_mib": round(final / 1024, 1),
        "rss_max_mib": round(max(rss for _, rss in samples) / 1024, 1),
        "rss_growth_pct": round(growth, 2),
        "requests": counters.requests,
        "errors": counters.errors,
        "server_exit_code": exit_code,
        "samples": samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=1))
    failed = growth >= args.max_growth or any(counters.errors.values()) or exit_code != 0
    print("FAIL" if failed else "PASS", f"(RSS growth {growth:.2f}% after warm-up; limit {args.max_growth}%)")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
