"""The terminal UI (SPEC §12), on a running stack:

    python benchmarks/bench_ui.py [--seconds 10]

- First paint: `a3s ui` started in a real terminal (tmux) until its services table is on the
  screen (target <= 500 ms); beside it, `a3s status` from start to exit in the same terminal
  kind of run (what any a3s command costs here).
- Keeping up: a service printing 10,000 lines a second for `--seconds`; twice a second the UI's
  newest line is read and its age taken (each line carries the time it was printed). Target:
  at most 1 s behind. The UI's memory (this process's RSS, the app runs headless in it) before
  and after: the views keep a fixed number of lines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

A3S = str(Path(sys.executable).with_name("a3s"))
FLOOD = """\
import sys, time
start = time.time(); n = 0
while True:
    due = int((time.time() - start) * 10000)
    if due > n:
        sys.stdout.write("".join(f"line {i} at {time.time():.6f}\\n" for i in range(n, due)))
        sys.stdout.flush()
        n = due
    time.sleep(0.001)
"""
A3SFILE = """\
dev {
  name = "bench-ui"
  proxy_port = 0
}
service "flood" {
  cmd = "exec python3 flood.py"
}
service "web" {
  cmd = "exec python3 -m http.server $PORT --bind 127.0.0.1"
  port = "auto"
}
"""


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def first_paint(folder: Path, runs: int) -> tuple[list[float], list[float]]:
    tmux = shutil.which("tmux")
    if tmux is None:
        sys.exit("tmux is not installed")
    paints, statuses = [], []
    for i in range(runs):
        session = f"bench-ui-{os.getpid()}-{i}"
        t0 = time.perf_counter()
        subprocess.run([tmux, "new-session", "-d", "-s", session, "-x", "140", "-y", "40", f"cd {folder} && {A3S} ui"],
                       check=True)
        while True:
            screen = subprocess.run([tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=False).stdout
            if "flood" in screen and "running" in screen:
                break
            time.sleep(0.005)
        paints.append(time.perf_counter() - t0)
        subprocess.run([tmux, "kill-session", "-t", session], check=False)
        t0 = time.perf_counter()
        subprocess.run([A3S, "status"], cwd=folder, stdout=subprocess.DEVNULL, check=True)
        statuses.append(time.perf_counter() - t0)
    return paints, statuses


async def keep_up(folder: Path, seconds: float) -> tuple[list[float], float, float]:
    from a3s_dev.control.client import ControlClient
    from a3s_dev.run import workspace
    from a3s_dev.ui.app import StackView
    from a3s_dev.ui.logview import LogView

    app = StackView(ControlClient(workspace.paths_for(folder / "A3sfile.hcl").socket), "bench-ui")
    lags: list[float] = []
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause(1.0)
        before = rss_mb()
        view = app.query_one("#log", LogView)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await pilot.pause(0.5)
            last = next((line for line in reversed(view.lines) if " at " in line), None)
            if last is not None:
                lags.append(time.time() - float(last.rsplit(" at ", 1)[1]))
        after = rss_mb()
    return lags, before, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "A3sfile.hcl").write_text(A3SFILE)
        (folder / "flood.py").write_text(FLOOD)
        subprocess.run([A3S, "up", "-d"], cwd=folder, check=True, stdout=subprocess.DEVNULL)
        try:
            paints, statuses = first_paint(folder, args.runs)
            lags, before, after = asyncio.run(keep_up(folder, args.seconds))
        finally:
            subprocess.run([A3S, "down"], cwd=folder, stdout=subprocess.DEVNULL, check=False)
    print(f"first paint of `a3s ui` (tmux)      median {statistics.median(paints) * 1000:5.0f} ms "
          f"(min {min(paints) * 1000:.0f}, max {max(paints) * 1000:.0f})")
    print(f"`a3s status`, start to exit          median {statistics.median(statuses) * 1000:5.0f} ms")
    print(f"10,000 lines/s for {args.seconds:g} s: the view behind by median {statistics.median(lags) * 1000:.0f} ms, "
          f"max {max(lags) * 1000:.0f} ms ({len(lags)} samples)")
    print(f"the UI's RSS: {before:.0f} MB after 1 s, {after:.0f} MB at the end")


if __name__ == "__main__":
    main()
