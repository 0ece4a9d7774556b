"""What a changed path means: ignore globs, which service a path concerns, which folders to
hand the OS, debounce bookkeeping and the log line. Pure (the clock and the file system's
answers are passed in or read with plain `os.stat`); tested without a watcher.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING

from a3s_dev.core.policy import ExponentialBackoff
from a3s_dev.core.state import ServiceState

if TYPE_CHECKING:
    from a3s_dev.config.model import DevConfig

# SPEC §3: always ignored, in addition to each service's `ignore` globs.
DEFAULT_IGNORES: tuple[str, ...] = (
    ".git",
    ".a3s",
    ".a3s-*",  # the state folders of A3sfiles with other names
    "node_modules",
    "__pycache__",
    ".venv",
    "target",
)

# Editors write these while you type (vim's swap file every few seconds, its `4913`
# write probe, emacs lock and autosave files); restarting on them would restart a
# service in the middle of an edit.
EDITOR_IGNORES: tuple[str, ...] = (
    "*___jb_tmp___",  # JetBrains IDEs' safe write
    "*___jb_old___",
    "*.swp",
    "*.swo",
    "*.swx",
    "*~",
    ".#*",
    "#*#",
    "4913",
    ".DS_Store",
)

# How many changed paths the log line names before it says "…".
SHOWN_PATHS = 3


# ---------------------------------------------------------------------------- ignore globs


def _component_regex(glob: str) -> str:
    """Regex for one path component: `*` and `?` never cross `/`, `[...]` as in fnmatch."""
    out: list[str] = []
    i = 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = glob.find("]", i + 2 if glob[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = glob[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _path_regex(glob: str) -> re.Pattern[str]:
    """Regex for a glob with `/`, anchored at the A3sfile's folder; `**` spans any number of folders."""
    parts = [p for p in glob.strip("/").split("/") if p not in ("", ".")]
    if len(parts) > 1 and parts[-1] == "**":
        # `src/gen/**` names the subtree, the folder itself included.
        return re.compile(_join_parts(parts[:-1]) + "(?:/.*)?")
    return re.compile(_join_parts(parts))


def _join_parts(parts: list[str]) -> str:
    pieces: list[str] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            pieces.append(".*" if last else "(?:[^/]+/)*")
        else:
            pieces.append(_component_regex(part) + ("" if last else "/"))
    return "".join(pieces)


@dataclass(frozen=True)
class IgnoreRules:
    """Compiled ignore globs: a glob without `/` matches any path component (`target`,
    `*.lock`); a glob with `/` matches the path relative to the A3sfile's folder, or any
    folder above it (`src/gen`, `src/gen/**`, `docs/*.md`)."""

    names: tuple[str, ...]
    paths: tuple[re.Pattern[str], ...]

    @classmethod
    def compile(cls, globs: Iterable[str]) -> IgnoreRules:
        names: list[str] = []
        paths: list[re.Pattern[str]] = []
        for glob in globs:
            glob = glob.strip()
            glob = glob.removeprefix("./")
            if not glob.strip("/"):
                continue
            if "/" in glob.strip("/"):
                paths.append(_path_regex(glob))
            else:
                names.append(glob.strip("/"))
        return cls(tuple(names), tuple(paths))

    def matches(self, rel: str, below: int = 0) -> bool:
        """True when `rel` (a `/`-separated path relative to the A3sfile's folder) is ignored.

        Only components after the first `below` are tested, so that a watch path that
        itself names an ignored folder (`paths = ["vendor/target/lib"]`) still works.
        """
        parts = rel.split("/")
        for i in range(below, len(parts)):
            component = parts[i]
            if any(fnmatchcase(component, name) for name in self.names):
                return True
            if self.paths:
                prefix = "/".join(parts[: i + 1])
                if any(rx.fullmatch(prefix) for rx in self.paths):
                    return True
        return False


# ---------------------------------------------------------------------------- routing


def norm_path(path: Path | str) -> str:
    return os.path.normpath(os.fspath(path))


def _is_within(path: str, base: str) -> bool:
    return path == base or path.startswith(base if base.endswith(os.sep) else base + os.sep)


def _rel(path: str, root: str) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


@dataclass(frozen=True)
class WatchRule:
    """What one service watches, with its ignores compiled and its paths absolute."""

    service: str
    paths: tuple[str, ...]
    ignore: IgnoreRules
    restart: bool
    debounce: float

    def concerns(self, path: str, root: str) -> bool:
        """True when `path` lies in one of the watch paths and is not ignored below it."""
        rel = _rel(path, root)
        for base in self.paths:
            if _is_within(path, base):
                below = _rel(base, root).count("/") + 1 if base != root else 0
                if not self.ignore.matches(rel, below):
                    return True
        return False


