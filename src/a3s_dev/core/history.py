"""Reading `.a3s/logs/`: each service's lines with their timestamps, merged in time order.

Pure parsing plus plain file reads (stdlib only): `a3s logs` works from any terminal,
with or without a running supervisor. File format: docs/architecture.md.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

STAMP_LEN = len("2026-11-23T10:29:21.123")


@dataclass(frozen=True, slots=True)
class Entry:
    """One logged line: when, whose, what."""

    at: float
    service: str
    text: str


def parse_stamp(stamp: str) -> float | None:
    """`2026-11-23T10:29:21.123` (local time) -> epoch seconds; None when it is not one."""
    if len(stamp) != STAMP_LEN or stamp[10] != "T" or stamp[19] != ".":
        return None
    try:
        whole = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
        return whole + int(stamp[20:]) / 1000
    except (ValueError, OverflowError):
        return None


class _StampCache:
    """mktime/strptime cost microseconds each; consecutive lines share their second, so cache it."""

    def __init__(self) -> None:
        self.key = ""
        self.value = 0.0

    def at(self, stamp: str) -> float | None:
        if len(stamp) != STAMP_LEN or stamp[10] != "T" or stamp[19] != ".":
            return None
        second = stamp[:19]
        if second != self.key:
            whole = parse_stamp(second + ".000")
            if whole is None:
                return None
            self.key, self.value = second, whole
        try:
            return self.value + int(stamp[20:]) / 1000
        except ValueError:
            return None


def parse_lines(
    service: str, lines: Iterable[str], cache: _StampCache | None = None
) -> Iterator[Entry]:
    """Entries of one service's log lines. A line without a stamp (written by something else,
    or cut by rotation) belongs to the previous stamped line's moment."""
    cache = cache or _StampCache()
    last = 0.0
    for raw in lines:
        line = raw.removesuffix("\n")
        at = cache.at(line[:STAMP_LEN])
        if at is None:
            yield Entry(last, service, line)
            continue
        last = at
        yield Entry(at, service, line[STAMP_LEN + 1 :])


def service_files(logs_dir: Path) -> dict[str, list[Path]]:
    """Each service's log files, oldest first (`x.log.3`, `x.log.2`, `x.log.1`, `x.log`)."""
    ranked: dict[str, list[tuple[int, Path]]] = {}
    if not logs_dir.is_dir():
        return {}
    for entry in logs_dir.iterdir():
        stem, dot, number = entry.name.rpartition(".")
        if entry.name.endswith(".log"):
            ranked.setdefault(entry.name[: -len(".log")], []).append((0, entry))
        elif dot and number.isdigit() and stem.endswith(".log"):
            ranked.setdefault(stem[: -len(".log")], []).append((int(number), entry))
    return {name: [p for _, p in sorted(files, key=lambda f: -f[0])] for name, files in sorted(ranked.items())}


def read_service(
    files: Iterable[Path],
    service: str,
    *,
    since: float | None = None,
    until: float | None = None,
    last: int | None = None,
    window: int | None = None,
) -> list[Entry]:
    """One service's entries from its files, filtered to `since <= at <= until`, the last `last`
    of them; from the last `window` bytes of its files only, when given (what one request of a
    server may cost, whatever the history's size)."""
    kept: deque[Entry] = deque(maxlen=last) if last is not None else deque()
    if last == 0:
        return []
    cache = _StampCache()
    sources: Iterable[Iterable[str]] = [tail_lines(list(files), window)] if window is not None else _whole(files)
    for lines in sources:
        for entry in parse_lines(service, lines, cache):
            if since is not None and entry.at < since:
                continue
            if until is not None and entry.at > until:
                continue
            kept.append(entry)
    return list(kept)


def _whole(files: Iterable[Path]) -> Iterator[Iterable[str]]:
    for path in files:
        try:
            with open(path, encoding="utf-8", errors="replace", newline="\n") as f:
                yield f
        except FileNotFoundError:
            continue  # rotated away between listing and opening


def tail_lines(files: Sequence[Path], window: int) -> list[str]:
    """The whole lines in the last `window` bytes of `files` (oldest first, as rotated)."""
    chunks: list[bytes] = []
    left = window
    for path in reversed(files):
        if left <= 0:
            break
        try:
            with open(path, "rb") as f:
                size = f.seek(0, 2)
                start = max(0, size - left)
                f.seek(start)
                data = f.read(size - start)
        except FileNotFoundError:
            continue
        left -= len(data)
        if start > 0:  # the first line is cut: it goes
            data = data.split(b"\n", 1)[1] if b"\n" in data else b""
        chunks.append(data)
    return b"".join(reversed(chunks)).decode("utf-8", "replace").splitlines()


def merged(per_service: Iterable[list[Entry]]) -> list[Entry]:
    """Merge each service's (already time-ordered) entries into one time-ordered list; ties keep
    the order of the services given, and each service's own line order is kept."""
    return list(heapq.merge(*per_service, key=lambda e: e.at))


def read_history(
    logs_dir: Path,
    services: Iterable[str] | None = None,
    *,
    since: float | None = None,
    until: float | None = None,
    last: int | None = None,
    window: int | None = None,
) -> list[Entry]:
    """The merged history of `services` (None: every log file, a3s's own included), in time order.

    `last` keeps the last N lines of each service, `since`/`until` bound the time, `window`
    the bytes read per service (from the end).
    """
    files = service_files(logs_dir)
    names = list(files) if services is None else [s for s in services if s in files]
    return merged(read_service(files[n], n, since=since, until=until, last=last, window=window) for n in names)


def tail(logs_dir: Path, service: str, n: int = 20, *, window: int = 64 * 1024) -> list[str]:
    """The last `n` lines of `service`'s current log file, read from its last `window` bytes
    (the proxy's error pages: cheap whatever the file's size)."""
    try:
        lines = tail_lines([logs_dir / f"{service}.log"], window)
    except OSError:
        return []
    return [e.text for e in parse_lines(service, lines[-n:])] if n > 0 else []
