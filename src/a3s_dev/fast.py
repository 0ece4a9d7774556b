"""The cold path of `a3s status`: find the control socket from the A3sfile's path and ask it, stdlib only.

`a3s status` against a running supervisor must answer in well under 100 ms, and importing
typer alone takes longer than that, so the console script enters here first: a plain
`a3s [-f FILE] [--no-color] status [--json] [--file FILE]` is answered straight from the
socket, with no HCL parse. Anything else, or no supervisor answering, goes to the typer app.
This module is also the one definition of where the socket lives (runtime.py uses it).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any, NamedTuple

A3SFILE_NAME = "A3sfile.hcl"
STATE_DIR_NAME = ".a3s"
SOCKET_NAME = "control.sock"
# sun_path is 108 bytes on Linux and one of them is the terminating NUL.
AF_UNIX_PATH_MAX = 107
SPEC_KEYS = ("name", "state", "pid", "port", "health", "uptime_s", "restarts", "exit_code", "url")
COLUMNS = ("NAME", "STATE", "PID", "PORT", "HEALTH", "UPTIME", "RESTARTS", "URL")
STATE_STYLE = {
    "running": "green",
    "completed": "green",
    "starting": "yellow",
    "pending": "yellow",
    "stopping": "yellow",
    "backoff": "red",
    "unhealthy": "red",
    "failed": "bold red",
    "stopped": "dim",
}


# ---------------------------------------------------------------------------- where things are


def find_a3sfile(
    explicit: str | None, cwd: str | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The A3sfile `config.find_file` would pick (`-f`, else $A3S_FILE, else upward search), or None.

    None means "let the slow path explain": it raises the proper one-line error.
    """
    env = os.environ if environ is None else environ
    here = os.path.abspath(cwd or os.getcwd())
    chosen = explicit if explicit is not None else env.get("A3S_FILE") or None
    if chosen is not None:
        path = os.path.join(here, os.path.expanduser(chosen))
        if os.path.isdir(path):
            path = os.path.join(path, A3SFILE_NAME)
        return os.path.abspath(path) if os.path.isfile(path) else None
    folder = here
    while True:
        candidate = os.path.join(folder, A3SFILE_NAME)
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def file_key(a3sfile: str) -> str:
    """A short stable key of an A3sfile's real path (names the fallback socket)."""
    import hashlib

    return hashlib.sha256(os.fsencode(os.path.realpath(a3sfile))).hexdigest()[:16]


def fallback_socket_dir() -> str:
    """$XDG_RUNTIME_DIR/a3s, else a per-user folder in the temp folder."""
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir and os.path.isdir(runtime_dir):
        return os.path.join(runtime_dir, "a3s")
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"a3s-{os.getuid()}")


def socket_path(a3sfile: str, state_dir: str | None = None) -> str:
    """`.a3s/control.sock`, or a hash-keyed socket under $XDG_RUNTIME_DIR (else the temp folder)
    when that path is longer than an AF_UNIX address can hold."""
    folder = state_dir or os.path.join(os.path.dirname(os.path.abspath(a3sfile)), STATE_DIR_NAME)
    preferred = os.path.join(folder, SOCKET_NAME)
    if len(os.fsencode(preferred)) <= AF_UNIX_PATH_MAX:
        return preferred
    return os.path.join(fallback_socket_dir(), f"{file_key(a3sfile)}.sock")


# ---------------------------------------------------------------------------- one request


