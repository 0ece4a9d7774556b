"""Where a project's things are: the A3sfile (discovery) and its `.a3s/` state folder (lock, pid
file, control socket, logs, recorded groups), the supervisor lock and the project's name claim.

Everything here is stdlib only, because `a3s status` loads it on its fast path.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import NamedTuple, Self

from a3s_dev.core.groups import (
    GROUPS_FILE,
    Orphan,
    end_groups,
    read_groups,
    recorded_orphans,
    recorded_runtimes,
)
from a3s_dev.errors import A3sError, ConfigError, project_name_taken
from a3s_dev.system import procfs
from a3s_dev.system.files import bind_unix_socket, private_dir, write_private
from a3s_dev.system.places import runtime_dir

A3SFILE_NAME = "A3sfile.hcl"
STATE_DIR_NAME = ".a3s"
SOCKET_NAME = "control.sock"
# sun_path is 108 bytes on Linux and one of them is the terminating NUL.
AF_UNIX_PATH_MAX = 107


class AlreadyRunning(A3sError):
    """Another supervisor holds the lock for this A3sfile."""

    def __init__(self, pid: int | None, a3sfile: Path) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"{a3sfile}: a supervisor is already running ({who}); use `a3s down` to stop it")
        self.pid = pid


# ---------------------------------------------------------------------------- paths


class RuntimePaths(NamedTuple):
    """Where a supervisor of one A3sfile keeps its runtime files (NamedTuples here: `a3s status`
    loads this module, and dataclasses cost ~10 ms to import)."""

    a3sfile: Path
    state_dir: Path
    socket: Path
    lock: Path
    pid: Path
    supervisor_log: Path
    groups: Path
    logs_dir: Path


def find_file(explicit: Path | str | None, cwd: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The A3sfile to use: `-f/--file`, else $A3S_FILE, else A3sfile.hcl here or in a parent folder.

    Raises ConfigError with the one line to print when there is none.
    """
    env = os.environ if environ is None else environ
    here = Path(os.path.abspath(cwd or os.getcwd()))
    chosen = Path(explicit) if explicit is not None else (Path(env["A3S_FILE"]) if env.get("A3S_FILE") else None)
    if chosen is not None:
        chosen = chosen.expanduser()
        path = chosen if chosen.is_absolute() else here / chosen
        if path.is_dir():
            path = path / A3SFILE_NAME
        if not path.is_file():
            source = "--file" if explicit is not None else "A3S_FILE"
            raise ConfigError(f"{chosen}: no such file (given by {source})")
        return path
    for folder in (here, *here.parents):
        candidate = folder / A3SFILE_NAME
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no {A3SFILE_NAME} in {here} or any parent folder (create one, or name it with -f/--file or A3S_FILE)"
    )


def state_dir_for(a3sfile: Path) -> Path:
    """The A3sfile's own state folder beside it: `.a3s/` for `A3sfile.hcl`, `.a3s-<stem>/` for
    any other name, so that `-f other.hcl` never sees or stops A3sfile.hcl's supervisor."""
    path = Path(os.path.abspath(a3sfile))
    name = STATE_DIR_NAME if path.name == A3SFILE_NAME else f"{STATE_DIR_NAME}-{path.stem}"
    return path.parent / name


def file_key(a3sfile: Path) -> str:
    """A short stable key of an A3sfile's real path (names the fallback socket)."""
    import hashlib

    return hashlib.sha256(os.fsencode(os.path.realpath(a3sfile))).hexdigest()[:16]


def socket_path_for(a3sfile: Path, state_dir: Path | None = None) -> Path:
    """`.a3s/control.sock`, or a hash-keyed socket under $XDG_RUNTIME_DIR (else the temp folder)
    when that path is longer than an AF_UNIX address can hold."""
    preferred = (state_dir or state_dir_for(a3sfile)) / SOCKET_NAME
    if len(os.fsencode(preferred)) <= AF_UNIX_PATH_MAX:
        return preferred
    return runtime_dir() / f"{file_key(a3sfile)}.sock"


