"""`a3s mcp` (SPEC §11) driven by the MCP SDK's own client over stdio, against a real stack."""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from support import free_port
from support_control import SICK_HEALTH, server_stack, service_block, stack_in

mcp = pytest.importorskip("mcp", reason="the mcp extra (pip install -e '.[mcp]')")
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

pytestmark = pytest.mark.timeout(120)

TOOLS = {"status", "up", "down", "restart", "wait", "logs", "run", "graph"}


def project(folder: Path) -> None:
    python = sys.executable
    server_stack(
        folder,
        service_block("db", f"exec {python} server.py", port=free_port()),
        service_block("api", f"exec {python} server.py", port=free_port(), depends_on=["db"],
                      extra='env = { GREETING = "hello from api" }'),
        service_block("sick", f"exec {python} sick.py", port=free_port(), extra=SICK_HEALTH),
    )


def with_client(folder: Path, body: Callable[[ClientSession], Awaitable[None]]) -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "a3s_dev", "mcp"], cwd=str(folder),
                                   env=dict(os.environ))

    async def main() -> None:
        with anyio.fail_after(90):
            async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                await body(session)

    anyio.run(main)


async def call(session: ClientSession, name: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(name, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return dict(result.structured_content)


def test_an_agent_brings_the_stack_up_finds_why_it_is_stuck_reads_restarts_and_runs(tmp_path: Path) -> None:
    project(tmp_path)
    with stack_in(tmp_path) as st:

        async def body(session: ClientSession) -> None:
            listed = await session.list_tools()
            assert {t.name for t in listed.tools} == TOOLS
            hints = {t.name: t.annotations for t in listed.tools}
            assert all(hints[n] and hints[n].read_only_hint for n in ("status", "wait", "logs", "graph"))
            assert all(hints[n] and hints[n].destructive_hint for n in ("down", "run"))

            started = await call(session, "up", services=["api"], timeout=30)
            assert started["ok"] is True
            status = await call(session, "status")
            assert {s["name"]: s["state"] for s in status["services"]}["api"] == "running"

            await call(session, "up", services=["sick"], timeout=1)
            waited = await call(session, "wait", services=["sick"], timeout=1.5)
            assert waited["ok"] is False and waited["services"][0]["probe"] == "GET /health → 500"

            lines = await call(session, "logs", service="sick", grep="got /health", n=5)
            assert 1 <= len(lines["lines"]) <= 5 and all("got /health" in x["text"] for x in lines["lines"])

            before = status["services"][[s["name"] for s in status["services"]].index("api")]["pid"]
            restarted = await call(session, "restart", service="api")
            assert restarted["ok"] is True and restarted["pid"] != before

            ran = await call(session, "run", service="api", command='echo "$GREETING"; exit 3')
            assert ran["exit_code"] == 3 and ran["output"] == "hello from api\n" and ran["cut"] is None
            big = await call(session, "run", service="api", command="head -c 100000 /dev/zero | tr '\\0' x")
            assert len(big["output"]) == 64 * 1024 and "only the last 64 KB of 100000 bytes" in big["cut"]

            graph = await call(session, "graph")
            assert graph["depends_on"]["api"] == {"db": "healthy"} and graph["start_order"][0] == "db"

            unknown = await session.call_tool("restart", {"service": "apj"})
            assert unknown.is_error and "unknown service 'apj' (did you mean 'api'?)" in unknown.content[0].text

            stopped = await call(session, "down")
            assert stopped["supervisor_stopped"] is True

        with_client(tmp_path, body)
        assert not st.paths.socket.exists() and all(r["state"] == "stopped" for r in st.status().values())


def test_the_server_opens_no_network_listener_and_prints_its_client_config(tmp_path: Path) -> None:
    project(tmp_path)
    with stack_in(tmp_path) as st:
        server_pids: list[int] = []

        async def body(session: ClientSession) -> None:
            await call(session, "status")
            for entry in os.listdir("/proc"):  # the server: our child running `a3s_dev mcp`
                try:
                    cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                except OSError:
                    continue
                if entry.isdigit() and b"a3s_dev\0mcp" in cmdline:
                    server_pids.append(int(entry))
            assert server_pids
            for pid in server_pids:
                sockets = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
                inodes = {s[8:-1] for s in sockets if s.startswith("socket:[")}
                for table in ("/proc/net/tcp", "/proc/net/tcp6"):
                    rows = Path(table).read_text().splitlines()[1:]
                    assert not [r for r in rows if r.split()[9] in inodes and r.split()[3] == "0A"], table

        with_client(tmp_path, body)
        printed = st.a3s("mcp", "--print-config")
        assert printed.code == 0 and '"a3s_dev"' in printed.out and str(tmp_path) in printed.out
