"""The `.a3s/` folder beside the A3sfile: logs and the recorded process groups.

`groups.json` lists the process groups the supervisor started and has not yet seen end,
so that after a SIGKILLed supervisor the next `a3s up` or `a3s down` can end them.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_DIR = ".a3s"
GROUPS_FILE = "groups.json"


def state_dir(root: Path) -> Path:
    """The `.a3s/` folder for an A3sfile living in `root` (not created)."""
    return root / STATE_DIR


def ensure_state_dir(root: Path) -> Path:
    """Create `.a3s/` (mode 0700: it will hold the control socket) and return it."""
    path = state_dir(root)
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def logs_dir(root: Path) -> Path:
    return state_dir(root) / "logs"


def log_file(root: Path, service: str) -> Path:
    """`.a3s/logs/<service>.log` (`a3s.log` for a3s's own messages)."""
    return logs_dir(root) / f"{service}.log"


@dataclass(frozen=True)
class GroupRecord:
    pid: int
    pgid: int
    started: float  # time.time() at spawn


class GroupRegistry:
    """The live process groups of one supervisor, mirrored to `.a3s/groups.json` on every change."""

    def __init__(self, folder: Path) -> None:
        self._path = folder / GROUPS_FILE
        self._groups: dict[str, GroupRecord] = {}

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
        # Write-then-rename, so a supervisor killed mid-write never leaves half a file.
        try:
            self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = self._path.with_name(self._path.name + ".tmp")
            tmp.write_text(json.dumps({n: asdict(r) for n, r in self._groups.items()}))
            os.replace(tmp, self._path)
        except OSError:
            pass  # best effort: losing the record only matters if we are SIGKILLed too


def read_groups(folder: Path) -> dict[str, GroupRecord]:
    """The groups recorded in `folder/groups.json` (empty when missing or unreadable)."""
    try:
        raw = json.loads((folder / GROUPS_FILE).read_text())
        return {name: GroupRecord(int(r["pid"]), int(r["pgid"]), float(r["started"])) for name, r in raw.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _boot_time() -> float:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def _start_time(pid: int) -> float | None:
    """When `pid` started (epoch seconds), from /proc; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def group_is_ours(record: GroupRecord) -> bool:
    """True when the recorded group still exists and still is the one we started.

    Linux does not hand out a pid that is in use as a process group id, so while any
    member is left the id cannot have been recycled; if the leader itself is still
    there, its start time must match the record.
    """
    try:
        os.killpg(record.pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    started = _start_time(record.pid)
    if started is None:
        return True  # the leader is gone but members remain: they are its children
    return abs(started - record.started) < 2.0


def end_recorded_groups(folder: Path, *, grace: float = 2.0) -> list[str]:
    """End every group left in `folder/groups.json` by a supervisor that died (SIGTERM, then SIGKILL).

    Returns the names of the services whose groups were ended; clears the file. Call it
    only when no supervisor is running for this folder.
    """
    groups = read_groups(folder)
    ours = {name: r for name, r in groups.items() if group_is_ours(r)}
    for record in ours.values():
        try:
            os.killpg(record.pgid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + grace
    for record in ours.values():
        while time.monotonic() < deadline:
            try:
                os.killpg(record.pgid, 0)
            except (ProcessLookupError, PermissionError):
                break
            time.sleep(0.02)
        try:
            os.killpg(record.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        (folder / GROUPS_FILE).unlink()
    except OSError:
        pass
    return sorted(ours)