def get_json(sock_path: str, path: str, timeout: float = 5.0) -> Any | None:
    """GET `path` over the Unix socket with a bare HTTP/1.0 request; the JSON body, or None when
    nobody answers or the answer is not a 200 (http.client alone costs ~30 ms to import)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(sock_path)
        sock.sendall(
            f"GET {path} HTTP/1.0\r\nHost: a3s\r\nAccept: application/json\r\n\r\n".encode()
        )
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        sock.close()
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or status_line[1] != b"200":
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


# ---------------------------------------------------------------------------- rendering


def format_uptime(seconds: float | None) -> str:
    """`45s`, `3m04s`, `2h05m`, `3d04h`; empty when not running."""
    if seconds is None:
        return ""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def table_cells(row: Mapping[str, Any]) -> list[str]:
    """One row's cells, in COLUMNS order."""

    def text(value: Any) -> str:
        return "" if value is None else str(value)

    return [
        str(row["name"]),
        str(row["state"]),
        text(row.get("pid")),
        text(row.get("port")),
        text(row.get("health")),
        format_uptime(row.get("uptime_s")),
        str(row.get("restarts", 0)),
        text(row.get("url")),
    ]


def render_plain(rows: Sequence[Mapping[str, Any]]) -> str:
    """Aligned columns without color, for pipes and files."""
    cells = [list(COLUMNS)] + [table_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() + "\n" for line in cells
    )


