"""The shared proxy's process, from the outside: where it is, starting it, stopping it.

One proxy runs per user and port (SPEC §6). Its Unix socket `proxy-<port>.sock` (0600, in the
per-user runtime folder) is where supervisors register. Finding a running proxy and
starting a new one happen under an `flock` on `proxy-<port>.lock`, so two `a3s up` at once
start one proxy, and a proxy that decides to exit never does so while someone is starting
to use it.

Whoever starts the proxy listens on its TCP port and its Unix socket first, then hands both
to the new process: a taken port is an error before anything is spawned, and a browser's or
a supervisor's first connection waits in the backlog instead of being refused.

Stdlib only, and nothing heavy: `a3s up` calls this before it spawns the first service.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from a3s_dev.errors import RuntimeFailure
from a3s_dev.link.protocol import MAX_MESSAGE, BadMessage, decode, encode
from a3s_dev.system import procfs
from a3s_dev.system.files import bind_unix_socket, private_dir, write_private
from a3s_dev.system.places import runtime_dir
from a3s_dev.system.ports import ListenFailure, listen_loopback
from a3s_dev.system.procfs import port_owner

START_TIMEOUT = 10.0  # seconds a new proxy has to answer its first registration
LOG_BYTES = 1024 * 1024  # past this, a new proxy starts a new log (the old one kept as .1)


def folder() -> Path:
    return runtime_dir()


def socket_path(port: int) -> Path:
    return folder() / f"proxy-{port}.sock"


def log_path(port: int) -> Path:
    return folder() / f"proxy-{port}.log"


def pid_path(port: int) -> Path:
    return folder() / f"proxy-{port}.pid"


@contextlib.contextmanager
def spawn_lock(port: int) -> Iterator[None]:
    """Hold `proxy-<port>.lock`: finding, starting and ending a proxy are one at a time."""
    private_dir(folder())
    fd = os.open(folder() / f"proxy-{port}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def connect(port: int, timeout: float = 5.0) -> socket.socket | None:
    """A connection to this user's proxy on `port`, or None when none runs."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(socket_path(port)))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    except BaseException:
        sock.close()
        raise
    return sock


PROXY_SETTING = "dev.proxy_port / A3S_PROXY_PORT (0 turns the proxy off)"


def port_taken(port: int, *, what: str = "proxy", setting: str = PROXY_SETTING) -> RuntimeFailure:
    """The one line for a port of the proxy (`what`: proxy, https) that another program (or
    another user's proxy) holds; `setting` is where another port is chosen."""
    owner = port_owner(port)
    who = f" by {owner}" if owner else ""
    return RuntimeFailure(f"{what}: port {port} is already in use{who}; stop it, or set {setting}")


def listen_error(exc: ListenFailure, *, what: str = "proxy", setting: str = PROXY_SETTING) -> RuntimeFailure:
    """The one line for a port of the proxy that cannot be listened on."""
    if exc.errno == errno.EADDRINUSE:
        return port_taken(exc.port, what=what, setting=setting)
    host = f"[{exc.host}]" if ":" in exc.host else exc.host
    return RuntimeFailure(f"{what}: cannot listen on {host}:{exc.port}: {exc.strerror}")


def listen_tcp(port: int, *, what: str = "proxy", setting: str = PROXY_SETTING) -> list[socket.socket]:
    """The proxy's listening sockets for `port` on 127.0.0.1 and ::1; RuntimeFailure, one line
    naming `what` and the `setting` that chooses another port, when they cannot be had."""
    try:
        return listen_loopback(port)
    except ListenFailure as exc:
        raise listen_error(exc, what=what, setting=setting) from None


def listen(port: int) -> tuple[list[socket.socket], socket.socket]:
    """The proxy's TCP sockets (127.0.0.1 and ::1) and its Unix socket; call under `spawn_lock`
    with no proxy answering, so an existing socket file is a dead proxy's and is replaced."""
    tcp = listen_tcp(port)
    try:
        unix = bind_unix_socket(socket_path(port))
    except BaseException:
        for sock in tcp:
            sock.close()
        raise
    return tcp, unix


class Reached(NamedTuple):
    """A connection to the proxy, and the listening sockets of one still to be started
    (`start`) when none was running; empty when one was."""

    connection: socket.socket
    unstarted: list[socket.socket]

    def close(self) -> None:
        """Close every socket (what `launch` has not handed to a started proxy yet, and the link)."""
        for sock in (self.connection, *self.unstarted):
            sock.close()


