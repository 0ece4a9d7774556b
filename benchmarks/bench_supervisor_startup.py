"""Time to all healthy, from the command's own start, for `a3s up` vs `honcho start` (and a chain of 5).

    python benchmarks/bench_supervisor_startup.py [--runs 7] [--honcho /tmp/honcho-venv/bin/honcho]

Each service is a stdlib Python script that listens 200 ms after it is spawned. Two clocks:
- "healthy": for a3s, when its own output says the last service is healthy (it knows);
- "ports": for every tool, when an outside poller (2 ms) first finds every port answering.
Wave test: 8 independent services. Chain test: 5 services, each depending on the previous,
against `chain_launcher.py` (stdlib; starts the next as soon as the previous port answers).
Medians over --runs runs, the tools interleaved so that machine load hits them alike.
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The real interpreter, not a pyenv shim (a bash script that alone costs ~100 ms per start).
PY = str(Path(sys.base_prefix) / "bin" / "python3")
SERVICE = """\
import os, socket, time
time.sleep(0.2)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"]))); s.listen(64)
print("listening", flush=True)
while True:
    c, _ = s.accept(); c.close()
"""


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def answers(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def a3sfile(folder: Path, ports: list[int], proxy: int, chain: bool) -> None:
    # The proxy runs (on a free port) as it would for a user; it loads after the services.
    blocks = [f"dev {{\n  proxy_port = {proxy}\n}}\n"]
    for i, port in enumerate(ports):
        dep = f'  depends_on = ["s{i - 1}"]\n' if chain and i else ""
        blocks.append(f'service "s{i}" {{\n  cmd  = "exec {PY} svc.py"\n  port = {port}\n{dep}}}\n')
    (folder / "A3sfile.hcl").write_text("\n".join(blocks))


def run_one(
    cmd: list[str], folder: Path, ports: list[int], healthy_marker: str | None, env: dict[str, str]
) -> tuple[float, float | None]:
    """(seconds until every port answers, seconds until the tool printed the last healthy line)."""
    wanted = len(ports)
    healthy_at: list[float] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def reader() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            if healthy_marker and healthy_marker in raw.decode(errors="replace"):
                healthy_at.append(time.perf_counter() - t0)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    pending = set(ports)
    ports_at = None
    deadline = t0 + 30
    try:
        while time.perf_counter() < deadline:
            pending = {p for p in pending if not answers(p)}
            if not pending:
                ports_at = time.perf_counter() - t0
                break
            time.sleep(0.002)
        if healthy_marker:
            while len(healthy_at) < wanted and time.perf_counter() < deadline:
                time.sleep(0.002)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        thread.join(2)
        # Anything a tool left behind would skew the next run.
        for port in ports:
            end = time.monotonic() + 5
            while answers(port) and time.monotonic() < end:
                time.sleep(0.01)
    if ports_at is None:
        raise RuntimeError(f"{cmd[0]}: not every port answered within 30 s")
    return ports_at, (healthy_at[wanted - 1] if len(healthy_at) >= wanted else None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--honcho", default=shutil.which("honcho") or "/tmp/honcho-venv/bin/honcho")
    parser.add_argument("--a3s", default=str(Path(sys.executable).with_name("a3s")))
    args = parser.parse_args()
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print("(PYTHONDONTWRITEBYTECODE is set: a3s's own modules are compiled at every start, which an "
              "installed a3s never does; run with `env -u PYTHONDONTWRITEBYTECODE` for a user's figure)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("A3S_")}
    env["NO_COLOR"] = "1"

    with tempfile.TemporaryDirectory(prefix="a3s-bench-") as tmp:
        folder = Path(tmp)
        (folder / "svc.py").write_text(SERVICE)
        results: dict[str, list[tuple[float, float | None]]] = {}

        ports = free_ports(15)  # one call: ports taken in separate calls may repeat
        ports8, ports5, proxies = ports[:8], ports[8:13], ports[13:]
        wave = folder / "wave"
        wave.mkdir()
        (wave / "svc.py").write_text(SERVICE)
        a3sfile(wave, ports8, proxies[0], chain=False)
        (wave / "Procfile").write_text(
            "".join(f"s{i}: PORT={p} exec {PY} svc.py\n" for i, p in enumerate(ports8))
        )

        chain = folder / "chain"
        chain.mkdir()
        (chain / "svc.py").write_text(SERVICE)
        a3sfile(chain, ports5, proxies[1], chain=True)

        cases = {
            "a3s up, 8 independent": ([args.a3s, "up", "--no-watch"], wave, ports8, "is healthy"),
            "chain: a3s up, 5 in a chain": (
                [args.a3s, "up", "--no-watch"],
                chain,
                ports5,
                "is healthy",
            ),
            "chain: stdlib launcher, 5 in a chain": (
                [PY, str(HERE / "chain_launcher.py"), *map(str, ports5)],
                chain,
                ports5,
                None,
            ),
        }
        if Path(args.honcho).exists():
            cases["honcho start, 8 independent"] = ([args.honcho, "start"], wave, ports8, None)
        else:
            print(f"(honcho not found at {args.honcho}: install it in a venv for the comparison)")
        for _ in range(args.runs):
            for name, (cmd, where, ports, marker) in cases.items():
                row = run_one(cmd, where, ports, marker, env)
                results.setdefault(name, []).append(row)
                print(f"  {name}: {row[0] * 1000:.0f} ms", file=sys.stderr, flush=True)

    print(f"median of {args.runs} runs, {os.cpu_count()} cores")
    for name, rows in results.items():
        ports_med = statistics.median(r[0] for r in rows) * 1000
        healthy = [r[1] for r in rows if r[1] is not None]
        extra = (
            f", a3s's own 'all healthy' {statistics.median(healthy) * 1000:.0f} ms"
            if healthy
            else ""
        )
        print(f"{name:40s} ports answer {ports_med:6.0f} ms{extra}")
    if "honcho start, 8 independent" in results:
        a3s = statistics.median(r[1] or r[0] for r in results["a3s up, 8 independent"])
        honcho = statistics.median(r[0] for r in results["honcho start, 8 independent"])
        print(f"a3s all-healthy / honcho ports: {a3s / honcho:.2f}x (target <= 1.10x)")
    a3s_chain = statistics.median(r[1] or r[0] for r in results["chain: a3s up, 5 in a chain"])
    launcher = statistics.median(r[0] for r in results["chain: stdlib launcher, 5 in a chain"])
    print(f"chain a3s all-healthy / launcher: {a3s_chain / launcher:.2f}x (target <= 1.10x)")


if __name__ == "__main__":
    main()
