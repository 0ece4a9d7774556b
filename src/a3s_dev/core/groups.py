"""The process groups a supervisor started, on disk (`.a3s/groups.json`), so that after a
SIGKILLed supervisor the next `a3s up` or `a3s down` can end them (and nothing else).
Stdlib only: `a3s status` reads it on its fast path. Signal names are as validation spelled
them (`SIGTERM`)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from a3s_dev.system import procfs
from a3s_dev.system.files import write_private

GROUPS_FILE = "groups.json"


class GroupRecord(NamedTuple):
    pid: int
    pgid: int
    started: float  # time.time() at spawn
    stop_signal: str = "SIGTERM"  # how a later `up` or `down` ends it if we are killed
    stop_timeout: float = 5.0
    runtime: str | None = None  # a container's client (SPEC §14): its containers go by label


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


def read_groups(path: Path) -> dict[str, dict[str, float]]:
    """`groups.json` at `path` as written by the supervisor (empty when missing or unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def recorded_orphans(path: Path) -> list[Orphan]:
    """Recorded groups that still have members and are provably ours.

    A pgid cannot be reused while any process is in that group, so a live group whose
    leader is gone is ours; a live leader must also have started when the record says.
    """
    found = []
    for service, rec in read_groups(path).items():
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
                # the supervisor wrote the name validation spelled (`SIGTERM`); anything else is not ours
                stop_signal if isinstance(stop_signal, str) and stop_signal in signal.Signals.__members__ else "SIGTERM",
                float(stop_timeout) if isinstance(stop_timeout, (int, float)) and stop_timeout >= 0 else 5.0,
            )
        )
    return found


def recorded_runtimes(path: Path) -> set[str]:
    """The container runtimes a (dead) supervisor's records name: its containers may outlive
    their clients, and are removed by label through these."""
    found: set[str] = set()
    for rec in read_groups(path).values():
        runtime = rec.get("runtime")
        if isinstance(runtime, str) and os.path.isabs(runtime):
            found.add(runtime)
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


