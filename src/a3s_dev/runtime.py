"""Where things are: the A3sfile (discovery) and its `.a3s/` state folder (lock, pid file, control
socket, logs, recorded groups).

`groups.json` lists the process groups the supervisor started and has not yet seen end,
so that after a SIGKILLed supervisor the next `a3s up` or `a3s down` can end them.
Everything here is stdlib only, because `a3s status` loads it on its fast path.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple, Self

from a3s_dev import procfs
from a3s_dev.errors import A3sError, ConfigError

A3SFILE_NAME = "A3sfile.hcl"
STATE_DIR_NAME = ".a3s"
GROUPS_FILE = "groups.json"
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


def fallback_socket_dir() -> Path:
    """$XDG_RUNTIME_DIR/a3s, else a per-user folder in the temp folder."""
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir and os.path.isdir(runtime_dir):
        return Path(runtime_dir) / "a3s"
    import tempfile

    return Path(tempfile.gettempdir()) / f"a3s-{os.getuid()}"


def ca_folder() -> Path:
    """`$XDG_DATA_HOME/a3s/ca` (default `~/.local/share/a3s/ca`): a3s's local CA (proxy/ca.py)."""
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "a3s" / "ca"


def ca_env() -> dict[str, str]:
    """The environment lines that make runtimes which ignore the system store trust a3s's CA:
    Node adds NODE_EXTRA_CA_CERTS to its own; requests and OpenSSL replace theirs, so they get
    the system bundle plus the CA (`bundle.pem`)."""
    folder = ca_folder()
    return {
        "NODE_EXTRA_CA_CERTS": str(folder / "ca.pem"),
        "REQUESTS_CA_BUNDLE": str(folder / "bundle.pem"),
        "SSL_CERT_FILE": str(folder / "bundle.pem"),
    }


def socket_path_for(a3sfile: Path, state_dir: Path | None = None) -> Path:
    """`.a3s/control.sock`, or a hash-keyed socket under $XDG_RUNTIME_DIR (else the temp folder)
    when that path is longer than an AF_UNIX address can hold."""
    preferred = (state_dir or state_dir_for(a3sfile)) / SOCKET_NAME
    if len(os.fsencode(preferred)) <= AF_UNIX_PATH_MAX:
        return preferred
    return fallback_socket_dir() / f"{file_key(a3sfile)}.sock"


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


def private_dir(path: Path) -> None:
    """Create `path` as a 0700 folder of ours; refuse one that someone else owns."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise A3sError(f"{path}: owned by uid {info.st_uid}, not by you; remove it or set XDG_RUNTIME_DIR")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)


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
        self.path = fallback_socket_dir() / "projects" / f"{name}.lock"
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
            raise A3sError(
                f'project "{self.name}" is already running from {where}; to run this one beside it, '
                f'give it another name: dev {{ name = "{self.name}-2" }} or A3S_PROJECT={self.name}-2'
            ) from None
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


def bind_unix_socket(path: Path) -> socket.socket:
    """A listening, non-blocking AF_UNIX socket at `path`, mode 0600, its folder made private.
    An existing file there is replaced: call it only when nobody can be listening on it."""
    private_dir(path.parent)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        # The folder is 0700 already, so the instant before chmod exposes nothing.
        os.chmod(path, 0o600)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` (mode 0600) in one replace, so readers see the old or the new."""
    tmp = path.with_name(f"{path.name}.tmp")  # its writers hold a lock: one at a time
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves nothing half-written behind
        raise


def _supervisor_pid_alive(paths: RuntimePaths) -> bool:
    """The pid file names a live a3s process (a supervisor that does not take the lock)."""
    pid = read_pid(paths)
    if pid is None or pid == os.getpid():
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"a3s" in f.read()
    except OSError:
        return False


# ---------------------------------------------------------------------------- recorded groups


class GroupRecord(NamedTuple):
    pid: int
    pgid: int
    started: float  # time.time() at spawn
    stop_signal: str = "SIGTERM"  # how a later `up` or `down` ends it if we are killed
    stop_timeout: float = 5.0


