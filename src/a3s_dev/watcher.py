"""File watching: which services a changed path concerns, debounced restarts, and the watchfiles engine.

The first half is pure (ignore globs, routing, which folders to hand the OS, debounce
bookkeeping, the log line) and is tested without I/O. The second half runs it: one
`Watcher` for every service's paths, one small debounce loop per watched service.
watchfiles is imported only inside `WatchfilesWatcher`, which `a3s validate` and
`a3s status` never load.
"""

from __future__ import annotations

import enum
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from anyio.abc import TaskStatus

from a3s_dev.errors import A3sError
from a3s_dev.state import ServiceState

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectSendStream

    from a3s_dev.config import DevConfig
    from a3s_dev.state import ServiceStatus

# SPEC §3: always ignored, in addition to each service's `ignore` globs.
DEFAULT_IGNORES: tuple[str, ...] = (
    ".git",
    ".a3s",
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


def _norm(path: Path | str) -> str:
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
    restart: bool = True
    debounce: float = 0.5

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
                paths=tuple(dict.fromkeys(_norm(config.root / p) for p in watch.paths)),
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
        return cls(watch_rules(config), _norm(config.root))

    @property
    def paths(self) -> tuple[str, ...]:
        """Every watch path of every service, once."""
        return tuple(dict.fromkeys(p for rule in self.rules for p in rule.paths))

    def route(self, path: Path | str) -> tuple[str, ...]:
        """Names of the services whose watch paths contain `path` and don't ignore it."""
        p = _norm(path)
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


def _subdirs(folder: str) -> list[str]:
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


# ---------------------------------------------------------------------------- the seams


class Watcher(Protocol):
    """A source of file-change batches for a set of paths (files, folders, or not there yet)."""

    def open(
        self, paths: Sequence[str], accept: Callable[[str], bool]
    ) -> AbstractAsyncContextManager[AsyncIterator[frozenset[str]]]:
        """Start watching; the context yields batches of absolute changed paths that pass
        `accept`. Changes made after `__aenter__` returns are never missed."""
        ...


class WatchTarget(Protocol):
    """The part of the `Supervisor` the watcher uses."""

    @property
    def config(self) -> DevConfig: ...

    async def restart(self, name: str) -> None: ...

    def status(self, name: str) -> ServiceStatus: ...

    def announce(self, text: str) -> None: ...


# ---------------------------------------------------------------------------- the watchfiles engine


def _identity(roots: WatchRoots) -> tuple[WatchRoots, tuple[tuple[int, int], ...]]:
    """The roots plus each root's inode: a folder deleted and created again must be re-armed."""
    ids = []
    for root in roots.all:
        try:
            st = os.stat(root)
            ids.append((st.st_dev, st.st_ino))
        except OSError:
            ids.append((0, 0))
    return roots, tuple(ids)


def _present(paths: Iterable[str]) -> frozenset[str]:
    """The watch paths that exist right now."""
    return frozenset(p for p in paths if path_kind(p) is not PathKind.MISSING)


_ADDED, _DELETED = 1, 3  # watchfiles.Change.added, .deleted


def _transient(raw: set[tuple[int, str]]) -> frozenset[str]:
    """Paths created and gone again within one batch: an editor's temporary file renamed over
    the real one on save, a test's scratch file. Naming them in the log line would only
    confuse, and a change made only of them is no change."""
    added = {p for change, p in raw if change == _ADDED}
    deleted = {p for change, p in raw if change == _DELETED}
    return frozenset(p for p in added & deleted if not os.path.lexists(p))


def _new_folder_to_split(
    raw: set[tuple[int, str]], flat: frozenset[str], accept: Callable[[str], bool]
) -> bool:
    """A folder appeared where the split watches don't cover it (inside a folder watched
    flat) or where it should be pruned (`node_modules` created under a recursive watch)."""
    return any(
        change == _ADDED
        and (os.path.dirname(path) in flat or not accept(path))
        and os.path.isdir(path)
        for change, path in raw
    )


class WatchfilesWatcher:
    """The default `Watcher`: watchfiles' Rust notifier (inotify, FSEvents, …).

    It drives `watchfiles._rust_notify.RustNotify` the way `watchfiles.awatch` does, but
    itself, for two reasons: the notifier is created before `open()` returns (so no change
    made after that is lost), and it is re-armed whenever a watch path appears, vanishes or
    is replaced (the OS forgets a watch whose folder was deleted; watchfiles refuses paths
    that don't exist). A cheap re-check (a `stat` per watch path) runs after every batch
    and every `rescan` seconds. Ignored folders get no OS watch (`prune_roots`); a folder
    that appears where the split does not cover it triggers a re-arm as well.
    """

    def __init__(
        self,
        *,
        step_ms: int = 20,
        max_batch_ms: int = 200,
        rescan: float = 1.0,
        force_polling: bool | None = None,
        poll_delay_ms: int = 300,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        # watchfiles yields a batch after `step_ms` of quiet, or after `max_batch_ms` of a
        # continuous stream; both stay well under a service's own debounce (default 500 ms),
        # which is what decides when to restart. `step_ms` adds to every save-to-restart
        # latency; 20 ms (watchfiles defaults to 50, and to a 1600 ms debounce) costs about
        # 0.2% of a core while idle (benchmarks/bench_watcher.py).
        self.step_ms = step_ms
        self.max_batch_ms = max_batch_ms
        self.rescan = rescan
        self.force_polling = force_polling
        self.poll_delay_ms = poll_delay_ms
        self.warn = warn

    def _polling(self) -> bool:
        if self.force_polling is not None:
            return self.force_polling
        try:  # watchfiles' own default: WATCHFILES_FORCE_POLLING, or WSL
            from watchfiles.main import _default_force_polling

            return bool(_default_force_polling(None))
        except ImportError:  # pragma: no cover - older or newer watchfiles
            return bool(os.environ.get("WATCHFILES_FORCE_POLLING"))

    def _arm(self, roots: WatchRoots) -> list[Any]:
        """Create the notifiers for `roots` (blocking: walks the trees to add OS watches)."""
        from watchfiles._rust_notify import RustNotify

        polling = self._polling()
        notifiers: list[Any] = []
        try:
            for paths, recursive in ((roots.recursive, True), (roots.flat, False)):
                if paths:
                    notifiers.append(
                        RustNotify(list(paths), False, polling, self.poll_delay_ms, recursive, True)
                    )
        except BaseException:
            for n in notifiers:
                n.close()
            raise
        return notifiers

    async def _arm_current(
        self, paths: Sequence[str], accept: Callable[[str], bool]
    ) -> tuple[Any, list[Any], WatchRoots]:
        """Plan and arm, retrying while the tree changes under us or the OS refuses."""

        prunable = prune_predicate(paths, accept)
        failures = 0
        while True:
            ident = _identity(plan_roots(paths))
            try:
                split = await anyio.to_thread.run_sync(prune_roots, ident[0], _subdirs, prunable)
                return ident, await anyio.to_thread.run_sync(self._arm, split), split
            except FileNotFoundError:
                await anyio.sleep(0.01)  # a path vanished between planning and arming
            except OSError as exc:
                # Typically the inotify watch limit; polling still works, only slower.
                if self.force_polling:
                    failures += 1
                    if failures == 1 and self.warn:
                        self.warn(f"file watching failed: {exc}; retrying every {self.rescan:g}s")
                    await anyio.sleep(self.rescan)
                    continue
                if self.warn:
                    self.warn(f"file watching: {exc}; falling back to polling")
                self.force_polling = True

    @asynccontextmanager
    async def open(
        self, paths: Sequence[str], accept: Callable[[str], bool]
    ) -> AsyncIterator[AsyncIterator[frozenset[str]]]:
        paths = tuple(dict.fromkeys(_norm(p) for p in paths))
        send, receive = anyio.create_memory_object_stream[frozenset[str]](max_buffer_size=1024)
        armed = await self._arm_current(paths, accept)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._serve, paths, accept, send, armed)
            try:
                yield receive
            finally:
                tg.cancel_scope.cancel()
                receive.close()

    async def _serve(
        self,
        paths: tuple[str, ...],
        accept: Callable[[str], bool],
        send: MemoryObjectSendStream[frozenset[str]],
        armed: tuple[Any, list[Any], WatchRoots],
    ) -> None:
        ident, notifiers, split = armed
        armed_at = time.monotonic()
        present = _present(paths)
        async with send:
            while True:
                stop = threading.Event()
                rearm = anyio.Event()
                try:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._guard, stop, rearm)
                        for notifier in notifiers:
                            tg.start_soon(
                                self._pump, notifier, stop, rearm, paths, ident, split, accept, send
                            )
                finally:
                    for notifier in notifiers:
                        notifier.close()
                # A notifier that fails as soon as it is armed must not become a busy loop.
                await anyio.sleep(max(0.0, armed_at + 0.1 - time.monotonic()))
                ident, notifiers, split = await self._arm_current(paths, accept)
                armed_at = time.monotonic()
                # A watch path that appeared was watched only through a folder above it
                # until now, so what was created inside it meanwhile went unseen: its
                # appearance is the change (codegen writing a whole new folder at once).
                now_present = _present(paths)
                appeared = frozenset(p for p in now_present - present if accept(p))
                present = now_present
                if appeared:
                    await send.send(appeared)

    @staticmethod
    async def _guard(stop: threading.Event, rearm: anyio.Event) -> None:
        # The notifier threads can't be cancelled; they return within a step once `stop`
        # is set. This task sets it on re-arm and, being cancellable, on shutdown too.
        try:
            await rearm.wait()
        finally:
            stop.set()

    async def _pump(
        self,
        notifier: Any,
        stop: threading.Event,
        rearm: anyio.Event,
        paths: tuple[str, ...],
        ident: Any,
        split: WatchRoots,
        accept: Callable[[str], bool],
        send: MemoryObjectSendStream[frozenset[str]],
    ) -> None:
        timeout_ms = max(1, int(self.rescan * 1000))
        flat = frozenset(split.flat)
        while True:
            try:
                raw = await anyio.to_thread.run_sync(
                    notifier.watch, self.max_batch_ms, self.step_ms, timeout_ms, stop
                )
            except Exception:  # noqa: BLE001 - the OS dropped the watch; plan again
                rearm.set()
                return
            if raw == "stop":
                return
            if isinstance(raw, set):
                gone = _transient(raw)
                batch = frozenset(p for _, p in raw if p not in gone and accept(p))
                if batch:
                    await send.send(batch)
                if _new_folder_to_split(raw, flat, accept):
                    rearm.set()
                    return
            if _identity(plan_roots(paths)) != ident:
                rearm.set()
                return


