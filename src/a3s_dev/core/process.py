"""Spawn, watch, signal and reap one service process (its own session, parent-death signal).

Processes are started with `subprocess.Popen` rather than asyncio's subprocess API: the
spawn is synchronous, so the first wave can start before the event loop (and asyncio
itself) is even imported, and exits are watched through a pidfd instead of asyncio's
child watcher, which on Python 3.11 costs one thread per child.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from a3s_dev.config.model import ServiceDef, signal_name
from a3s_dev.core.groups import GroupRecord
from a3s_dev.core.logs import LineSplitter
from a3s_dev.errors import RuntimeFailure
from a3s_dev.system.ports import port_in_use
from a3s_dev.system.procfs import group_alive, port_owner

if TYPE_CHECKING:
    import asyncio

READ_CHUNK = 1 << 18  # smaller reads than the 1 MB pipe: cache-friendlier splitting
PROMPT_AFTER = 0.15  # seconds of quiet after which an interactive service's open line is shown
RECENT_BYTES = 4096  # an interactive service's last output, shown to a terminal that attaches

# --------------------------------------------------------------------------- ports


def check_port_free(service: ServiceDef, holder: Callable[[int], str | None] = port_owner) -> None:
    """Raise RuntimeFailure("port 8080 is already in use by pid 12 (x)") before spawning onto a
    taken port; `holder` names who holds it (the run's names a service of another project)."""
    if service.port is None or not port_in_use(service.port):
        return
    owner = holder(service.port)
    raise RuntimeFailure(
        f"port {service.port} is already in use" + (f" by {owner}" if owner else "")
    )


# --------------------------------------------------------------------------- spawning

_libc_prctl: Callable[..., int] | None = None
PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    global _libc_prctl
    if _libc_prctl is None:
        try:
            import ctypes

            _libc_prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            return None
    return _libc_prctl


_SETPRIV: list[str | None] = []


def _setpriv() -> str | None:
    """util-linux `setpriv` when it knows `--pdeathsig` (2.33+), else None (then a preexec_fn does it)."""
    if not _SETPRIV:
        found = None
        for folder in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
            path = os.path.join(folder, "setpriv")
            try:
                with open(path, "rb") as f:
                    if b"pdeathsig" in f.read():
                        found = path
                        break
            except OSError:
                continue
        _SETPRIV.append(found)
    return _SETPRIV[0]


def _child_setup(parent: int, prctl: Callable[..., int] | None) -> Callable[[], None]:
    def setup() -> None:
        # Runs in the child between fork and exec. The signal is delivered when the
        # supervisor dies, even by SIGKILL; grandchildren are caught by groups.json.
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the supervisor died before prctl took effect
            os._exit(1)

    return setup


@dataclass(eq=False)
class ServiceProcess:
    """One running service: its Popen, process group and the read end of its output pipe."""

    name: str
    popen: subprocess.Popen[bytes]
    started: float  # time.time() at spawn
    started_mono: float
    returncode: int | None = None
    killed: bool = False  # a stop had to escalate to SIGKILL
    terminal: int = -1  # an interactive service's side of its pseudo-terminal (its output, our input)
    taps: list[Callable[[bytes], None]] = field(default_factory=list)  # `a3s attach` sessions: raw output
    recent: bytearray = field(default_factory=bytearray)  # the last output bytes, for a new attach
    _fed: int = 0  # reads of an interactive service's output so far (the prompt timer's clock)
    _pidfd: int = -1
    _out_fd: int = -1
    _exited: Any = None  # anyio.Event, created once a loop runs
    _eof: Any = None
    _on_lines: Callable[[list[str]], None] | None = None
    _splitter: LineSplitter = field(default_factory=LineSplitter)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def pgid(self) -> int:
        # start_new_session makes the child a session and group leader: pgid == pid.
        return self.popen.pid

    def record(self, service: ServiceDef) -> GroupRecord:
        """Its line in groups.json: what a later `up` or `down` needs to end it after a SIGKILL."""
        return GroupRecord(self.pid, self.pgid, self.started, service.stop_signal, service.stop_timeout)

    # -- async side -------------------------------------------------------------

    def attach(self, on_lines: Callable[[list[str]], None]) -> None:
        """Start relaying output to `on_lines` and watching for exit; needs a running asyncio loop."""
        import asyncio

        import anyio

        loop = asyncio.get_running_loop()
        self._exited = anyio.Event()
        self._eof = anyio.Event()
        self._on_lines = on_lines
        if self.terminal >= 0:
            self._out_fd = self.terminal
        else:
            assert self.popen.stdout is not None
            self._out_fd = self.popen.stdout.fileno()
        os.set_blocking(self._out_fd, False)
        loop.add_reader(self._out_fd, self._read, loop)
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except OSError:  # already reaped or no pidfd support: poll instead
            self._pidfd = -1
            loop.create_task(self._poll_exit())
        else:
            loop.add_reader(self._pidfd, self._reap, loop)

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        # Called by the loop when the pipe is readable: one chunked read, however long the
        # lines are (StreamReader.readline would stop at 64 KiB).
        try:
            data = os.read(self._out_fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            if self.terminal >= 0:
                self._relay_raw(data, loop)
            lines = self._splitter.feed(data)
            if lines and self._on_lines is not None:
                self._on_lines(lines)
            return
        self._close_output(loop)

    def _relay_raw(self, data: bytes, loop: asyncio.AbstractEventLoop) -> None:
        """An interactive service's bytes as they came, to each attached terminal; a line left
        open (a `(Pdb) ` prompt) reaches the stream once the output pauses for PROMPT_AFTER s."""
        for tap in list(self.taps):
            tap(data)
        self.recent += data
        del self.recent[:-RECENT_BYTES]
        self._fed += 1
        loop.call_later(PROMPT_AFTER, self._flush_prompt, self._fed)

    def _flush_prompt(self, seen: int) -> None:
        if seen != self._fed or self._out_fd < 0:
            return  # more came since: the line may still end
        rest = self._splitter.flush()
        if rest and self._on_lines is not None:
            self._on_lines(rest)

    def write_input(self, data: bytes) -> None:
        """Keys typed into an attached terminal, to the interactive service."""
        if self.terminal >= 0:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self.terminal, data)

    def resize(self, rows: int, columns: int) -> None:
        """The attached terminal's window size, for the service's terminal (SIGWINCH follows)."""
        if self.terminal >= 0:
            import fcntl
            import struct
            import termios

            with contextlib.suppress(OSError):
                fcntl.ioctl(self.terminal, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def _close_output(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._out_fd < 0:
            return
        loop.remove_reader(self._out_fd)
        rest = self._splitter.flush()
        if rest and self._on_lines is not None:
            self._on_lines(rest)
        if self.terminal >= 0:
            os.close(self.terminal)
            self.terminal = -1
        else:
            assert self.popen.stdout is not None
            self.popen.stdout.close()
        self._out_fd = -1
        self._eof.set()

    def _reap(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        self.returncode = self.popen.wait()
        self._exited.set()

    async def _poll_exit(self) -> None:
        import anyio

        while (code := self.popen.poll()) is None:
            await anyio.sleep(0.05)
        self.returncode = code
        self._exited.set()

    async def wait(self) -> int:
        """The exit code once the process has exited (negative: killed by that signal)."""
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    async def drain(self, timeout: float = 1.0) -> None:
        """Wait for the output pipe to reach EOF (bounded: a daemonized grandchild may hold it), then close it."""
        import asyncio

        import anyio

        with anyio.move_on_after(timeout):
            await self._eof.wait()
        if self._out_fd >= 0:
            # Read what is already buffered, then give up on the pipe.
            loop = asyncio.get_running_loop()
            while self._out_fd >= 0:
                try:
                    data = os.read(self._out_fd, READ_CHUNK)
                except OSError:
                    break
                if not data:
                    break
                lines = self._splitter.feed(data)
                if lines and self._on_lines is not None:
                    self._on_lines(lines)
            self._close_output(loop)

    async def terminate(self, sig: signal.Signals, timeout: float) -> int:
        """`sig` to the whole group, up to `timeout` s for it to exit, then SIGKILL the group."""
        import anyio

        deadline = time.monotonic() + timeout
        if self.returncode is None:
            signal_group(self.pgid, sig)
            with anyio.move_on_after(timeout):
                await self._exited.wait()
            if self.returncode is None:
                self.killed = True
                signal_group(self.pgid, signal.SIGKILL)
        else:
            signal_group(self.pgid, sig)  # the leader is gone; its children may not be
        code = await self.wait()
        await self.end_group(max(0.0, deadline - time.monotonic()))
        return code

    async def end_group(self, grace: float = 0.0) -> None:
        """After the leader exited: give what is left of its group `grace` s, then SIGKILL it."""
        import anyio

        deadline = time.monotonic() + grace
        while group_alive(self.pgid) and time.monotonic() < deadline:
            await anyio.sleep(0.02)
        signal_group(self.pgid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the whole group now (the second Ctrl-C)."""
        signal_group(self.pgid, signal.SIGKILL)


def signal_named(name: str) -> signal.Signals:
    """The signal an A3sfile names (`term`, `SIGTERM`); SIGTERM for a name that is no signal."""
    try:
        return signal.Signals[signal_name(name)]
    except KeyError:
        return signal.SIGTERM


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send `sig` to the process group; False when no process of it is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def _terminal_setup(parent: int, prctl: Callable[..., int] | None) -> Callable[[], None]:
    def setup() -> None:
        # In the child, after setsid: the pseudo-terminal on fd 0 becomes the session's
        # controlling terminal, so a typed Ctrl-C interrupts the service as in a real terminal.
        import fcntl
        import termios

        _child_setup(parent, prctl)()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    return setup


def spawn(service: ServiceDef, env: Mapping[str, str]) -> ServiceProcess:
    """Start `/bin/sh -c cmd` in the service's dir, in its own session, output (stdout+stderr) on one pipe
    (on a pseudo-terminal for an `interactive` service: `a3s attach` types into it).

    stderr shares the pipe so that a traceback stays in order with the prints before it.
    """
    return spawn_argv(service, ["/bin/sh", "-c", service.cmd], env)


P = TypeVar("P", bound=ServiceProcess)


def spawn_argv(service: ServiceDef, argv: list[str], env: Mapping[str, str], make: type[P] = ServiceProcess) -> P:  # type: ignore[assignment]
    """`spawn` of any command line (a container's client: core.containers), as a `make`."""
    if not service.dir.is_dir():
        raise RuntimeFailure(f"service {service.name}: dir {service.dir} does not exist")
    if service.interactive:
        return _spawn_on_terminal(service, argv, env, make)
    setpriv = _setpriv()
    if setpriv is not None and argv[:2] == ["/bin/sh", "-c"] and len(argv) == 3:
        # setpriv sets the parent-death signal and execs the shell, so Popen needs no
        # preexec_fn and can use vfork: 8 spawns take ~9 ms instead of ~36 ms.
        # A first shell then checks that its parent is still us (had we died between the spawn
        # and setpriv's prctl, no signal would ever come and the service would be orphaned)
        # and execs the shell that runs the command, given as its $0: `ps` shows the command
        # as written, and the shell's messages (`/bin/sh: 1: x: not found`) count its lines.
        guard = f'[ "$PPID" = {os.getpid()} ] || exit 129; exec /bin/sh -c "$0"'
        argv = [setpriv, "--pdeathsig", "KILL", "/bin/sh", "-c", guard, argv[2]]
        preexec = None
    elif setpriv is not None:
        guard = f'[ "$PPID" = {os.getpid()} ] || exit 129; exec "$@"'
        argv = [setpriv, "--pdeathsig", "KILL", "/bin/sh", "-c", guard, argv[0], *argv]
        preexec = None
    else:
        preexec = _child_setup(os.getpid(), _prctl())
    try:
        popen = subprocess.Popen(
            argv,
            cwd=service.dir,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own group: one killpg reaches grandchildren; Ctrl-C is ours to relay
            preexec_fn=preexec,  # noqa: PLW1509 - only without setpriv; it calls prctl, nothing else
            close_fds=True,
        )
    except OSError as exc:
        raise RuntimeFailure(
            f"service {service.name}: cannot start: {exc.strerror or exc}"
        ) from None
    except (ValueError, UnicodeError) as exc:
        # A NUL byte or a lone surrogate in the command, its folder or its environment (an
        # env_file validation did not see, or a variable a3s inherited): one line, not a crash.
        raise RuntimeFailure(f"service {service.name}: cannot start: {exc}") from None
    _grow_pipe(popen)
    return make(service.name, popen, time.time(), time.monotonic())


def _spawn_on_terminal(service: ServiceDef, argv: list[str], env: Mapping[str, str], make: type[P]) -> P:
    """An interactive service: its stdin, stdout and stderr are a new pseudo-terminal's side, its
    controlling terminal; the supervisor keeps the other side (`ServiceProcess.terminal`)."""
    import pty

    main, side = pty.openpty()
    try:
        popen = subprocess.Popen(
            argv,
            cwd=service.dir,
            env={"TERM": "xterm-256color", **env},
            stdin=side,
            stdout=side,
            stderr=side,
            start_new_session=True,
            preexec_fn=_terminal_setup(os.getpid(), _prctl()),  # noqa: PLW1509 - prctl and TIOCSCTTY only
            close_fds=True,
        )
    except (OSError, ValueError, UnicodeError) as exc:
        os.close(main)
        raise RuntimeFailure(f"service {service.name}: cannot start: {getattr(exc, 'strerror', None) or exc}") from None
    finally:
        os.close(side)
    return make(service.name, popen, time.time(), time.monotonic(), terminal=main)


F_SETPIPE_SZ = 1031  # Linux fcntl; not exposed by the fcntl module before Python 3.10 on all builds
PIPE_SIZE = 1 << 20


def _grow_pipe(popen: subprocess.Popen[bytes]) -> None:
    """Make the output pipe 1 MB (the default 64 KiB makes a chatty child stop every 64 KiB
    until we read, which costs a context switch per 64 KiB)."""
    if popen.stdout is None:
        return
    try:
        import fcntl

        fcntl.fcntl(popen.stdout.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass  # over /proc/sys/fs/pipe-max-size or not Linux: the default still works
