"""`a3s status`, `logs`, `down` and `restart`: clients of a running supervisor, usable from any terminal.

Each function takes the A3sfile path and output streams and returns the exit code, so the
CLI stays thin and tests can drive them directly. The A3sfile is parsed only when no
supervisor answers (status needs the service names then).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from a3s_dev import runtime
from a3s_dev.control import ControlClient, NotRunning
from a3s_dev.errors import A3sError, unknown_service
from a3s_dev.fast import render_status


class NothingRunning(A3sError):
    """A command that needs a supervisor found none."""


def client_for(a3sfile: Path) -> ControlClient:
    return ControlClient(runtime.socket_path_for(a3sfile))


# ---------------------------------------------------------------------------- status


def stopped_rows(a3sfile: Path) -> list[dict[str, Any]]:
    """Every service of the A3sfile as `stopped` (no supervisor runs): this one parses the file."""
    from a3s_dev.config import load

    config = load(a3sfile)
    return [
        {
            "name": s.name,
            "state": "stopped",
            "pid": None,
            "port": s.port,
            "health": None,
            "uptime_s": None,
            "restarts": 0,
            "exit_code": None,
            "url": s.url,
        }
        for s in config.services
    ]


def status_rows(a3sfile: Path) -> list[dict[str, Any]]:
    """The status of every service: from the supervisor when one answers, else all `stopped`."""
    paths = runtime.paths_for(a3sfile)
    client = ControlClient(paths.socket)
    # A supervisor holding the lock attaches its control API once its first services
    # settle (at most a few seconds): wait for it rather than call its services stopped.
    deadline = time.monotonic() + 5.0
    while True:
        try:
            return list(client.status()["services"])
        except NotRunning:
            if not runtime.lock_held(paths) or time.monotonic() > deadline:
                return stopped_rows(a3sfile)
            time.sleep(0.05)


def status(a3sfile: Path, *, as_json: bool, out: IO[str], color: bool) -> int:
    """`a3s status [--json]`."""
    render_status(status_rows(a3sfile), as_json=as_json, out=out, color=color)
    return 0


# ---------------------------------------------------------------------------- logs


def _declared_names(a3sfile: Path, client: ControlClient, running: bool) -> tuple[str, ...] | None:
    """The services in declaration order: from the supervisor, else from the A3sfile; None when
    it does not load (the logs are still worth showing then)."""
    if running:
        try:
            return tuple(r["name"] for r in client.status()["services"])
        except NotRunning:
            pass
    from a3s_dev.config import load

    try:
        return load(a3sfile).names
    except A3sError:
        return None


def _check_names(names: Sequence[str], known: Sequence[str]) -> None:
    error = unknown_service((n for n in names if n != "a3s"), known)
    if error is not None:
        raise error


def logs(
    a3sfile: Path,
    services: Sequence[str],
    *,
    follow: bool,
    last: int | None,
    since: float | None,
    out: IO[bytes],
    color: bool,
) -> int:
    """`a3s logs`: the merged history from `.a3s/logs/` in time order, then (with `follow`) the
    live lines from the supervisor's log stream until it stops or Ctrl-C."""
    from a3s_dev.history import read_history, service_files
    from a3s_dev.logs import TerminalSink

    paths = runtime.paths_for(a3sfile)
    client = ControlClient(paths.socket)
    running = client.healthz()
    files = service_files(paths.logs_dir)
    declared = _declared_names(a3sfile, client, running)
    if services and declared is not None:
        _check_names(services, declared)
    stream = None
    until = None
    if follow and running:
        # Subscribe first: lines up to `since` come from the files, later ones from the stream.
        try:
            stream = client.logs(services, n=0, follow=True)
            until = float(next(stream)["since"])
        except (NotRunning, StopIteration):
            stream = None
    since_at = time.time() - since if since is not None else None
    history = read_history(paths.logs_dir, services or None, since=since_at, until=until, last=last)
    # The declared names in their order give the foreground's padding and colors exactly.
    names = list(declared) if declared is not None else sorted(set(services) | set(files))
    sink = TerminalSink([*names, "a3s"], out, color=color)
    try:
        for entry in history:
            sink.write(entry.service, [entry.text], entry.at, "stdout")
        if stream is not None:
            try:
                for line in stream:
                    if "text" in line:
                        sink.write(
                            line["service"],
                            [line["text"]],
                            float(line["at"]),
                            line.get("stream", "stdout"),
                        )
            except KeyboardInterrupt:
                pass
    finally:
        sink.close()
    return 0