def render_rich(rows: Sequence[Mapping[str, Any]], out: IO[str], color: bool) -> None:
    """The rich table with the state colored, for a terminal."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in COLUMNS:
        table.add_column(
            col,
            no_wrap=col != "URL",
            justify="right" if col in ("PID", "PORT", "RESTARTS") else "left",
        )
    for row in rows:
        cells: list[Any] = table_cells(row)
        cells[1] = Text(str(row["state"]), style=STATE_STYLE.get(str(row["state"]), ""))
        table.add_row(*cells)
    Console(file=out, no_color=not color, highlight=False).print(table)


def render_status(
    rows: Sequence[Mapping[str, Any]], *, as_json: bool, out: IO[str], color: bool
) -> None:
    """`a3s status` output: SPEC §2 JSON, a rich table on a terminal, plain columns otherwise."""
    if as_json:
        out.write(json.dumps([{k: r.get(k) for k in SPEC_KEYS} for r in rows], indent=2) + "\n")
    elif out.isatty():
        render_rich(rows, out, color)
    else:
        out.write(render_plain(rows))


# ---------------------------------------------------------------------------- entry


class Plain(NamedTuple):
    """A command line simple enough to run without typer (a NamedTuple: dataclasses cost ~9 ms here)."""

    command: str
    file: str | None  # -f/--file; after the command it wins over before
    color: bool  # False with --no-color (before the command, like typer's global option)
    flags: frozenset[str]  # the command's own flags, --detach spelled -d
    names: tuple[str, ...]  # service names (only `up` takes them)


# The commands with a typer-free path: their flags, and whether they take service names.
PLAIN_COMMANDS: dict[str, tuple[frozenset[str], bool]] = {
    "status": (frozenset({"--json"}), False),
    "validate": (frozenset({"--json"}), False),
    "up": (frozenset({"-d", "--detach", "--no-deps", "--no-proxy", "--no-watch"}), True),
}


def parse_plain(argv: Sequence[str]) -> Plain | None:
    """`[-f F | --file F | --file=F | --no-color]... COMMAND [FLAG | -f F | --file F | NAME]...` for
    the commands of PLAIN_COMMANDS; None for anything else (typer then parses it and explains)."""
    command: str | None = None
    before: str | None = None
    after: str | None = None
    color = True
    flags: set[str] = set()
    names: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        value: str | None = None
        if arg in ("-f", "--file"):
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                return None
            value = argv[i + 1]
            i += 1
        elif arg.startswith("--file=") and len(arg) > len("--file="):
            value = arg[len("--file=") :]
        elif command is None:
            if arg == "--no-color":
                color = False
            elif arg in PLAIN_COMMANDS:
                command = arg
            else:
                return None
        elif arg in PLAIN_COMMANDS[command][0]:
            flags.add("-d" if arg == "--detach" else arg)
        elif PLAIN_COMMANDS[command][1] and arg and not arg.startswith("-"):
            names.append(arg)
        else:
            return None
        if value is not None:
            if command is None:
                before = value
            else:
                after = value
        i += 1
    if command is None:
        return None
    return Plain(command, after if after is not None else before, color, frozenset(flags), tuple(names))


def parse_status_argv(argv: Sequence[str]) -> tuple[str | None, bool, bool] | None:
    """(file, json, no_color) for a plain `status` command line; None for anything else."""
    p = parse_plain(argv)
    if p is None or p.command != "status":
        return None
    return p.file, "--json" in p.flags, not p.color


def try_status(argv: Sequence[str], out: IO[str]) -> int | None:
    """Answer `a3s status` from a running supervisor; None when this is not that case."""
    parsed = parse_status_argv(argv)
    if parsed is None:
        return None
    file, as_json, no_color = parsed
    a3sfile = find_a3sfile(file)
    if a3sfile is None:
        return None
    answer = get_json(socket_path(a3sfile), "/v1/status")
    if not isinstance(answer, dict) or not isinstance(answer.get("services"), list):
        return None
    color = not no_color and not os.environ.get("NO_COLOR")
    render_status(answer["services"], as_json=as_json, out=out, color=color)
    return 0


class UpArgs(NamedTuple):
    """A plain `a3s up -d` command line (a NamedTuple: dataclasses cost ~9 ms to import here)."""

    file: str | None
    services: tuple[str, ...]
    deps: bool
    proxy: bool
    watch: bool
    no_color: bool
    detach: bool = True


def parse_up_detached_argv(argv: Sequence[str]) -> UpArgs | None:
    """The options of `a3s [-f F] [--no-color] up [-d] [--no-deps] [--no-proxy] [--no-watch] [SVC...]`;
    None for anything else."""
    p = parse_plain(argv)
    if p is None or p.command != "up":
        return None
    return UpArgs(
        p.file,
        p.names,
        deps="--no-deps" not in p.flags,
        proxy="--no-proxy" not in p.flags,
        watch="--no-watch" not in p.flags,
        no_color=not p.color,
        detach="-d" in p.flags,
    )


def try_up_detached(argv: Sequence[str]) -> int | None:
    """`a3s up -d`, or `a3s up` with a supervisor running, without loading typer (~200 ms)."""
    parsed = parse_up_detached_argv(argv)
    if parsed is None:
        return None
    a3sfile = find_a3sfile(parsed.file)
    if a3sfile is None:
        return None
    if not parsed.detach and get_json(socket_path(a3sfile), "/healthz") != {"status": "ok"}:
        return None  # the foreground `up`: not ours
    from pathlib import Path

    from a3s_dev import daemon
    from a3s_dev.errors import A3sError

    opts = daemon.UpOptions(parsed.services, parsed.deps, parsed.proxy, parsed.watch)
    color = not parsed.no_color and not os.environ.get("NO_COLOR")
    try:
        return daemon.up(Path(a3sfile), opts, detach=parsed.detach, color=color)
    except A3sError as exc:
        print(f"a3s: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def main() -> None:
    """Console-script entry: the fast status and `up -d` paths, else the typer app."""
    try:
        code = try_status(sys.argv[1:], sys.stdout)
        if code is None:
            code = try_up_detached(sys.argv[1:])
    except BrokenPipeError:
        code = 0
    if code is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        # Nothing of ours needs tearing down: skip the interpreter's module cleanup.
        os._exit(code)
    # Then the typer-free foreground `up` (the first wave spawns before typer could even load).
    from a3s_dev.session import parse_fast_up

    up_args = parse_fast_up(sys.argv[1:])
    if up_args is not None:
        from a3s_dev.errors import A3sError
        from a3s_dev.session import run_fast_up

        try:
            up_code = run_fast_up(up_args)
        except A3sError as exc:
            print(f"a3s: {exc.message}", file=sys.stderr)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:  # Ctrl-C before the event loop took over the signals
            sys.exit(130)
        if up_code is not None:
            sys.exit(up_code)
    # Then foundation's typer-free `validate` path, then the typer app.
    from a3s_dev.entry import main as entry_main

    entry_main()
