"""Time from starting `a3s up` to its first service's process running, beside `honcho start`.

    python benchmarks/bench_first_spawn.py [--runs 15] [--honcho PATH]

One service whose command writes the wall clock (ns) to a file as its first act; the time is
that stamp minus the moment the tool was started. Target (issue 11): a3s <= 60 ms. honcho,
which parses a Procfile and nothing else, is the reference measured in the same run.
Medians; the tools interleaved so that machine load hits them alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

A3SFILE = 'dev {\n  proxy_port = 0\n}\nservice "a" {\n  cmd = "date +%s%N > stamp; exec sleep 30"\n}\n'
PROCFILE = "a: date +%s%N > stamp; exec sleep 30\n"


def once(cmd: list[str], folder: Path) -> float:
    stamp = folder / "stamp"
    stamp.unlink(missing_ok=True)
    env = {**os.environ, "NO_COLOR": "1"}
    began = time.time()
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not (stamp.exists() and stamp.read_text().strip()):
            if time.monotonic() > deadline:
                raise SystemExit(f"{cmd[0]} spawned nothing in 20 s")
            time.sleep(0.002)
        return int(stamp.read_text()) / 1e9 - began
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--honcho", default=shutil.which("honcho"))
    args = parser.parse_args()
    a3s = Path(sys.executable).with_name("a3s")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "A3sfile.hcl").write_text(A3SFILE)
        (folder / "Procfile").write_text(PROCFILE)
        subprocess.run([str(a3s), "validate"], cwd=folder, check=True, capture_output=True)  # warm caches
        tools = {"a3s up": [str(a3s), "up"]}
        if args.honcho:
            tools["honcho start"] = [args.honcho, "start"]
        times: dict[str, list[float]] = {name: [] for name in tools}
        for _ in range(args.runs):
            for name, cmd in tools.items():
                times[name].append(once(cmd, folder))
    print(f"time to the first spawn, median of {args.runs} runs, {os.cpu_count()} cores")
    for name, values in times.items():
        print(f"  {name:14} median {statistics.median(values) * 1000:6.1f} ms  min {min(values) * 1000:6.1f} ms")
    target = statistics.median(times["a3s up"]) <= 0.060
    print(f"a3s up <= 60 ms: {'yes' if target else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