def paths_for(a3sfile: Path, state_dir: Path | None = None) -> RuntimePaths:
    """Every runtime path of the supervisor of `a3sfile` (nothing is created)."""
    a3sfile = Path(os.path.abspath(a3sfile))
    state = Path(os.path.abspath(state_dir)) if state_dir is not None else state_dir_for(a3sfile)
    return RuntimePaths(
        a3sfile=a3sfile,
        state_dir=state,
        socket=socket_path_for(a3sfile, state),
        lock=state / "supervisor.lock",
        pid=state / "supervisor.pid",
        supervisor_log=state / "supervisor.log",
        groups=state / GROUPS_FILE,
        logs_dir=state / "logs",
    )


def ensure_state_dir(paths: RuntimePaths) -> Path:
    """Create the state folder (0700, with a `.gitignore` of `*` so it never shows in `git
    status`, as pytest's and ruff's caches do) and the socket's private folder when it lives
    elsewhere; return the state folder."""
    private_dir(paths.state_dir)
    ignore = paths.state_dir / ".gitignore"
    if not ignore.exists():
        with contextlib.suppress(OSError):
            ignore.write_text("# Created by a3s: its runtime state, never committed.\n*\n")
    if paths.socket.parent != paths.state_dir:
        private_dir(paths.socket.parent)
    return paths.state_dir


# ---------------------------------------------------------------------------- lock and pid


PROBE_GRACE = 0.05  # seconds a taken lock is retried before it counts as a running supervisor


