"""Log relay: one service prints 500,000 numbered lines; `a3s up` output redirected to a file.

    python benchmarks/bench_supervisor_logs.py [--runs 5] [--lines 500000]

Measures start of `a3s up` -> the last line in the output file, then checks that every line
is there exactly once, in order, neither split nor merged. Median of --runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRINTER = """\
import sys
out = sys.stdout
n = int(sys.argv[1])
out.write("".join(f"line {i}\\n" for i in range(1, n + 1)))
out.flush()
import time
time.sleep(3600)
"""


def run(a3s: str, folder: Path, lines: int) -> float:
    out_path = folder / "out.txt"
    last = f"| line {lines}\n".encode()
    with open(out_path, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [a3s, "up", "--no-proxy", "--no-watch"],
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        try:
            deadline = t0 + 60
            took = None
            while time.perf_counter() < deadline:
                size = out_path.stat().st_size
                if size > 64:
                    with open(out_path, "rb") as f:
                        f.seek(max(0, size - 4096))
                        if last in f.read():
                            took = time.perf_counter() - t0
                            break
                time.sleep(0.002)
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=20)
    if took is None:
        raise RuntimeError("the last line never arrived")
    got = [
        line.split("| ", 1)[1]
        for line in out_path.read_text().splitlines()
        if " printer | " in line
    ]
    expected = [f"line {i}" for i in range(1, lines + 1)]
    if got != expected:
        missing = len(expected) - len(got)
        raise RuntimeError(f"lines differ: {len(got)} relayed, {missing} missing or merged")
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--a3s", default=str(Path(sys.executable).with_name("a3s")))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="a3s-bench-logs-") as tmp:
        folder = Path(tmp)
        (folder / "printer.py").write_text(PRINTER)
        (folder / "A3sfile.hcl").write_text(
            f'dev {{\n  proxy_port = 0\n}}\n\nservice "printer" {{\n  cmd = "exec {sys.base_prefix}/bin/python3 printer.py {args.lines}"\n}}\n'
        )
        times = [run(args.a3s, folder, args.lines) for _ in range(args.runs)]
    print(
        f"{args.lines} lines, start -> last line in the file: median {statistics.median(times) * 1000:.0f} ms "
        f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}; {args.runs} runs, every line present and in order)"
    )


if __name__ == "__main__":
    main()