def ensure(port: int) -> Reached:
    """A connection to this user's proxy on `port`. When none runs, its sockets are listened
    on first and handed back unstarted: connections wait in their backlog until the caller
    `start`s the proxy on them. RuntimeFailure (one line) when the port is someone else's."""
    with spawn_lock(port):
        sock = connect(port)
        if sock is not None:
            return Reached(sock, [])
        tcp, unix = listen(port)
        try:
            sock = connect(port, timeout=START_TIMEOUT)
        except BaseException:
            for s in (*tcp, unix):
                s.close()
            raise
    if sock is None:  # pragma: no cover - we are listening on it
        raise RuntimeFailure(f"proxy: cannot connect to {socket_path(port)}")
    return Reached(sock, [*tcp, unix])


def running(port: int) -> socket.socket:
    """A connection to this user's proxy on `port`, started now when none runs."""
    reached = ensure(port)
    if reached.unstarted:
        try:
            start(port, reached.unstarted)
        finally:
            for s in reached.unstarted:
                s.close()
    return reached.connection


def start(port: int, sockets: Sequence[socket.socket]) -> int:
    """Start `python -m a3s_dev.proxy` in its own session on `sockets` (TCP ones first, the
    Unix one last); its pid. Its output is `proxy-<port>.log`."""
    fds = [s.fileno() for s in sockets]
    rotate_log(port)
    with open(log_path(port), "ab") as log:
        os.chmod(log_path(port), 0o600)
        proc = subprocess.Popen(
            # -P: no folder of the project on sys.path (it runs for every project)
            [sys.executable, "-P", "-m", "a3s_dev.proxy", "--port", str(port), "--fds", ",".join(map(str, fds))],
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal of the `up` that started it is not for it
            cwd="/",
        )
    # reaped when it exits, so it never lingers as a zombie of a long-running supervisor
    threading.Thread(target=proc.wait, name="a3s-proxy-reaper", daemon=True).start()
    return proc.pid


def rotate_log(port: int) -> None:
    """Move `proxy-<port>.log` to `proxy-<port>.log.1` once it passed `LOG_BYTES`, before a new
    proxy appends to it: one file per proxy port must not grow for good."""
    path = log_path(port)
    try:
        if path.stat().st_size >= LOG_BYTES:
            os.replace(path, path.with_name(path.name + ".1"))
    except FileNotFoundError:
        pass


def write_pid(port: int) -> None:
    write_private(pid_path(port), f"{os.getpid()}\n")


def remove_pid(port: int) -> None:
    """Remove the pid file as the proxy exits, when it is still this process's."""
    path = pid_path(port)
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()


def running_pid(port: int) -> int | None:
    """The pid of this user's proxy on `port`, when one answers."""
    sock = connect(port, timeout=2.0)
    if sock is None:
        return None
    sock.close()
    try:
        return int(pid_path(port).read_text().strip())
    except (OSError, ValueError):
        return None


def login(port: int, timeout: float = 5.0) -> str | None:
    """A one-time dashboard login token from this user's proxy on `port`, where its dashboard
    asks for one; None where it does not (it refuses other users by uid), or when none runs."""
    sock = connect(port, timeout=timeout)
    if sock is None:
        return None
    with sock, contextlib.suppress(OSError, BadMessage):
        sock.sendall(encode({"type": "login"}))
        with sock.makefile("rb") as answers:
            token = decode(answers.readline(MAX_MESSAGE)).get("token")
        return token if isinstance(token, str) else None
    return None


def stop(port: int, timeout: float = 10.0) -> int | None:
    """Ask this user's proxy on `port` to stop and wait until it has; its pid, None when none ran.
    RuntimeFailure when it is still there after `timeout` seconds."""
    pid = running_pid(port)
    sock = connect(port, timeout=timeout)
    if sock is None:
        return None
    if pid is not None and (fields := procfs.stat_fields(pid)) and fields[0] in (b"T", b"t"):
        # paused (SIGSTOP, Ctrl-Z, a debugger): its socket still takes connections, but it can
        # only read the stop once it runs again
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGCONT)
    with sock:
        sock.sendall(json.dumps({"type": "stop"}).encode() + b"\n")
        deadline = time.monotonic() + timeout
        with contextlib.suppress(OSError):
            while time.monotonic() < deadline and sock.recv(65536):
                pass  # the proxy closes every connection as it exits
    while pid is not None and time.monotonic() < deadline and procfs.alive(pid):
        time.sleep(0.02)
    if pid is not None and procfs.alive(pid):
        raise RuntimeFailure(f"the proxy on port {port} (pid {pid}) did not stop within {timeout:g} s; "
                             f"end it with: kill {pid}")
    return pid if pid is not None else 0
