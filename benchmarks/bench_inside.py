"""Working inside the stack (SPEC §10), timed on a running stack of 8 services:

    python benchmarks/bench_inside.py [--runs 20]

- `a3s run SVC -- true`: from the command's start to the command's exit (target <= 150 ms);
  beside it, `sh -c true` started the same way (what any launcher costs here).
- `a3s status` with the CPU and MEM columns (target <= 60 ms).
- `a3s attach`: a key typed into the attached terminal until the service's echo is back on it
  (target <= 20 ms median), through a real pty and the supervisor's pseudo-terminal.
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = str(Path(sys.base_prefix) / "bin" / "python3")
A3S = str(Path(sys.executable).with_name("a3s"))
SERVICE = """\
import os, socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"]))); s.listen(64)
while True:
    c, _ = s.accept(); c.close()
"""
ECHO = "import sys\nwhile True:\n    line = sys.stdin.readline()\n    if not line: break\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(cmd: list[str], cwd: Path, runs: int) -> float:
    took = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        took.append(time.perf_counter() - t0)
    return statistics.median(took) * 1000


def echo_latency(folder: Path, runs: int) -> float:
    """Median ms from a key written to the attached terminal to its echo read back."""
    main, side = pty.openpty()
    proc = subprocess.Popen([A3S, "attach", "echo"], cwd=folder, stdin=side, stdout=side, stderr=side,
                            start_new_session=True)
    os.close(side)
    took = []
    try:
        screen = b""
        while b"Ctrl-]" not in screen:
            if select.select([main], [], [], 5)[0]:
                screen += os.read(main, 4096)
        time.sleep(0.3)  # the session is up
        while select.select([main], [], [], 0.05)[0]:
            os.read(main, 4096)
        for i in range(runs):
            key = b"abcdefghijklmnopqrstuvwxyz"[i % 26 : i % 26 + 1]
            t0 = time.perf_counter()
            os.write(main, key)
            got = b""
            while key not in got:
                if select.select([main], [], [], 5)[0]:
                    got += os.read(main, 4096)
            took.append(time.perf_counter() - t0)
            time.sleep(0.02)
        os.write(main, b"\x1d")
        proc.wait(timeout=10)
    finally:
        os.close(main)
        if proc.poll() is None:
            proc.kill()
    return statistics.median(took) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="a3s-bench-inside-"))
    env = {**os.environ, "NO_COLOR": "1"}
    try:
        (folder / "svc.py").write_text(SERVICE)
        (folder / "echo.py").write_text(ECHO)
        blocks = ['dev {\n  proxy_port = 0\n  stop_timeout = "2s"\n}\n']
        blocks += [f'service "s{i}" {{\n  cmd  = "exec {PY} svc.py"\n  port = {free_port()}\n}}\n' for i in range(7)]
        blocks.append(f'service "echo" {{\n  cmd = "exec {PY} echo.py"\n  interactive = true\n}}\n')
        (folder / "A3sfile.hcl").write_text("\n".join(blocks))
        subprocess.run([A3S, "up", "-d"], cwd=folder, env=env, check=True, stdout=subprocess.DEVNULL)
        run_ms = timed([A3S, "run", "s0", "--", "true"], folder, args.runs)
        sh_ms = timed(["sh", "-c", "true"], folder, args.runs)
        status_ms = timed([A3S, "status"], folder, args.runs)
        echo_ms = echo_latency(folder, args.runs)
        print(f"median of {args.runs} runs, 8 services running, {os.cpu_count()} cores")
        print(f"  a3s run s0 -- true   {run_ms:6.1f} ms   (target <= 150 ms; sh -c true: {sh_ms:.1f} ms)")
        print(f"  a3s status           {status_ms:6.1f} ms   (target <= 60 ms)")
        print(f"  attach: key to echo  {echo_ms:6.1f} ms   (target <= 20 ms)")
    finally:
        subprocess.run([A3S, "down"], cwd=folder, env=env, stdout=subprocess.DEVNULL, check=False)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