class GroupRegistry:
    """The live process groups of one supervisor, mirrored to `.a3s/groups.json` on every change."""

    def __init__(self, folder: Path, schedule: Callable[[Callable[[], None]], object] | None = None) -> None:
        """Without `schedule` every change is written at once (the first wave, spawned before the
        event loop: each group is on disk before the next spawn); with one (the loop's call_soon,
        once it runs), changes made together are written once."""
        self._path = folder / GROUPS_FILE
        self._groups: dict[str, GroupRecord] = {}
        self.schedule = schedule
        self._pending = False

    @property
    def path(self) -> Path:
        return self._path

    def add(self, name: str, record: GroupRecord) -> None:
        self._groups[name] = record
        self._save()

    def remove(self, name: str) -> None:
        if self._groups.pop(name, None) is not None:
            self._save()

    def _save(self) -> None:
        if self.schedule is None:
            self.flush()
        elif not self._pending:
            # 100 services starting at once would otherwise rewrite the file 100 times.
            self._pending = True
            self.schedule(self.flush)

    def flush(self) -> None:
        """Write the file now (write-then-rename, so a supervisor killed mid-write never leaves half a file)."""
        self._pending = False
        try:
            self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_private(self._path, json.dumps({n: r._asdict() for n, r in self._groups.items()}))
        except OSError:
            pass  # best effort: losing the record only matters if we are SIGKILLed too


class Orphan(NamedTuple):
    """A process group a dead supervisor recorded and that still has live members."""

    service: str
    pgid: int
    stop_signal: str = "SIGTERM"
    stop_timeout: float = 5.0


def read_groups(paths: RuntimePaths) -> dict[str, dict[str, float]]:
    """`groups.json` as written by the supervisor (empty when missing or unreadable)."""
    try:
        data = json.loads(paths.groups.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def recorded_orphans(paths: RuntimePaths) -> list[Orphan]:
    """Recorded groups that still have members and are provably ours.

    A pgid cannot be reused while any process is in that group, so a live group whose
    leader is gone is ours; a live leader must also have started when the record says.
    """
    found = []
    for service, rec in read_groups(paths).items():
        try:
            pgid = int(rec["pgid"])
        except (KeyError, TypeError, ValueError):
            continue
        if pgid <= 1 or pgid == os.getpgrp() or not procfs.group_alive(pgid):
            continue
        started = rec.get("started")
        leader_start = procfs.start_time(pgid)
        if leader_start is not None and isinstance(started, (int, float)) and abs(leader_start - started) > 5.0:
            continue  # the leader's pid was reused by an unrelated process group
        stop_signal = rec.get("stop_signal")
        stop_timeout = rec.get("stop_timeout")
        found.append(
            Orphan(
                service,
                pgid,
                stop_signal if isinstance(stop_signal, str) and stop_signal in signal.Signals.__members__ else "SIGTERM",
                float(stop_timeout) if isinstance(stop_timeout, (int, float)) and stop_timeout >= 0 else 5.0,
            )
        )
    return found


def end_groups(orphans: list[Orphan], grace: float | None = None) -> None:
    """Send each group its service's stop signal, wait up to its stop_timeout (or `grace`, when
    given) for it to empty, then SIGKILL what is left. The groups stop together."""
    began = time.monotonic()
    for orphan in orphans:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(orphan.pgid, signal.Signals[orphan.stop_signal])
    alive = list(orphans)
    while alive:
        now = time.monotonic() - began
        overdue = [o for o in alive if now >= (o.stop_timeout if grace is None else grace)]
        for orphan in overdue:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(orphan.pgid, signal.SIGKILL)
        alive = [o for o in alive if o not in overdue and procfs.group_alive(o.pgid)]
        if alive:
            time.sleep(0.02)


def clean_stale(paths: RuntimePaths, grace: float | None = None) -> list[Orphan]:
    """After a supervisor died without cleaning up: end its recorded groups, remove its socket,
    pid file and groups record. Does nothing while a live supervisor holds the lock."""
    if lock_held(paths) or _supervisor_pid_alive(paths):
        return []
    orphans = recorded_orphans(paths)
    end_groups(orphans, grace)
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