def watch_rules(config: DevConfig) -> tuple[WatchRule, ...]:
    """One rule per service that has a `watch` block with paths, in declaration order."""
    rules = []
    for svc in config.services:
        watch = svc.watch
        if watch is None or not watch.paths:
            continue
        globs = (*DEFAULT_IGNORES, *EDITOR_IGNORES, *watch.ignore)
        rules.append(
            WatchRule(
                service=svc.name,
                paths=tuple(dict.fromkeys(norm_path(config.root / p) for p in watch.paths)),
                ignore=IgnoreRules.compile(globs),
                restart=watch.restart,
                debounce=watch.debounce,
            )
        )
    return tuple(rules)


@dataclass(frozen=True)
class Routes:
    """Maps a changed path to the services it concerns (pure)."""

    rules: tuple[WatchRule, ...]
    root: str

    @classmethod
    def of(cls, config: DevConfig) -> Routes:
        return cls(watch_rules(config), norm_path(config.root))

    @property
    def paths(self) -> tuple[str, ...]:
        """Every watch path of every service, once."""
        return tuple(dict.fromkeys(p for rule in self.rules for p in rule.paths))

    def route(self, path: Path | str) -> tuple[str, ...]:
        """Names of the services whose watch paths contain `path` and don't ignore it."""
        p = norm_path(path)
        return tuple(rule.service for rule in self.rules if rule.concerns(p, self.root))

    def accepts(self, path: Path | str) -> bool:
        return bool(self.route(path))


# ---------------------------------------------------------------------------- which folders to watch


class PathKind(enum.Enum):
    DIR = "dir"
    FILE = "file"
    MISSING = "missing"


def path_kind(path: str) -> PathKind:
    """What is at `path` right now (the one I/O helper of the planning code)."""
    if os.path.isdir(path):
        return PathKind.DIR
    if os.path.lexists(path):
        return PathKind.FILE
    return PathKind.MISSING


@dataclass(frozen=True)
class WatchRoots:
    """The folders handed to the OS: `recursive` ones watch a whole tree, `flat` ones only
    their direct entries (the folder of a single-file watch path, or the nearest existing
    folder above a watch path that does not exist yet)."""

    recursive: tuple[str, ...] = ()
    flat: tuple[str, ...] = ()

    @property
    def all(self) -> tuple[str, ...]:
        return self.recursive + self.flat


def plan_roots(paths: Iterable[str], kind: Callable[[str], PathKind] = path_kind) -> WatchRoots:
    """Decide what to watch so that every watch path is covered whether it is a folder, a
    file (watched through its folder, so editors that save by rename keep working) or
    missing (watched through its nearest existing ancestor until it appears)."""
    recursive: set[str] = set()
    flat: set[str] = set()
    for path in paths:
        k = kind(path)
        if k is PathKind.DIR:
            recursive.add(path)
            continue
        # A file's folder, or for a missing path the nearest folder above it that exists.
        anchor = os.path.dirname(path)
        while anchor != os.path.dirname(anchor) and kind(anchor) is not PathKind.DIR:
            anchor = os.path.dirname(anchor)
        flat.add(anchor)
    kept = sorted(r for r in recursive if not any(o != r and _is_within(r, o) for o in recursive))
    flat_kept = sorted(f for f in flat if not any(_is_within(f, r) for r in kept))
    return WatchRoots(tuple(kept), tuple(flat_kept))


def prune_roots(
    roots: WatchRoots, subdirs: Callable[[str], Iterable[str]], prunable: Callable[[str], bool]
) -> WatchRoots:
    """Keep ignored folders (`node_modules`, `target`, `.git`, `.a3s`) out of the OS watches.

    A recursive watch can't exclude a subtree, and an OS watch per folder of `node_modules`
    can exhaust the inotify limit while every write there wakes the watcher. So a recursive
    root with a prunable folder anywhere below it is split: the folders on the way down are
    watched flat, the clean subtrees beside them recursively, the prunable ones not at all.
    """
    recursive: list[str] = []
    flat: list[str] = list(roots.flat)

    def visit(folder: str) -> tuple[bool, list[str], list[str]]:
        clean, rec, fl = True, [], []
        for child in subdirs(folder):
            if prunable(child):
                clean = False
                continue
            child_clean, child_rec, child_flat = visit(child)
            clean = clean and child_clean
            rec += child_rec
            fl += child_flat
        return (True, [folder], []) if clean else (False, rec, [folder, *fl])

    for root in roots.recursive:
        _, rec, fl = visit(root)
        recursive += rec
        flat += fl
    return WatchRoots(tuple(recursive), tuple(dict.fromkeys(flat)))


def prune_predicate(paths: Sequence[str], accept: Callable[[str], bool]) -> Callable[[str], bool]:
    """A folder may go unwatched when it is rejected and holds no watch path: everything below
    it is then rejected too, since ignores match path components and prefixes."""

    def prunable(folder: str) -> bool:
        return not accept(folder) and not any(_is_within(p, folder) for p in paths)

    return prunable


