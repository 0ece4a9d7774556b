"""File watching benchmarks: save-to-SIGTERM latency through the real Supervisor, and idle CPU.

    python benchmarks/bench_watcher.py                      # both, default sizes
    python benchmarks/bench_watcher.py latency --trials 30 --debounce 0.5
    python benchmarks/bench_watcher.py idle --files 20000 --node-modules 20000 --seconds 10

Latency: a service records the wall time at which it receives SIGTERM; the benchmark
writes a watched file and subtracts the time of the write. Target: p95 <= debounce + 150 ms.
Idle: one watcher over a project folder holding `src/` (N files in 200 folders) and a
`node_modules/` as big; the process's CPU time (every thread, the notifier's included) over
`seconds` of quiet, and the OS watches it holds. Target: <= 1% of one core.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import textwrap
import time
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from a3s_dev.config.model import DevConfig, ServiceDef, WatchConfig
from a3s_dev.core.state import ServiceState, ServiceStatus
from a3s_dev.core.supervisor import Supervisor
from a3s_dev.watch.service import watch_services

# Records when it is ready and when SIGTERM arrives, then exits 0.
SERVICE = textwrap.dedent(
    """
    import os, signal, sys, time
    record = sys.argv[1]
    def note(text):
        with open(record, "a") as f:
            f.write(text + "\\n")
    def on_term(signum, frame):
        note(f"term {os.getpid()} {time.time()!r}")
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    note(f"ready {os.getpid()}")
    while True:
        time.sleep(3600)
    """
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


async def _poll(predicate: Any, timeout: float, what: str) -> Any:
    with anyio.move_on_after(timeout):
        while not (value := predicate()):
            await anyio.sleep(0.002)
        return value
    raise SystemExit(f"timed out waiting for {what}")


async def latency(trials: int, debounce: float) -> list[float]:
    """Seconds from each file write to the old process's SIGTERM."""
    with tempfile.TemporaryDirectory(prefix="a3s-bench-watch-") as tmp:
        root = Path(tmp)
        (root / "src").mkdir()
        (root / "svc.py").write_text(SERVICE)
        record = root / "record"
        record.touch()
        svc = ServiceDef(
            name="api",
            cmd=f"exec {sys.executable} svc.py {record}",
            dir=root,
            watch=WatchConfig(paths=(root / "src",), debounce=debounce),
        )
        sup = Supervisor(DevConfig(path=root / "A3sfile.hcl", services=(svc,)))

        def lines(kind: str) -> list[list[str]]:
            return [ln.split() for ln in record.read_text().splitlines() if ln.startswith(kind)]

        results: list[float] = []
        async with anyio.create_task_group() as tg:

            async def run_supervisor(*, task_status: Any) -> None:
                try:
                    await sup.run(task_status=task_status)
                finally:
                    tg.cancel_scope.cancel()

            await tg.start(run_supervisor)
            await sup.start()
            await tg.start(watch_services, sup)
            try:
                for i in range(trials):
                    ready = await _poll(
                        lambda i=i: lines("ready")[i:], 10, "the service to be ready"
                    )
                    pid = ready[0][1]
                    await anyio.sleep(0.05)  # let the service settle between trials
                    started = time.time()
                    (root / "src" / "app.py").write_text(f"v = {i}\n")
                    term = await _poll(
                        lambda pid=pid: [t for t in lines("term") if t[1] == pid], 10, "SIGTERM"
                    )
                    results.append(float(term[0][2]) - started)
            finally:
                await sup.shutdown()
        return results


class _Idle:
    """Just enough of a Supervisor for watch_services to run with nothing to restart."""

    def __init__(self, config: DevConfig) -> None:
        self.config = config
        self.lines: list[str] = []

    async def restart(self, name: str) -> None:
        pass

    def status(self, name: str) -> ServiceStatus:
        return ServiceStatus(name=name, state=ServiceState.RUNNING)

    def announce(self, text: str) -> None:
        self.lines.append(text)


def _tree(base: Path, files: int, per_dir: int = 100) -> None:
    for d in range(files // per_dir):
        folder = base / f"pkg{d // 20}" / f"mod{d}"
        folder.mkdir(parents=True)
        for f in range(per_dir):
            (folder / f"f{f}.py").write_text("x = 1\n")


def inotify_watches() -> int:
    """OS watches this process holds (Linux: one `inotify wd:` line per watch in fdinfo)."""
    count = 0
    for fd in os.listdir("/proc/self/fdinfo"):
        try:
            with open(f"/proc/self/fdinfo/{fd}") as f:
                count += sum(1 for line in f if line.startswith("inotify wd:"))
        except OSError:
            continue
    return count


async def idle(files: int, ignored: int, seconds: float) -> tuple[float, float, int]:
    """(seconds to arm, fraction of one core used while idle, OS watches) for a watcher over
    the project folder holding `src/` with `files` files and `node_modules/` with `ignored`."""
    with tempfile.TemporaryDirectory(prefix="a3s-bench-idle-") as tmp:
        root = Path(tmp)
        _tree(root / "src", files)
        _tree(root / "node_modules", ignored)
        svc = ServiceDef(name="api", cmd="true", dir=root, watch=WatchConfig(paths=(root,)))
        sup = _Idle(DevConfig(path=root / "A3sfile.hcl", services=(svc,)))
        async with anyio.create_task_group() as tg:
            began = time.monotonic()
            await tg.start(partial(watch_services, sup))
            armed = time.monotonic() - began
            await anyio.sleep(1.0)  # past the first rescan
            cpu0, wall0 = time.process_time(), time.monotonic()
            await anyio.sleep(seconds)
            cpu = time.process_time() - cpu0
            wall = time.monotonic() - wall0
            watches = inotify_watches() if os.path.isdir("/proc/self/fdinfo") else -1
            tg.cancel_scope.cancel()
        return armed, cpu / wall, watches


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", nargs="?", choices=["latency", "idle", "all"], default="all")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--debounce", type=float, default=0.5)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument(
        "--node-modules", type=int, default=20_000, help="ignored files beside src/"
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if args.what in ("latency", "all"):
        ms = [v * 1000 for v in anyio.run(latency, args.trials, args.debounce)]
        target = args.debounce * 1000 + 150
        p95 = percentile(ms, 95)
        print(
            f"write -> SIGTERM, debounce {args.debounce * 1000:.0f} ms, {len(ms)} trials: "
            f"min {min(ms):.0f} ms, median {statistics.median(ms):.0f} ms, p95 {p95:.0f} ms, "
            f"max {max(ms):.0f} ms (target p95 <= {target:.0f} ms: {'ok' if p95 <= target else 'MISSED'})"
        )
    if args.what in ("idle", "all"):
        armed, share, watches = anyio.run(idle, args.files, args.node_modules, args.seconds)
        print(
            f"idle watcher over {args.files} files (+ {args.node_modules} in node_modules): "
            f"armed in {armed * 1000:.0f} ms, {watches} OS watches, "
            f"CPU {share * 100:.2f}% of one core over {args.seconds:g} s "
            f"(target <= 1%: {'ok' if share <= 0.01 else 'MISSED'})"
        )


if __name__ == "__main__":
    main()
