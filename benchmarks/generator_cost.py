"""What the bench generator itself costs: CPU microseconds per request, by protocol and concurrency.

Starts inferd on the example mlp model, runs `inferd bench` closed-loop sweeps over REST binary, REST
JSON and gRPC, and prints the generator's CPU time per request (its own process, all threads). CPU
time is what the generator takes from the server on a shared machine; unlike throughput it changes
little when other jobs load the machine.

    python benchmarks/generator_cost.py --duration 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,8")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "models"
        subprocess.run(
            [sys.executable, "-m", "inferd", "examples", "build", str(repo)], check=True, capture_output=True
        )
        port_file = Path(tmp) / "ports.json"
        server = subprocess.Popen(
            [sys.executable, "-m", "inferd", "serve", str(repo), "--http-port", "0", "--grpc-port", "0",
             "--port-file", str(port_file), "--log-level", "warning"],
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not port_file.exists():
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit("inferd did not start")
                time.sleep(0.1)
            ports = json.loads(port_file.read_text())
            targets = [
                ("REST binary", f"http://127.0.0.1:{ports['http']}", "binary"),
                ("REST JSON", f"http://127.0.0.1:{ports['http']}", "json"),
                ("gRPC", f"grpc://127.0.0.1:{ports['grpc']}", "binary"),
            ]
            print(f"{'protocol':<12} {'c':>3} {'req/s':>8} {'gen CPU':>8} {'us/request':>10}")
            for name, url, encoding in targets:
                out = subprocess.run(
                    [sys.executable, "-m", "inferd", "bench", url, "-m", "mlp", "--encoding", encoding,
                     "--concurrency", args.concurrency, "--duration", f"{args.duration:g}", "--warmup", "0.5",
                     "--no-progress", "--json", "-"],
                    capture_output=True, text=True, check=True,
                ).stdout  # fmt: skip
                for run in json.loads(out)["runs"]:
                    generator = run["generator"]
                    # cpu_s covers warm-up and window alike; divide by the requests sent in that time
                    requests = run["requests_per_s"] * generator["wall_s"]
                    per_request = generator["cpu_s"] / requests * 1e6 if requests else float("nan")
                    print(
                        f"{name:<12} {run['concurrency']:>3} {run['requests_per_s']:>8.0f} "
                        f"{generator['cpu_cores'] * 100:>7.0f}% {per_request:>10.0f}"
                    )
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