def subdirs(folder: str) -> list[str]:
    """The folders directly inside `folder`, symlinks not followed (no cycles), errors ignored."""
    try:
        with os.scandir(folder) as entries:
            return sorted(e.path for e in entries if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


# ---------------------------------------------------------------------------- debounce and the log line


# A burst that never pauses (a service writing its own log into its watch path) still acts
# after this many debounce periods: a restart loop whose log line names the file is a
# problem the user can see and fix; edits that silently never take effect are not.
MAX_WAIT_FACTOR = 10


class PendingChanges:
    """A service's changes not yet acted on: trailing debounce, the clock passed in."""

    def __init__(self, debounce: float, max_wait: float | None = None) -> None:
        self.debounce = debounce
        self.max_wait = max_wait if max_wait is not None else MAX_WAIT_FACTOR * debounce
        self._paths: dict[str, None] = {}
        self._first = 0.0
        self._last = 0.0

    def __bool__(self) -> bool:
        return bool(self._paths)

    def add(self, paths: Iterable[str], now: float) -> None:
        if not self._paths:
            self._first = now
        for p in paths:
            self._paths[p] = None
        self._last = now

    def remaining(self, now: float) -> float:
        """Seconds until the burst counts as over: `debounce` after its last change, or
        `max_wait` after its first, whichever comes sooner."""
        due = min(self._last + self.debounce, self._first + self.max_wait)
        return max(0.0, due - now)

    def take(self) -> tuple[str, ...]:
        paths = tuple(self._paths)
        self._paths = {}
        return paths


# More file-change restarts than this within LOOP_WINDOW seconds look like a service that
# writes into its own watch path: warn once, then back off like a crash loop.
LOOP_RESTARTS = 5
LOOP_WINDOW = 60.0


class RestartLoop:
    """Notices a service restarting on changes it makes itself. Pure: the clock is passed in.

    `decide(now, paths)` before each file-change restart gives (warning or None, delay): the
    warning once when the restarts pass LOOP_RESTARTS within LOOP_WINDOW, then a delay that
    doubles with each further restart (1, 2, 4 … 30 s), back to none after a quiet window.
    `warning` is the one given for the loop going on, None outside one.
    """

    def __init__(self, service: str, root: str) -> None:
        self.service = service
        self.root = root
        self._backoff = ExponentialBackoff()  # "back off like crashes" (SPEC §8): the same delays
        self._times: list[float] = []
        self._paths: dict[str, int] = {}
        self._over = 0
        self.warning: str | None = None

    def decide(self, now: float, paths: Sequence[str]) -> tuple[str | None, float]:
        self._times = [t for t in self._times if now - t < LOOP_WINDOW] + [now]
        if len(self._times) == 1:  # a quiet window: a fresh start
            self._paths.clear()
            self._over = 0
            self.warning = None
        for p in paths:
            self._paths[p] = self._paths.get(p, 0) + 1
        if len(self._times) <= LOOP_RESTARTS:
            return None, 0.0
        delay = self._backoff.delay(self._over)
        self._over += 1
        if self.warning is not None:
            return None, delay
        self.warning = self._warning(len(self._times))
        return self.warning, delay

    def _warning(self, count: int) -> str:
        # The files that changed most often are the likeliest to be written by the service itself.
        often = sorted(self._paths, key=lambda p: (-self._paths[p], p))[:SHOWN_PATHS]
        rel = [_rel(p, self.root) for p in often]
        folders = {os.path.dirname(r) for r in rel}
        glob = f"{folders.pop()}" if len(folders) == 1 and "" not in folders else rel[0]
        return (
            f"{self.service} restarted {count} times in a minute on file changes ({', '.join(rel)}); if it writes "
            f'these itself, add `ignore = ["{glob}"]` to its watch block. Restarting with a delay from now on.'
        )


def describe_change(service: str, paths: Sequence[str], root: str, *, restarting: bool) -> str:
    """`api: 3 files changed (src/app.py, src/db.py, src/x.py) → restarting` (relative paths, sorted)."""
    rel = sorted(_rel(p, root) for p in paths)
    shown = ", ".join(rel[:SHOWN_PATHS]) + (", …" if len(rel) > SHOWN_PATHS else "")
    noun = "file" if len(rel) == 1 else "files"
    line = f"{service}: {len(rel)} {noun} changed ({shown})"
    return line + " → restarting" if restarting else line


# States in which a file change restarts a service: it runs, or it crashed and the fix may
# be this change, or it is a finished task to run again. Not when it was never started,
# is waiting for its dependencies, or is being stopped.
RESTARTABLE = frozenset(
    {
        ServiceState.STARTING,
        ServiceState.RUNNING,
        ServiceState.UNHEALTHY,
        ServiceState.BACKOFF,
        ServiceState.FAILED,
        ServiceState.COMPLETED,
    }
)
