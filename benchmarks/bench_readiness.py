"""Readiness (SPEC §5, issue 13): how soon a ready service is seen ready, per probe kind; how
hard a never-ready service is probed; the fullstack example's up -d and down.

    python benchmarks/bench_readiness.py [--runs 10] [--sick 60] [--no-fullstack]

- Each service becomes ready 0.3 s after its spawn and writes the wall clock of that moment;
  the figure is the supervisor's RUNNING event minus it. Targets: http/tcp <= 100 ms, cmd
  <= 200 ms, log <= 20 ms (median of --runs).
- A service whose /health answers 500 for --sick seconds: the probes it got after the first
  10 s, against the bound of one per `interval` (2 s).
- examples/fullstack (needs postgresql, redis-server, psycopg, redis-py): `a3s up -d` to all
  healthy, and `a3s down`, wall time.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from a3s_dev.config.model import DevConfig, HealthConfig, ProbeKind, ServiceDef
from a3s_dev.core.events import StateChanged
from a3s_dev.core.state import ServiceState
from a3s_dev.core.supervisor import Supervisor

ROOT = Path(__file__).resolve().parents[1]

SERVICE = """
import http.server, os, sys, time
time.sleep(0.3)
kind = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open("hits", "a") as f:
            f.write(f"{time.time()}\\n")
        code = 500 if kind == "sick" else 200
        self.send_response(code); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(os.environ.get("PORT", "0"))), H) if kind in ("http", "tcp", "sick") else None
open("ready-at", "w").write(repr(time.time()))
if kind == "cmd":
    open("ready", "w").write("")
if kind == "log":
    print("ready to serve", flush=True)
if server:
    server.serve_forever()
time.sleep(600)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def health(kind: str) -> HealthConfig:
    if kind == "http" or kind == "sick":
        return HealthConfig(type=ProbeKind.HTTP, path="/health")
    if kind == "tcp":
        return HealthConfig(type=ProbeKind.TCP)
    if kind == "cmd":
        return HealthConfig(type=ProbeKind.CMD, command="test -f ready")
    return HealthConfig(type=ProbeKind.LOG, pattern="ready to serve")


async def seen_ready(kind: str, folder: Path) -> float:
    """Seconds from the service being ready to the supervisor saying so."""
    (folder / "svc.py").write_text(SERVICE)
    for leftover in ("ready", "ready-at", "hits"):
        (folder / leftover).unlink(missing_ok=True)
    port = free_port() if kind in ("http", "tcp") else None
    svc = ServiceDef(kind, f"exec {sys.executable} svc.py {kind}", folder, port=port, health=health(kind))
    sup = Supervisor(DevConfig(path=folder / "A3sfile.hcl", services=(svc,)))
    ready: list[float] = []
    sup.bus.subscribe(lambda e: ready.append(e.at) if isinstance(e, StateChanged) and e.new is ServiceState.RUNNING else None)
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        await sup.start()
        with anyio.fail_after(30):
            while not ready:
                await anyio.sleep(0.005)
        await sup.shutdown()
    return ready[0] - float((folder / "ready-at").read_text())


async def sick_probes(folder: Path, seconds: float) -> tuple[int, int]:
    """(probes in the first 10 s, probes after them) of a service whose /health answers 500."""
    (folder / "svc.py").write_text(SERVICE)
    (folder / "hits").unlink(missing_ok=True)
    port = free_port()
    svc = ServiceDef("sick", f"exec {sys.executable} svc.py sick", folder, port=port, health=health("sick"))
    sup = Supervisor(DevConfig(path=folder / "A3sfile.hcl", services=(svc,)))
    began = time.time()
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        await sup.start()
        await anyio.sleep(seconds)
        await sup.shutdown()
    hits = [float(x) for x in (folder / "hits").read_text().split()] if (folder / "hits").exists() else []
    return sum(1 for h in hits if h - began < 10.0), sum(1 for h in hits if h - began >= 10.0)


def fullstack() -> tuple[float, float] | None:
    try:
        import psycopg  # noqa: F401
        import redis  # noqa: F401
    except ImportError:
        return None
    if not shutil.which("redis-server"):
        return None
    top = Path(tempfile.mkdtemp(prefix="a3s-bench-fullstack-"))
    top.chmod(0o755)
    folder = top / "fullstack"
    shutil.copytree(ROOT / "examples" / "fullstack", folder, ignore=shutil.ignore_patterns(".a3s", "data"))
    hcl = folder / "A3sfile.hcl"
    hcl.write_text(re.sub(r"\bport(\s*)=(\s*)\d+", lambda m: f"port{m[1]}={m[2]}{free_port()}", hcl.read_text()))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "A3S_PROXY_PORT": str(free_port())}
    a3s = [sys.executable, "-m", "a3s_dev"]
    try:
        subprocess.run([*a3s, "up", "-d"], cwd=folder, env=env, check=True, capture_output=True)  # initdb once
        subprocess.run([*a3s, "down"], cwd=folder, env=env, check=True, capture_output=True)
        began = time.perf_counter()
        subprocess.run([*a3s, "up", "-d"], cwd=folder, env=env, check=True, capture_output=True)
        up = time.perf_counter() - began
        began = time.perf_counter()
        subprocess.run([*a3s, "down"], cwd=folder, env=env, check=True, capture_output=True)
        return up, time.perf_counter() - began
    finally:
        subprocess.run([*a3s, "down"], cwd=folder, env=env, check=False, capture_output=True)
        shutil.rmtree(top, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--sick", type=float, default=60.0)
    parser.add_argument("--no-fullstack", action="store_true")
    args = parser.parse_args()
    targets = {"http": 0.100, "tcp": 0.100, "cmd": 0.200, "log": 0.020}
    print(f"readiness seen after the service is ready, median of {args.runs}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for kind, target in targets.items():
            lags = [anyio.run(seen_ready, kind, folder) for _ in range(args.runs)]
            med = statistics.median(lags)
            print(f"  {kind:5} median {med * 1000:6.1f} ms  max {max(lags) * 1000:6.1f} ms  "
                  f"target <= {target * 1000:.0f} ms: {'yes' if med <= target else 'NO'}")
        early, late = anyio.run(sick_probes, folder, args.sick)
        bound = int((args.sick - 10.0) / 2.0) + 1
        print(f"a /health answering 500 for {args.sick:g} s: {early} probes in the first 10 s, {late} after "
              f"(bound: one per 2 s interval = {bound}): {'yes' if late <= bound else 'NO'}")
    if not args.no_fullstack:
        figures = fullstack()
        if figures is None:
            print("fullstack: skipped (needs postgresql, redis-server, psycopg, redis-py)")
        else:
            print(f"fullstack: a3s up -d to all healthy {figures[0]:.2f} s, a3s down {figures[1]:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
