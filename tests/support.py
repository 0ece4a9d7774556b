"""Shared test helpers: bounded polls, free ports, small real services written into tmp_path."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.02, message: str = "condition"
) -> T:
    """Poll `predicate` until it returns a truthy value; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def holds(predicate: Callable[[], object], seconds: float, *, message: str = "condition") -> None:
    """Assert that `predicate` stays true for the whole of `seconds` (checked every 10 ms):
    how a test says that something did not happen."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), f"{message} stopped holding"
        time.sleep(0.01)


async def until(predicate: Callable[[], T], timeout: float = 10.0, message: str = "condition") -> T:
    """The async twin of wait_until: a bounded poll that fails saying what it waited for."""
    import anyio

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await anyio.sleep(0.01)


async def stays(predicate: Callable[[], object], seconds: float, message: str = "condition") -> None:
    """The async twin of holds: `predicate` stays true for the whole of `seconds`."""
    import anyio

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), f"{message} stopped holding"
        await anyio.sleep(0.01)


def free_port() -> int:
    """A TCP port the OS just handed out on 127.0.0.1 (bound to 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def pids_in_group(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry))
    return found


def kill_group(pgid: int) -> None:
    """Best-effort SIGKILL of a whole process group (test cleanup)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def a3s_command() -> list[str]:
    """The installed `a3s` console script next to this Python, else `python -m a3s_dev`."""
    script = Path(sys.executable).with_name("a3s")
    return [str(script)] if script.exists() else [sys.executable, "-m", "a3s_dev"]


def start_a3s(
    folder: Path, *args: str, out: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """`a3s ARGS` in `folder`, in its own session (so cleanup can end its whole group),
    output to the file `out`, else to a pipe; NO_COLOR set."""
    sink = open(out, "w") if out is not None else subprocess.PIPE  # noqa: SIM115 - the child owns it
    try:
        return subprocess.Popen(
            [*a3s_command(), *args],
            cwd=folder,
            env={**(os.environ if env is None else env), "NO_COLOR": "1"},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            text=True,
        )
    finally:
        if out is not None:
            sink.close()


def stop_a3s(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 20) -> str:
    """Send `sig` to a3s's group and wait for it; SIGKILL the group if it hangs. Its piped output."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        out, _ = proc.communicate(timeout=10)
    return out or ""


def recorded_pgids(folder: Path) -> list[int]:
    """The process groups the supervisor recorded under `folder`/.a3s (groups.json)."""
    from a3s_dev.core.groups import read_groups
    from a3s_dev.run import workspace

    return [int(r["pgid"]) for r in read_groups(workspace.paths_for(folder / "A3sfile.hcl").groups).values()]


# A stdlib HTTP service. Env: PORT (required), NAME, DELAY (seconds before listening),
# RECORD (a file to which it appends "<name> <event> <time.time()>" lines), HEALTH_STATUS.
HTTP_SERVICE = textwrap.dedent(
    '''
    import http.server, os, sys, time

    name = os.environ.get("NAME") or os.environ.get("A3S_SERVICE", "svc")
    record = os.environ.get("RECORD")

    def note(event):
        if record:
            with open(record, "a") as f:
                f.write(f"{name} {event} {time.time()}\\n")

    note("spawned")
    time.sleep(float(os.environ.get("DELAY", "0")))

    agents = []  # the User-Agent of every /health request, shown at /seen-agents

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            status = int(os.environ.get("HEALTH_STATUS", "200")) if self.path == "/health" else 200
            if self.path == "/health":
                agents.append(self.headers.get("User-Agent", ""))
            body = f"hello from {name} pid {os.getpid()} path {self.path}\\n".encode()
            if self.path == "/seen-agents":
                body = "\\n".join(agents).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            print(f"{name}: " + fmt % args, flush=True)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    note("listening")
    print(f"{name} listening on {os.environ['PORT']}", flush=True)
    server.serve_forever()
    '''
)


def write_http_service(folder: Path, filename: str = "server.py") -> Path:
    """Write HTTP_SERVICE into `folder` and return its path."""
    path = folder / filename
    path.write_text(HTTP_SERVICE)
    return path