# ---------------------------------------------------------------------------- down


def down(a3sfile: Path, services: Sequence[str], *, out: IO[str], wait: float = 300.0) -> int:
    """`a3s down [SVC...]`: everything (the supervisor exits) or the named services, dependents
    first. With no supervisor: end what a SIGKILLed one left, or say nothing is running."""
    paths = runtime.paths_for(a3sfile)
    client = ControlClient(paths.socket)
    # A supervisor that holds the lock but does not answer yet is still starting: wait for it.
    deadline = time.monotonic() + 30.0
    while not client.healthz() and runtime.lock_held(paths) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not client.healthz():
        ended = runtime.clean_stale(paths)
        if ended:
            names = ", ".join(o.service for o in ended)
            print(f"a3s: ended the process groups a killed supervisor left: {names}", file=out)
        else:
            print("nothing is running", file=out)
        return 0
    before = {r["name"]: r for r in client.status()["services"]}
    if services:
        _check_names(services, list(before))
        after = client.stop(services)["services"]
        stopped = [
            r["name"]
            for r in after
            if r["state"] == "stopped" and before[r["name"]]["state"] != "stopped"
        ]
        print(f"a3s: stopped {', '.join(stopped)}" if stopped else "a3s: nothing to stop", file=out)
        return 0
    pid = int(client.down().get("pid") or 0)
    deadline = time.monotonic() + wait
    # The supervisor stops every service, removes its socket and releases its lock, then exits.
    while runtime.lock_held(paths) or (pid and _alive(pid)):
        if time.monotonic() > deadline:
            print(f"a3s: the supervisor (pid {pid}) is still stopping after {wait:g}s", file=out)
            return 1
        time.sleep(0.02)
    live = [n for n, r in before.items() if r["state"] not in ("stopped", "completed", "failed")]
    print(f"a3s: stopped {', '.join(live)}" if live else "a3s: stopped the supervisor", file=out)
    return 0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# ---------------------------------------------------------------------------- restart


def restart(
    a3sfile: Path, services: Sequence[str], *, out: IO[str], err: IO[str], timeout: float = 60.0
) -> int:
    """`a3s restart SVC...`: graceful stop, start, wait until healthy; 1 with the reason if not."""
    client = client_for(a3sfile)
    if not client.healthz():
        raise NothingRunning("nothing is running (start the stack with `a3s up -d`)")
    answer = client.restart(services, timeout=timeout)
    if answer.get("ok"):
        pids = {r["name"]: r["pid"] for r in answer.get("services", [])}
        done = ", ".join(f"{n} (pid {pids.get(n)})" if pids.get(n) else n for n in services)
        print(f"a3s: restarted {done}", file=out)
        return 0
    print(f"a3s: {answer.get('failed')} did not get healthy: {answer.get('reason')}", file=err)
    tail = answer.get("tail") or []
    if tail:
        print(f"a3s: last {len(tail)} log lines of {answer.get('failed')}:", file=err)
        for line in tail:
            print(f"  {line}", file=err)
    return 1


def stdout_bytes() -> IO[bytes]:
    """The binary stdout (log lines pass through as bytes, the children's ANSI colors included)."""
    return sys.stdout.buffer if hasattr(sys.stdout, "buffer") else sys.stdout  # type: ignore[return-value]
