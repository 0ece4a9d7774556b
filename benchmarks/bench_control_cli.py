"""Control-plane speed: `a3s status` cold wall time, `a3s logs -f` line latency, `a3s up -d` overhead.

    python benchmarks/bench_control_cli.py [--services 8] [--runs 20]

Everything runs against a stack of N stdlib HTTP services written into a temp folder
(proxy off). The bars (issue 4): status median <= 100 ms with 8 services running in a
background supervisor; logs -f p95 <= 100 ms; up -d <= 150 ms more than the foreground's
time to healthy (both measured from the moment the command is started).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

A3S = [sys.executable, "-m", "a3s_dev"]
SERVICE = """
import http.server, os, sys, time
name = os.environ["A3S_SERVICE"]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        # The line carries its own emission time, for the logs -f latency figure.
        print(f"{name} emitted {time.time():.6f}", flush=True)
        self.send_response(204)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_stack(folder: Path, n: int) -> list[str]:
    (folder / "server.py").write_text(SERVICE)
    blocks = ['dev {\n  proxy_port = 0\n  stop_timeout = "2s"\n}\n']
    names = [f"svc{i}" for i in range(n)]
    for i, name in enumerate(names):
        dep = f'  depends_on = ["{names[i // 2]}"]\n' if i else ""  # a small tree, 3-4 waves
        blocks.append(
            f'service "{name}" {{\n  cmd = "exec {sys.executable} server.py"\n'
            f"  port = {free_port()}\n{dep}}}\n"
        )
    (folder / "A3sfile.hcl").write_text("\n".join(blocks))
    return names


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("A3S_")}
    e["NO_COLOR"] = "1"
    return e


def run(folder: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*A3S, *args], cwd=folder, env=env(), capture_output=True, text=True, timeout=120, check=False
    )
    if check and proc.returncode != 0:
        raise SystemExit(f"a3s {' '.join(args)} failed: {proc.stderr}")
    return proc


def a3s_binary() -> list[str]:
    """The console script (what a user runs), else `python -m a3s_dev`."""
    found = shutil.which("a3s", path=str(Path(sys.executable).parent))
    return [found] if found else A3S


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def bench_status(folder: Path, runs: int) -> None:
    run(folder, "up", "-d")
    cmd = [*a3s_binary(), "status"]
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, cwd=folder, env=env(), stdout=subprocess.DEVNULL, check=True)
        times.append((time.perf_counter() - t) * 1000)
    json_times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(
            [*cmd, "--json"], cwd=folder, env=env(), stdout=subprocess.DEVNULL, check=True
        )
        json_times.append((time.perf_counter() - t) * 1000)
    print(
        f"status (8 running, piped)   median {statistics.median(times):6.1f} ms   p95 {pct(times, 95):6.1f} ms"
    )
    print(
        f"status --json               median {statistics.median(json_times):6.1f} ms   "
        f"p95 {pct(json_times, 95):6.1f} ms"
    )


def bench_logs(folder: Path, names: list[str], lines: int) -> None:
    rows = json.loads(run(folder, "status", "--json").stdout)
    port = next(r["port"] for r in rows if r["name"] == names[-1])
    follower = subprocess.Popen(
        [*a3s_binary(), "logs", "-f", "-n", "0", names[-1]],
        cwd=folder,
        env=env(),
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    latencies: list[float] = []
    seen = threading.Event()

    def read() -> None:
        assert follower.stdout is not None
        for line in follower.stdout:
            now = time.time()
            if " emitted " in line:
                latencies.append((now - float(line.rsplit(" ", 1)[1])) * 1000)
                seen.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        # The first request is only to know the follower is attached.
        deadline = time.monotonic() + 30
        while not seen.is_set() and time.monotonic() < deadline:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
            seen.wait(0.2)
        latencies.clear()
        for _ in range(lines):
            seen.clear()
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
            seen.wait(5)
            time.sleep(0.01)
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(10)
    print(
        f"logs -f line latency ({len(latencies)} lines) median {statistics.median(latencies):6.1f} ms   "
        f"p95 {pct(latencies, 95):6.1f} ms"
    )


def time_foreground(folder: Path, names: list[str]) -> float:
    """From starting `a3s up` to its 'healthy' line for the last service of the last wave."""
    t = time.perf_counter()
    proc = subprocess.Popen(
        [*a3s_binary(), "up"],
        cwd=folder,
        env=env(),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    healthy: set[str] = set()
    elapsed = float("nan")
    assert proc.stdout is not None
    for line in proc.stdout:
        if "is healthy" in line:
            healthy.add(line.split("|", 1)[1].split()[0])
            if healthy >= set(names):
                elapsed = (time.perf_counter() - t) * 1000
                break
    os.killpg(proc.pid, signal.SIGINT)
    proc.communicate(timeout=30)
    return elapsed


def time_background(folder: Path) -> float:
    t = time.perf_counter()
    subprocess.run(
        [*a3s_binary(), "up", "-d"], cwd=folder, env=env(), stdout=subprocess.DEVNULL, check=True
    )
    elapsed = (time.perf_counter() - t) * 1000
    run(folder, "down")
    return elapsed


def bench_up(folder: Path, names: list[str], runs: int) -> None:
    fg, bg = [], []
    for _ in range(runs):
        fg.append(time_foreground(folder, names))
        bg.append(time_background(folder))
    f, b = statistics.median(fg), statistics.median(bg)
    print(
        f"time to healthy: foreground median {f:6.1f} ms, up -d median {b:6.1f} ms, overhead {b - f:+6.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=8)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--lines", type=int, default=100)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="a3s-bench-"))
    names = write_stack(folder, args.services)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{args.services} services in {folder}; {os.cpu_count()} cores; load average {load}")
    try:
        bench_status(folder, args.runs)
        bench_logs(folder, names, args.lines)
        run(folder, "down")
        bench_up(folder, names, max(3, args.runs // 4))
    finally:
        run(folder, "down", check=False)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