# ---------------------------------------------------------------------------- watch_services


async def _debounce_loop(
    supervisor: WatchTarget,
    rule: WatchRule,
    root: str,
    pending: PendingChanges,
    wake: Callable[[], anyio.Event],
) -> None:
    """Wait for a burst to end, then act once; changes during the restart make one more round."""
    while True:
        if not pending:
            await wake().wait()
            continue
        while (delay := pending.remaining(time.monotonic())) > 0:
            await anyio.sleep(delay)
        changed = pending.take()
        restarting = rule.restart and supervisor.status(rule.service).state in RESTARTABLE
        if not rule.restart or restarting:
            supervisor.announce(describe_change(rule.service, changed, root, restarting=restarting))
        if restarting:
            try:
                await supervisor.restart(rule.service)
            except A3sError as exc:
                supervisor.announce(f"{rule.service}: restart failed: {exc.message}")
            except Exception as exc:  # noqa: BLE001 - a dead watcher would silently end the dev loop
                supervisor.announce(f"{rule.service}: restart failed: {exc!r}")


async def watch_services(
    supervisor: WatchTarget,
    *,
    watcher: Watcher | None = None,
    retry_delay: float = 1.0,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Watch every service's `watch.paths` with one watcher and restart (or just report)
    the services a change concerns; runs until cancelled. Returns at once if nothing is watched."""
    routes = Routes.of(supervisor.config)
    if not routes.rules:
        task_status.started()
        return
    if watcher is None:
        watcher = WatchfilesWatcher(warn=supervisor.announce)
    pending = {rule.service: PendingChanges(rule.debounce) for rule in routes.rules}
    events = {rule.service: anyio.Event() for rule in routes.rules}

    def waker(name: str) -> Callable[[], anyio.Event]:
        def wake() -> anyio.Event:
            if events[name].is_set():
                events[name] = anyio.Event()
            return events[name]

        return wake

    started = False
    failures = 0
    async with anyio.create_task_group() as tg:
        for rule in routes.rules:
            tg.start_soon(
                _debounce_loop,
                supervisor,
                rule,
                routes.root,
                pending[rule.service],
                waker(rule.service),
            )
        while True:
            try:
                async with watcher.open(routes.paths, routes.accepts) as batches:
                    if not started:
                        started = True
                        task_status.started()
                    if failures:
                        failures = 0
                        supervisor.announce("file watching resumed")
                    async for batch in batches:
                        now = time.monotonic()
                        touched: dict[str, list[str]] = {}
                        for path in batch:
                            for name in routes.route(path):
                                touched.setdefault(name, []).append(path)
                        for name, changed in touched.items():
                            pending[name].add(changed, now)
                            events[name].set()
                break  # the watcher closed its stream: nothing more will come
            except Exception as exc:  # noqa: BLE001
                # A broken watcher must not take the running stack down with it (this
                # coroutine shares the session's task group): say so, and try again.
                failures += 1
                delay = min(30.0, retry_delay * 2 ** (failures - 1))
                supervisor.announce(f"file watching failed: {_brief(exc)}; retrying in {delay:g}s")
                if not started:
                    started = True
                    task_status.started()
                await anyio.sleep(delay)
        tg.cancel_scope.cancel()


def _brief(exc: BaseException) -> str:
    """One line for an exception, looking inside the groups task groups wrap errors in."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return str(exc) or type(exc).__name__
