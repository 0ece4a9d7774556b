"""Many checkouts (SPEC §13): five worktrees of one 4-service stack on one proxy.

    python benchmarks/bench_checkouts.py [--worktrees 5] [--idle 3]

- Memory: the resident memory of every service of every worktree (the supervisors' own
  figures, `status --json` rss) once all are up, and again after the idle period: with
  `idle_stop`, what nobody uses is stopped.
- First request to an idle service: from the request (through the proxy) to its answer, beside
  the same command started by hand and polled until it answers (what the start alone costs
  here), and the supervisor's own spawn-to-ready figure. Target: within the start + 50 ms.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

A3S = str(Path(sys.executable).with_name("a3s"))
SERVER = "exec python3 -m http.server $PORT --bind 127.0.0.1"
STACK = """\
service "db" {{
  cmd       = "{server}"
  port      = "auto"
  proxy     = false
  idle_stop = "{idle}s"
}}
service "api" {{
  cmd        = "{server}"
  port       = "auto"
  idle_stop  = "{idle}s"
  depends_on = ["db"]
}}
service "worker" {{
  cmd        = "{server}"
  port       = "auto"
  idle_stop  = "{idle}s"
  depends_on = ["db"]
}}
service "web" {{
  cmd        = "{server}"
  port       = "auto"
  lazy       = true
  idle_stop  = "{idle}s"
  depends_on = ["api"]
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, host: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return int(r.status)
    except OSError:
        return 0


def rss_of(folders: list[Path]) -> tuple[float, int]:
    total, running = 0, 0
    for folder in folders:
        rows = json.loads(subprocess.run([A3S, "status", "--json"], cwd=folder, capture_output=True, text=True,
                                         check=True).stdout)
        total += sum(r["rss"] or 0 for r in rows)
        running += sum(r["state"] == "running" for r in rows)
    return total / (1 << 20), running


def by_hand(runs: int) -> list[float]:
    took = []
    for _ in range(runs):
        port = free_port()
        t0 = time.perf_counter()
        proc = subprocess.Popen(["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while get(f"http://127.0.0.1:{port}/") != 200:
            time.sleep(0.001)
        took.append(time.perf_counter() - t0)
        proc.terminate()
        proc.wait()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worktrees", type=int, default=5)
    parser.add_argument("--idle", type=float, default=6.0)
    args = parser.parse_args()
    proxy = free_port()
    env = {"A3S_PROXY_PORT": str(proxy)}
    import os

    os.environ.update(env)
    with tempfile.TemporaryDirectory() as tmp:
        folders = []
        for i in range(args.worktrees):
            folder = Path(tmp) / f"shop-{i}"
            folder.mkdir()
            (folder / "A3sfile.hcl").write_text(STACK.format(server=SERVER, idle=args.idle))
            folders.append(folder)
        try:
            for folder in folders:
                subprocess.run([A3S, "up", "-d"], cwd=folder, check=True, stdout=subprocess.DEVNULL)
            for i in range(args.worktrees):  # each worktree's web used once: every service up
                assert get(f"http://127.0.0.1:{proxy}/", f"web.shop-{i}.localhost:{proxy}") == 200
            time.sleep(2.5)  # the supervisors' usage figures are sampled every 2 s (idle is longer)
            busy, busy_running = rss_of(folders)
            time.sleep(args.idle + 6)
            idle, idle_running = rss_of(folders)
            firsts, readies = [], []
            for i, folder in enumerate(folders):
                t0 = time.perf_counter()
                assert get(f"http://127.0.0.1:{proxy}/", f"web.shop-{i}.localhost:{proxy}") == 200
                firsts.append(time.perf_counter() - t0)
                log = (folder / ".a3s" / "logs" / "a3s.log").read_text()
                readies.append(sum(float(re.findall(rf"{name} is healthy \((\d+\.\d+)s\)", log)[-1])
                                   for name in ("db", "api", "web")))
        finally:
            for folder in folders:
                subprocess.run([A3S, "down"], cwd=folder, stdout=subprocess.DEVNULL, check=False)
    hand = by_hand(args.worktrees)
    print(f"{args.worktrees} worktrees x 4 services, idle_stop = {args.idle:g}s")
    print(f"  services' RSS, all in use:     {busy:7.1f} MB ({busy_running} running)")
    print(f"  after {args.idle + 6:g} s without requests: {idle:7.1f} MB ({idle_running} running)")
    print("  first request to an idle web (its db and api idle too: three services start):")
    print(f"    through the proxy, answered    median {statistics.median(firsts) * 1000:6.0f} ms")
    print(f"    db + api + web spawn -> ready  median {statistics.median(readies) * 1000:6.0f} ms (the supervisors' figures)")
    print(f"    one http.server by hand         median {statistics.median(hand) * 1000:6.0f} ms (start to first answer)")


if __name__ == "__main__":
    main()