class SupervisorLock:
    """An exclusive `flock` on `.a3s/supervisor.lock` plus `supervisor.pid`, held while a supervisor runs.

    The kernel drops a flock when its holder dies, so a SIGKILLed supervisor never leaves
    a lock that blocks the next one; the pid file is only informative.
    """

    def __init__(self, paths: RuntimePaths) -> None:
        self.paths = paths
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise AlreadyRunning; then write our pid."""
        ensure_state_dir(self.paths)
        busy_until: float | None = None
        while True:
            fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                # `lock_held` (status, up -d, down) takes the lock for an instant to look:
                # a lock that is free again within PROBE_GRACE was such a look, not a supervisor.
                now = time.monotonic()
                busy_until = busy_until or now + PROBE_GRACE
                if now >= busy_until:
                    raise AlreadyRunning(read_pid(self.paths), self.paths.a3sfile) from None
                time.sleep(0.002)
                continue
            # The file is removed by whoever holds it last (release, clean_stale): a lock on a
            # file that was unlinked meanwhile guards nothing, so take the new one instead.
            try:
                if os.fstat(fd).st_ino == os.stat(self.paths.lock).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        self._fd = fd
        try:
            write_private(self.paths.pid, f"{os.getpid()}\n")
        except OSError as exc:  # a full disk: one line, and nothing left behind
            self.release()
            raise A3sError(
                f"{self.paths.state_dir}: cannot write the supervisor's pid file ({exc.strerror or exc}); "
                "free some disk space and try again"
            ) from None

    def release(self) -> None:
        """Remove the pid file, the socket and the lock file, then drop the lock (in that order,
        so a waiter that gets the lock never sees our leftovers)."""
        if self._fd is None:
            return
        for leftover in (self.paths.pid, self.paths.socket, self.paths.lock):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        fd, self._fd = self._fd, None
        os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_held(paths: RuntimePaths) -> bool:
    """True while some process holds the supervisor lock of this A3sfile."""
    try:
        fd = os.open(paths.lock, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also releases the probe lock if we got it
    return False


def port_holder(port: int) -> str | None:
    """Who listens on `port`: `api of project notes (pid 1234)` when it is a service of a
    running a3s project (its group is in that project's groups.json), else `pid 1234 (uvicorn)`;
    None when /proc does not say."""
    pid = procfs.port_owner_pid(port)
    if pid is None:
        return None
    group = procfs.process_group(pid)
    for claim in sorted((runtime_dir() / "projects").glob("*.lock")):
        try:
            a3sfile = claim.read_text().strip()
        except OSError:
            continue
        if not a3sfile:
            continue
        for service, record in read_groups(paths_for(Path(a3sfile)).groups).items():
            if group is not None and record.get("pgid") == group:
                return f"{service} of project {claim.stem} (pid {pid})"
    return f"pid {pid} ({procfs.comm(pid) or '?'})"


def file_digest(path: Path) -> str:
    """The sha256 of a file's bytes ("" when it cannot be read): which A3sfile a stack runs."""
    import hashlib

    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def wait_for_supervisor(paths: RuntimePaths, answers: Callable[[], bool], timeout: float, poll: float = 0.01) -> bool:
    """While a supervisor holds the lock but its control socket is silent, it is starting: wait
    for it to answer (`answers()`), at most `timeout` s. True once it answers; False when no
    supervisor holds the lock (any more) or it did not answer in time."""
    deadline = time.monotonic() + timeout
    while not answers():
        if not lock_held(paths) or time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


def read_pid(paths: RuntimePaths) -> int | None:
    """The pid in `supervisor.pid`, if the file is there and sane."""
    try:
        return int(paths.pid.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


class ProjectClaim:
    """A project's name, held while its supervisor runs (SPEC §6): an `flock` on
    `<runtime dir>/projects/<name>.lock`, which names the A3sfile holding it. A second running
    project with the same name (another A3sfile) is refused before anything starts."""

    def __init__(self, name: str, a3sfile: Path) -> None:
        self.name = name
        self.a3sfile = Path(os.path.abspath(a3sfile))
        self.path = runtime_dir() / "projects" / f"{name}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        private_dir(self.path.parent.parent)
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            where = holder or "another A3sfile"
            raise A3sError(project_name_taken(self.name, where)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self.a3sfile}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor releases the flock


# ---------------------------------------------------------------------------- sockets


def bind_control_socket(paths: RuntimePaths) -> socket.socket:
    """A listening AF_UNIX socket at `paths.socket`, mode 0600 in a 0700 folder.

    Call with the lock held: an existing file there is then a stale socket and is removed.
    """
    ensure_state_dir(paths)
    return bind_unix_socket(paths.socket)


def _supervisor_pid_alive(paths: RuntimePaths) -> bool:
    """The pid file names a live a3s process (a supervisor that does not take the lock)."""
    pid = read_pid(paths)
    if pid is None or pid == os.getpid():
        return False
    return b"a3s" in (procfs.cmdline(pid) or b"")


def end_left(paths: RuntimePaths, grace: float | None = None, runtimes: Iterable[str] = ()) -> list[Orphan]:
    """End what a dead supervisor left: the groups groups.json still lists (each its stop
    signal, then SIGKILL after its stop_timeout, or `grace`), then every container labelled with
    this A3sfile (a killed client leaves its container running, SPEC §14), through the runtimes
    its records name and `runtimes`. What was ended, containers as `Orphan(service, 0)`."""
    orphans = recorded_orphans(paths.groups)
    if orphans:
        end_groups(orphans, grace)
    ended = {o.service for o in orphans}
    for runtime in sorted(recorded_runtimes(paths.groups) | set(runtimes)):
        from a3s_dev.core.containers import remove_left

        for name in remove_left(runtime, str(paths.a3sfile)):
            if name not in ended:
                ended.add(name)
                orphans.append(Orphan(name, 0))
    return orphans


def clean_stale(paths: RuntimePaths, grace: float | None = None) -> list[Orphan]:
    """After a supervisor died without cleaning up: end its recorded groups, remove its socket,
    pid file and groups record. Does nothing while a live supervisor holds the lock."""
    if lock_held(paths) or _supervisor_pid_alive(paths):
        return []
    orphans = end_left(paths, grace)
    for leftover in (paths.socket, paths.pid, paths.groups):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
    _remove_free_lock(paths)
    return orphans


def _remove_free_lock(paths: RuntimePaths) -> None:
    """Unlink the lock file, holding it meanwhile so that no supervisor is using it."""
    try:
        fd = os.open(paths.lock, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(paths.lock)
    except OSError:
        pass  # taken meanwhile: it belongs to a live supervisor now
    finally:
        os.close(fd)
