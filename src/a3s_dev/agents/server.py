"""`a3s mcp`: a Model Context Protocol server on stdio (SPEC §11), on the official `mcp` SDK.

It serves the project of one A3sfile, never listens on a network port, and names the tools
of `tools.py`: each runs in a worker thread (they wait on the control API, or on a command),
returns structured JSON, and turns an A3sError into a tool error with the CLI's one line.
The SDK is imported only here (it is the `mcp` extra, ~0.6 s to import).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

from a3s_dev import __version__
from a3s_dev.agents import tools
from a3s_dev.errors import A3sError

INSTRUCTIONS = (
    "a3s runs this project's services (A3sfile.hcl). Start them with `up`, then `wait` instead of "
    "sleeping: it says why a service is not ready (its last probe result). Read logs with `logs` "
    "(use `grep` and `since`), restart one service with `restart`, run a one-off command in a "
    "service's environment with `run`. `status` and `graph` describe the stack."
)
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)
CHANGES = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)


async def _call(function: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    try:
        return await anyio.to_thread.run_sync(functools.partial(function, *args))
    except A3sError as exc:
        raise ToolError(exc.message) from None


def build(a3sfile: Path) -> MCPServer:
    """The server for the project of `a3sfile`, its eight tools registered."""
    server = MCPServer(name="a3s", version=__version__, instructions=INSTRUCTIONS)

    @server.tool(annotations=READ_ONLY)
    async def status() -> dict[str, Any]:
        """Every service: state, pid, port, health, last probe result, reason, restarts, url, CPU %, memory bytes;
        `warnings` by service when any holds (one restarting on files it writes itself)."""
        return await _call(tools.status, a3sfile)

    @server.tool(annotations=CHANGES)
    async def up(services: list[str] | None = None, timeout: float = 120.0) -> dict[str, Any]:
        """Start services (default: all) and their dependencies; wait until ready (at most `timeout` s).
        Returns ok, ready_in, each service's state and url, and each failure with its last lines."""
        return await _call(tools.up, a3sfile, services or [], timeout)

    @server.tool(annotations=DESTRUCTIVE)
    async def down(services: list[str] | None = None) -> dict[str, Any]:
        """Stop the named services and their dependents, or (none named) every service and the supervisor."""
        return await _call(tools.down, a3sfile, services or [])

    @server.tool(annotations=CHANGES)
    async def restart(service: str) -> dict[str, Any]:
        """Gracefully restart one service and wait until it is healthy: its new pid, or why not and its last lines."""
        return await _call(tools.restart, a3sfile, service)

    @server.tool(annotations=READ_ONLY)
    async def wait(services: list[str] | None = None, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until services (default: all) are ready, at most `timeout` s. Use it instead of sleeping:
        when not ready it gives each service's state, last probe result and reason."""
        return await _call(tools.wait, a3sfile, services or [], timeout)

    @server.tool(annotations=READ_ONLY)
    async def logs(service: str | None = None, n: int = 100, since: str | None = None,
                   grep: str | None = None) -> dict[str, Any]:
        """The last `n` log lines (at most 500) of one service or all, newer than `since` ("30s", "5m"),
        matching the regular expression `grep`: each with service, at (epoch seconds), text."""
        return await _call(tools.logs, a3sfile, service, n, since, grep)

    @server.tool(annotations=DESTRUCTIVE)
    async def run(service: str, command: str, timeout: float = 120.0) -> dict[str, Any]:
        """Run a shell command once in a service's folder with its exact environment (its dependencies
        started first): the exit code and the last 64 KB of output."""
        return await _call(tools.run, a3sfile, service, command, timeout)

    @server.tool(annotations=READ_ONLY)
    async def graph() -> dict[str, Any]:
        """Each service's dependencies with their conditions (started, healthy, completed), and the start order."""
        return await _call(tools.graph, a3sfile)

    return server


def serve(a3sfile: Path) -> int:
    """Serve on stdin and stdout until the client goes away."""
    build(a3sfile).run("stdio")
    return 0


def client_config(a3sfile: Path) -> str:
    """The JSON block that registers this server in an MCP client (Claude Desktop, Cursor, ...)."""
    entry = {
        "command": sys.executable,
        "args": ["-m", "a3s_dev", "-f", str(a3sfile), "mcp"],
        "cwd": str(a3sfile.parent),
    }
    return json.dumps({"mcpServers": {"a3s": entry}}, indent=2)
