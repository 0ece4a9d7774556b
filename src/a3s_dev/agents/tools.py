"""The agents' tools (SPEC §11) as plain functions: an A3sfile and the tool's arguments in, a small
JSON-able dict out, an A3sError (with the CLI's one line) for anything wrong. Each is a client
of the project's control API, or of the functions the CLI uses when no supervisor runs; the MCP
server (`server.py`) only names and describes them. Agents pay per token: results are small.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

from a3s_dev.control.client import ControlClient, NotRunning
from a3s_dev.errors import A3sError, UsageError, unknown_service
from a3s_dev.run import workspace

MAX_LINES = 500  # log lines one `logs` call returns at most
MAX_OUTPUT = 64 * 1024  # bytes of a `run` command's output returned (its last ones)
ROW_KEYS = ("name", "state", "pid", "port", "health", "probe", "reason", "restarts", "url", "cpu", "rss")


def _client(a3sfile: Path) -> ControlClient:
    return ControlClient(workspace.paths_for(a3sfile).socket)


def _nothing_running() -> A3sError:
    return A3sError("nothing is running (start the stack with the `up` tool)")


def status(a3sfile: Path) -> dict[str, Any]:
    """Every service: state, pid, port, health, last probe result, reason, restarts, url, CPU,
    memory; and, when there are any, the warnings that hold about a service (a restart loop)."""
    from a3s_dev.run.inspect import status_answer

    rows, _, warnings = status_answer(a3sfile)
    project = next((r.get("project") for r in rows if r.get("project")), None)
    result = {"project": project, "services": [{k: r.get(k) for k in ROW_KEYS if r.get(k) is not None} for r in rows]}
    if warnings:
        result["warnings"] = warnings
    return result


def up(a3sfile: Path, services: list[str], timeout: float) -> dict[str, Any]:
    """`a3s up -d --json`: start (a background supervisor when none runs) and wait until ready."""
    from a3s_dev.run.background import up_result
    from a3s_dev.run.options import UpOptions

    _, result, _ = up_result(a3sfile, UpOptions(tuple(services), detach=True, timeout=timeout))
    return result


def down(a3sfile: Path, services: list[str]) -> dict[str, Any]:
    """Stop the named services (and their dependents), or everything and the supervisor."""
    client = _client(a3sfile)
    try:
        before = {r["name"]: r["state"] for r in client.status()["services"]}
    except NotRunning:
        ended = workspace.clean_stale(workspace.paths_for(a3sfile))
        return {"stopped": [], "orphans_ended": [o.service for o in ended], "supervisor_stopped": False}
    started = ("starting", "running", "unhealthy", "stopping", "backoff")
    if services:
        error = unknown_service(services, list(before))
        if error is not None:
            raise error
        after = client.stop(services)["services"]
        stopped = [r["name"] for r in after if r["state"] == "stopped" and before[r["name"]] in started]
        return {"stopped": stopped, "supervisor_stopped": False}
    client.down()
    paths = workspace.paths_for(a3sfile)
    deadline = time.monotonic() + 120
    while workspace.lock_held(paths) and time.monotonic() < deadline:
        time.sleep(0.02)
    return {"stopped": [n for n, st in before.items() if st in started], "supervisor_stopped": not workspace.lock_held(paths)}


def restart(a3sfile: Path, service: str, timeout: float = 60.0) -> dict[str, Any]:
    """Graceful stop and start of one service, waiting until it is healthy again."""
    client = _client(a3sfile)
    try:
        answer = client.restart([service], timeout=timeout)
    except NotRunning:
        raise _nothing_running() from None
    row: dict[str, Any] = next((r for r in answer.get("services", []) if r["name"] == service), {})
    result: dict[str, Any] = {"ok": bool(answer.get("ok")), "state": row.get("state"), "pid": row.get("pid")}
    if not answer.get("ok"):
        result.update(reason=answer.get("reason"), tail=answer.get("tail") or [])
    return result


def wait(a3sfile: Path, services: list[str], timeout: float) -> dict[str, Any]:
    """Until the services are ready: `ok`, or each one that is not with its state, probe and reason."""
    from a3s_dev.run.background import wait_for

    try:
        ok, rows, said = wait_for(_client(a3sfile), services, until="ready", timeout=timeout)
    except NotRunning:
        raise _nothing_running() from None
    keys = ("name", "state", "probe", "reason")
    return {"ok": ok, "said": said, "services": [{k: r.get(k) for k in keys if r.get(k) is not None} for r in rows]}


def logs(a3sfile: Path, service: str | None, n: int, since: str | None, grep: str | None) -> dict[str, Any]:
    """The last `n` lines (at most 500) of a service or of all, from the log files, newer than
    `since` (`30s`, `5m`), matching `grep` (a regular expression)."""
    from a3s_dev.config.model import parse_duration
    from a3s_dev.core.history import read_history

    if not 1 <= n <= MAX_LINES:
        raise UsageError(f"n must be from 1 to {MAX_LINES}, got {n}")
    try:
        pattern = re.compile(grep) if grep else None
        window = parse_duration(since) if since else None
    except (re.error, ValueError) as exc:
        raise UsageError(f"logs: {exc}") from None
    if service is not None:
        names = [r["name"] for r in status(a3sfile)["services"]]
        error = unknown_service([service], [*names, "a3s"])
        if error is not None:
            raise error
    paths = workspace.paths_for(a3sfile)
    since_at = time.time() - window if window is not None else None
    entries = read_history(paths.logs_dir, [service] if service else None, since=since_at)
    matched = [e for e in entries if pattern is None or pattern.search(e.text)]
    chosen = matched[-n:]
    return {
        "lines": [{"service": e.service, "at": round(e.at, 3), "text": e.text} for e in chosen],
        "more": len(matched) - len(chosen),  # older matching lines left out
    }


def run(a3sfile: Path, service: str, command: str, timeout: float) -> dict[str, Any]:
    """`a3s run SVC -- sh -c COMMAND`, its dependencies up first: the exit code and the last
    64 KB of its output (stdout and stderr together), saying when it was cut or timed out."""
    from a3s_dev.run.background import Quiet, run_place

    code, place = run_place(a3sfile, service, deps=True, progress=Quiet())
    if code != 0:
        raise A3sError(f"run: the dependencies of {service} did not get ready (see the `wait` tool)")
    env = dict(place["env"], PWD=place["dir"])
    argv = ["/bin/sh", "-c", command]
    runtime = None
    if place.get("image"):  # a new container of its image (SPEC §14)
        from a3s_dev.config.load import load
        from a3s_dev.core.containers import one_off

        argv, env, runtime = one_off(load(a3sfile), service, argv, tty=False)
    try:
        done = subprocess.run(argv, cwd=place["dir"], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, check=False)
        output, exit_code, timed_out = done.stdout, done.returncode, False
    except subprocess.TimeoutExpired as exc:
        output, exit_code, timed_out = exc.stdout or b"", None, True
        if runtime is not None:  # the client is gone; its container is not
            from a3s_dev.core.containers import remove

            remove(runtime, argv[argv.index("--name") + 1])
    cut = len(output) > MAX_OUTPUT
    return {
        "exit_code": exit_code,
        "output": output[-MAX_OUTPUT:].decode("utf-8", "replace"),
        "cut": f"only the last {MAX_OUTPUT // 1024} KB of {len(output)} bytes" if cut else None,
        "timed_out": timed_out,
    }


def graph(a3sfile: Path) -> dict[str, Any]:
    """Each service's dependencies with their conditions, and the start order."""
    from a3s_dev.config.graph import start_order
    from a3s_dev.config.load import load

    config = load(a3sfile)
    services = {
        s.name: {d: (s.conditions[d].value if d in s.conditions else "healthy") for d in s.depends_on}
        for s in config.services
    }
    return {"depends_on": services, "start_order": start_order(config)}
