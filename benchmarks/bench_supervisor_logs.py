"""Log relay: one service prints 500,000 numbered lines; `a3s up` output redirected to a file,
beside circus (`circusd`, its stdout stream to a file) in the same run when it is installed.

    python benchmarks/bench_supervisor_logs.py [--runs 5] [--lines 500000] [--circusd PATH]

Measures the tool's start -> the last line in the output file, then checks (for a3s) that
every line is there exactly once, in order, neither split nor merged. Medians of --runs, the
tools interleaved. The bar: a3s <= circus.
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


CIRCUS_INI = """\
[circus]
check_delay = 5
endpoint = ipc://{folder}/circus.sock
pubsub_endpoint = ipc://{folder}/circus-pub.sock
statsd = false

[watcher:printer]
cmd = {python} printer.py {lines}
working_dir = {folder}
copy_env = true
stdout_stream.class = FileStream
stdout_stream.filename = {folder}/circus.txt
"""


def run_circus(circusd: str, folder: Path, lines: int) -> float:
    """circusd's start -> the last line in its stdout stream's file."""
    out_path = folder / "circus.txt"
    out_path.unlink(missing_ok=True)
    ini = folder / "circus.ini"
    ini.write_text(CIRCUS_INI.format(folder=folder, python=f"{sys.base_prefix}/bin/python3", lines=lines))
    last = f"line {lines}\n".encode()
    t0 = time.perf_counter()
    proc = subprocess.Popen([circusd, str(ini)], cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = t0 + 60
        while time.perf_counter() < deadline:
            if out_path.exists() and out_path.stat().st_size > 64:
                with open(out_path, "rb") as f:
                    f.seek(max(0, out_path.stat().st_size - 4096))
                    if f.read().endswith(last):
                        return time.perf_counter() - t0
            time.sleep(0.002)
        raise RuntimeError("circus: the last line never arrived")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--a3s", default=str(Path(sys.executable).with_name("a3s")))
    parser.add_argument("--circusd", default=shutil.which("circusd") or "/tmp/honcho-venv/bin/circusd")
    args = parser.parse_args()
    circus = Path(args.circusd).exists()
    if not circus:
        print(f"(circusd not found at {args.circusd}: pip install circus in a venv for the comparison)")
    with tempfile.TemporaryDirectory(prefix="a3s-bench-logs-") as tmp:
        folder = Path(tmp)
        (folder / "printer.py").write_text(PRINTER)
        (folder / "A3sfile.hcl").write_text(
            f'dev {{\n  proxy_port = 0\n}}\n\nservice "printer" {{\n  cmd = "exec {sys.base_prefix}/bin/python3 printer.py {args.lines}"\n}}\n'
        )
        times, circus_times = [], []
        for _ in range(args.runs):
            times.append(run(args.a3s, folder, args.lines))
            if circus:
                circus_times.append(run_circus(args.circusd, folder, args.lines))
    print(
        f"{args.lines} lines, start -> last line in the file: a3s median {statistics.median(times) * 1000:.0f} ms "
        f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}; {args.runs} runs, every line present and in order)"
    )
    if circus_times:
        median = statistics.median(circus_times)
        print(f"circus median {median * 1000:.0f} ms (min {min(circus_times) * 1000:.0f}); "
              f"a3s / circus: {statistics.median(times) / median:.2f}x (target <= 1.0x)")


if __name__ == "__main__":
    main()
