"""Helpers for control-plane tests: a stack in tmp_path driven through the real `a3s` command,
whose background supervisor and every service process are ended even when a test fails."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support import free_port, kill_group, pid_alive, pids_in_group, wait_until

from a3s_dev.core.groups import read_groups
from a3s_dev.run import workspace

# A stdlib TCP/HTTP service that records "<name> <event> <time>" lines (spawned, listening,
# stopped) to $RECORD, so tests can see the order in which services were stopped.
SERVICE = textwrap.dedent(
    """
    import http.server, os, signal, sys, time

    name = os.environ.get("A3S_SERVICE", "svc")
    record = os.environ.get("RECORD")

    def note(event):
        if record:
            with open(record, "a") as f:
                f.write(f"{name} {event} {time.time()}\\n")

    def on_term(signum, frame):
        note("stopped")
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    note("spawned")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"{name} {os.getpid()}\\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            print(f"{name} got " + self.path, flush=True)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    note("listening")
    print(f"{name} listening on {os.environ['PORT']}", flush=True)
    server.serve_forever()
    """
)

# An HTTP service whose /health answers 500 (every other path 200): a probe that never passes.
# It prints "sick got <path>" for each request.
SICK = textwrap.dedent(
    """
    import os
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            print(f"sick got {self.path}", flush=True)
            self.send_response(500 if self.path == "/health" else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
    """
)


def service_block(
    name: str, cmd: str, *, port: int | None = None, depends_on: Sequence[str] = (), extra: str = ""
) -> str:
    lines = [f'service "{name}" {{', f"  cmd = {json.dumps(cmd)}"]
    if port is not None:
        lines.append(f"  port = {port}")
    if depends_on:
        lines.append(f"  depends_on = {json.dumps(list(depends_on))}")
    if extra:
        lines.append(textwrap.indent(textwrap.dedent(extra).strip(), "  "))
    lines.append("}")
    return "\n".join(lines) + "\n"


SICK_HEALTH = 'health {\n  path = "/health"\n  interval = "200ms"\n}'


def server_stack(folder: Path, *blocks: str) -> None:
    """`folder` with server.py (a healthy HTTP service) and sick.py (SICK), and an A3sfile of
    `blocks` with no proxy and a 3 s stop timeout."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "server.py").write_text(SERVICE)
    (folder / "sick.py").write_text(SICK)
    (folder / "A3sfile.hcl").write_text('dev {\n  proxy_port = 0\n  stop_timeout = "3s"\n}\n' + "".join(blocks))


def chain_a3sfile(folder: Path, names: Sequence[str] = ("db", "api", "web")) -> dict[str, int]:
    """Write server.py and an A3sfile where each service depends on the previous one; their ports."""
    (folder / "server.py").write_text(SERVICE)
    ports = {n: free_port() for n in names}
    blocks = ['dev {\n  proxy_port = 0\n  stop_timeout = "3s"\n}\n']
    previous: list[str] = []
    for name in names:
        blocks.append(
            service_block(
                name,
                f"exec {sys.executable} server.py",
                port=ports[name],
                depends_on=previous[-1:],
                extra=f'env = {{ RECORD = "{folder / "record.txt"}" }}',
            )
        )
        previous.append(name)
    (folder / "A3sfile.hcl").write_text("\n".join(blocks))
    return ports


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Stack:
    """A folder with an A3sfile, and the `a3s` command run in it."""

    folder: Path
    env: dict[str, str]
    seen_groups: set[int] = field(default_factory=set)

    @property
    def a3sfile(self) -> Path:
        return self.folder / "A3sfile.hcl"

    @property
    def paths(self) -> workspace.RuntimePaths:
        return workspace.paths_for(self.a3sfile)

    def a3s(self, *args: str, timeout: float = 60.0) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "a3s_dev", *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,  # the exit code is part of what the tests check
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "a3s_dev", *args],
            cwd=self.folder,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def status(self) -> dict[str, dict[str, Any]]:
        result = self.a3s("status", "--json")
        assert result.code == 0, result.err
        rows = {r["name"]: r for r in json.loads(result.out)}
        self.seen_groups.update(
            r["pid"] for r in rows.values() if r["pid"]
        )  # each service leads its group
        return rows

    def supervisor_pid(self) -> int | None:
        return workspace.read_pid(self.paths)

    def record(self) -> list[tuple[str, str]]:
        path = self.folder / "record.txt"
        if not path.exists():
            return []
        return [
            (ln.split()[0], ln.split()[1]) for ln in path.read_text().splitlines() if ln.strip()
        ]

    def cleanup(self) -> None:
        """End the supervisor and every service group this test could have started."""
        pid = self.supervisor_pid()
        groups = {int(r["pgid"]) for r in read_groups(self.paths.groups).values() if "pgid" in r}
        try:
            self.a3s("down", timeout=30)
        except subprocess.TimeoutExpired:
            pass
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        for pgid in groups | self.seen_groups:
            kill_group(pgid)


@contextmanager
def stack_in(folder: Path, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("A3S_")}
    env.update({"NO_COLOR": "1", **(extra_env or {})})
    stack = Stack(folder, env)
    try:
        yield stack
    finally:
        stack.cleanup()


def no_process_left(pgids: Sequence[int], timeout: float = 10.0) -> None:
    wait_until(
        lambda: not any(pids_in_group(g) for g in pgids),
        timeout=timeout,
        message=f"no process left in groups {list(pgids)}",
    )


@contextmanager
def proxied_stack(folder: Path) -> Iterator[tuple[Stack, int]]:
    """`a3s up -d` in `folder` on a proxy port of its own; the stack and that port."""
    proxy = free_port()
    with stack_in(folder, {"A3S_PROXY_PORT": str(proxy)}) as st:
        result = st.a3s("up", "-d")
        assert result.code == 0, result.out + result.err
        yield st, proxy
