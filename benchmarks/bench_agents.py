"""`a3s mcp` (SPEC §11) as an agent meets it, with the MCP SDK's own client over stdio:

    python benchmarks/bench_agents.py [--runs 10]

- `initialize` answered, from spawning the server (target <= 1.5 s);
- a `status` tool call with 8 services running, beside the control API's own answer to
  `GET /v1/status` (target: <= 100 ms more);
- the size of that result's JSON (target <= 2 KB).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from a3s_dev.control.client import ControlClient
from a3s_dev.run.workspace import paths_for

PY = str(Path(sys.base_prefix) / "bin" / "python3")
A3S = str(Path(sys.executable).with_name("a3s"))
SERVICE = """\
import os, socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"]))); s.listen(64)
while True:
    c, _ = s.accept(); c.close()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def measure(folder: Path, runs: int) -> tuple[list[float], list[float], int]:
    params = StdioServerParameters(command=sys.executable, args=["-m", "a3s_dev", "mcp"], cwd=str(folder),
                                   env=dict(os.environ))
    starts, calls, size = [], [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            starts.append(time.perf_counter() - t0)
            for _ in range(5):
                t1 = time.perf_counter()
                result = await session.call_tool("status", {})
                calls.append(time.perf_counter() - t1)
            size = len(json.dumps(result.structured_content))
    return starts, calls, size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="a3s-bench-agents-"))
    env = {**os.environ, "NO_COLOR": "1"}
    try:
        (folder / "svc.py").write_text(SERVICE)
        blocks = ['dev {\n  proxy_port = 0\n}\n']
        blocks += [f'service "s{i}" {{\n  cmd  = "exec {PY} svc.py"\n  port = {free_port()}\n}}\n' for i in range(8)]
        (folder / "A3sfile.hcl").write_text("\n".join(blocks))
        subprocess.run([A3S, "up", "-d"], cwd=folder, env=env, check=True, stdout=subprocess.DEVNULL)
        client = ControlClient(paths_for(folder / "A3sfile.hcl").socket)
        direct = []
        for _ in range(args.runs * 5):
            t0 = time.perf_counter()
            client.status()
            direct.append(time.perf_counter() - t0)
        starts, calls, size = anyio.run(measure, folder, args.runs)
        api, tool = statistics.median(direct) * 1000, statistics.median(calls) * 1000
        print(f"medians, {args.runs} server starts, 8 services running, {os.cpu_count()} cores")
        print(f"  initialize answered      {statistics.median(starts) * 1000:7.1f} ms   (target <= 1500 ms)")
        print(f"  status tool call         {tool:7.1f} ms   (GET /v1/status itself: {api:.1f} ms; target <= +100 ms)")
        print(f"  status result            {size:7d} B    (target <= 2048 B)")
    finally:
        subprocess.run([A3S, "down"], cwd=folder, env=env, stdout=subprocess.DEVNULL, check=False)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
