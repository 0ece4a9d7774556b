"""Scale: supervisor RSS with 8 and 100 idle services, and 100 services all up / all down.

    python benchmarks/bench_supervisor_scale.py [--runs 3]

Each service is a stdlib Python script that listens at once on its port (TCP probe). "Up" is
from the start of `a3s up` until it reports the 100th service healthy; "down" from SIGINT
until `a3s up` has exited with every service stopped. RSS is the supervisor's VmRSS (its own
process only) once everything is healthy and the control API and the proxy (on a free port)
are loaded.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PY = str(Path(sys.base_prefix) / "bin" / "python3")
SERVICE = """\
import os, socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"]))); s.listen(64)
while True:
    c, _ = s.accept(); c.close()
"""


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run(a3s: str, folder: Path, n: int) -> tuple[float, float, float]:
    """(seconds to all healthy, seconds to all stopped after SIGINT, RSS MB when settled)."""
    ports = free_ports(n + 1)
    proxy = ports.pop()
    blocks = [f"dev {{\n  proxy_port = {proxy}\n}}\n"]
    blocks += [
        f'service "s{i}" {{\n  cmd  = "exec {PY} svc.py"\n  port = {p}\n}}\n'
        for i, p in enumerate(ports)
    ]
    (folder / "A3sfile.hcl").write_text("\n".join(blocks))
    healthy: list[float] = []
    stopped = threading.Event()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [a3s, "up", "--no-watch"],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "NO_COLOR": "1"},
    )

    def reader() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            if b"is healthy" in raw:
                healthy.append(time.perf_counter() - t0)
            if b"every service stopped" in raw:
                stopped.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        deadline = time.perf_counter() + 60
        while len(healthy) < n and time.perf_counter() < deadline:
            time.sleep(0.005)
        if len(healthy) < n:
            raise RuntimeError(f"only {len(healthy)} of {n} healthy after 60 s")
        up = healthy[-1]
        time.sleep(3.0)  # let the control API load and the probes settle into their interval
        rss = rss_mb(proc.pid)
        t1 = time.perf_counter()
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
        down = time.perf_counter() - t1
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    left = [p for p in ports if socket.socket().connect_ex(("127.0.0.1", p)) == 0]
    if left:
        raise RuntimeError(f"{len(left)} services still answer after down")
    return up, down, rss


def bare(folder: Path, n: int) -> float:
    """The floor on this machine: a bare stdlib loop spawning the same n services, until all answer."""
    ports = free_ports(n)
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [PY, "svc.py"], cwd=folder, env={**os.environ, "PORT": str(p)}, start_new_session=True
        )
        for p in ports
    ]
    try:
        pending = set(ports)
        while pending:
            pending = {p for p in pending if socket.socket().connect_ex(("127.0.0.1", p)) != 0}
            time.sleep(0.005)
        return time.perf_counter() - t0
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--a3s", default=str(Path(sys.executable).with_name("a3s")))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="a3s-bench-scale-") as tmp:
        folder = Path(tmp)
        (folder / "svc.py").write_text(SERVICE)
        for n in (8, 100):
            rows = [run(args.a3s, folder, n) for _ in range(args.runs)]
            up = statistics.median(r[0] for r in rows)
            down = statistics.median(r[1] for r in rows)
            rss = statistics.median(r[2] for r in rows)
            floor = statistics.median(bare(folder, n) for _ in range(args.runs))
            print(
                f"{n:3d} services: all healthy {up:.2f} s, all down {down:.2f} s, supervisor RSS {rss:.0f} MB "
                f"(median of {args.runs}; a bare stdlib spawn loop needs {floor:.2f} s until all answer)"
            )


if __name__ == "__main__":
    main()
