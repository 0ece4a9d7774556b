"""What Linux's /proc says about processes and sockets: the one reader of /proc. Stdlib only.

`a3s status` and `a3s down` read it on their fast paths, the supervisor to know when a
process group is really empty (zombies waiting for PID 1 do not count), the proxy's spawner
and the port checks to name the process that holds a port.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator


def stat_fields(pid: int | str) -> list[bytes] | None:
    """The fields of `/proc/<pid>/stat` after the command name, from the state on
    (index 0 is the state, 2 the process group, 19 the start time in clock ticks); None when
    the process is gone or /proc is unreadable. The name is skipped by its last ")", since a
    name may hold spaces and parentheses itself."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    fields = stat_fields(pid)
    return fields is not None and bool(fields) and fields[0] != b"Z"


def _boot_time() -> float | None:
    try:
        with open("/proc/stat") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("btime "))
    except (OSError, StopIteration, IndexError, ValueError):
        return None


def start_time(pid: int) -> float | None:
    """When `pid` started, in epoch seconds; None when it is gone or /proc is unreadable."""
    fields = stat_fields(pid)
    boot = _boot_time()
    if not fields or len(fields) < 20 or boot is None:
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def started_monotonic() -> float:
    """When this process started, on the time.monotonic() clock (so "ready in" counts a3s's own start-up)."""
    fields = stat_fields("self")
    try:
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        ticks = int(fields[19]) if fields else None
    except (OSError, ValueError, IndexError):
        ticks = None
    if ticks is None:
        return time.monotonic()
    # CLOCK_BOOTTIME (uptime) and monotonic differ by the time suspended, zero for a fresh process.
    return time.monotonic() - max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))


def _pids() -> Iterator[int]:
    """Every pid /proc shows (none when it is unreadable)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    yield from (int(entry) for entry in entries if entry.isdigit())


def _processes() -> Iterator[tuple[int, list[bytes]]]:
    """(pid, stat fields) of every process /proc shows that is still there to read."""
    for pid in _pids():
        if (fields := stat_fields(pid)) is not None:
            yield pid, fields


def _socket_inodes(pid: int) -> Iterator[str]:
    """The inodes of the sockets `pid` holds open (nothing when /proc does not say)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            yield target[8:-1]


def live_members(pgid: int) -> list[int]:
    """Pids of the non-zombie processes in group `pgid` (empty when /proc is unreadable)."""
    return [pid for pid, fields in _processes() if len(fields) > 2 and fields[0] != b"Z" and int(fields[2]) == pgid]


def group_alive(pgid: int) -> bool:
    """True while some process of the group is alive (zombies do not count).

    killpg(0) alone also counts zombies, and an orphaned grandchild stays a zombie until
    PID 1 reaps it, which in containers can take seconds; so when killpg says yes, /proc
    decides.
    """
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return bool(live_members(pgid))


def strays(parent: int) -> list[tuple[int, bool]]:
    """Children of `parent` (a subreaper) that it did not start itself: descendants of its
    services reparented to it when their own parent exited (a daemon's double fork). Its own
    children lead their session (services and probes start one) or share its session (the
    commands it runs); a stray does neither. (pid, is a zombie) each."""
    own = stat_fields(parent)
    own_session = own[3] if own is not None and len(own) > 3 else None
    return [
        (pid, fields[0] == b"Z")
        for pid, fields in _processes()
        if len(fields) > 3 and int(fields[1]) == parent and fields[3] not in (str(pid).encode(), own_session)
    ]


def cmdline(pid: int) -> bytes | None:
    """The raw `/proc/<pid>/cmdline` (arguments separated by NULs); None when it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return None


def _listeners() -> Iterator[tuple[int, str]]:
    """(port, socket inode) of every listening TCP socket (any address, IPv4 or IPv6)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f, None)
                for row in f:
                    cols = row.split()
                    if len(cols) > 9 and cols[3] == "0A":
                        yield int(cols[1].rsplit(":", 1)[1], 16), cols[9]
        except OSError:
            continue


def _listening_inodes(port: int) -> set[str]:
    """The socket inodes listening on `port` (any address, IPv4 or IPv6)."""
    return {inode for listening, inode in _listeners() if listening == port}


def group_listening_ports(pgid: int) -> list[int]:
    """The TCP ports the processes of group `pgid` listen on (any address), sorted."""
    inodes = {inode for pid in live_members(pgid) for inode in _socket_inodes(pid)}
    if not inodes:
        return []
    return sorted({port for port, inode in _listeners() if inode in inodes})


def port_owner_pid(port: int) -> int | None:
    """The pid of a process listening on `port`, when /proc lets us see it."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    for pid in _pids():
        if any(inode in inodes for inode in _socket_inodes(pid)):
            return pid
    return None


def comm(pid: int) -> str | None:
    """The process's command name (`postgres`), None when it is gone."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def process_group(pid: int) -> int | None:
    """The process group of `pid`, None when it is gone."""
    fields = stat_fields(pid)
    return int(fields[2]) if fields is not None and len(fields) > 2 else None


def port_owner(port: int) -> str | None:
    """`pid 1234 (postgres)` for the process listening on `port`, when /proc lets us see it."""
    pid = port_owner_pid(port)
    return None if pid is None else f"pid {pid} ({comm(pid) or '?'})"


def group_usage(groups: set[int]) -> dict[int, tuple[int, int]]:
    """For each process group of `groups`: (CPU clock ticks used, resident bytes), summed over
    its live members (children included; a reaped child's ticks count through its parent's
    cutime/cstime). One pass over /proc for every group at once."""
    page = os.sysconf("SC_PAGE_SIZE")
    found: dict[int, tuple[int, int]] = {}
    for _, fields in _processes():
        if len(fields) < 22 or fields[0] == b"Z":
            continue
        group = int(fields[2])
        if group not in groups:
            continue
        ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        rss = int(fields[21]) * page
        before = found.get(group, (0, 0))
        found[group] = (before[0] + ticks, before[1] + rss)
    return found


def clock_ticks() -> int:
    """Clock ticks per second (the unit of /proc's CPU times)."""
    return os.sysconf("SC_CLK_TCK")
