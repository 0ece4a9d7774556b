"""The default file watcher: watchfiles' Rust notifier behind the small `Watcher` protocol.

watchfiles is imported only inside `WatchfilesWatcher`, which `a3s validate` and
`a3s status` never load.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from a3s_dev.watch.rules import (
    PathKind,
    WatchRoots,
    norm_path,
    path_kind,
    plan_roots,
    prune_predicate,
    prune_roots,
    subdirs,
)

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectSendStream


class Watcher(Protocol):
    """A source of file-change batches for a set of paths (files, folders, or not there yet)."""

    def open(
        self, paths: Sequence[str], accept: Callable[[str], bool]
    ) -> AbstractAsyncContextManager[AsyncIterator[frozenset[str]]]:
        """Start watching; the context yields batches of absolute changed paths that pass
        `accept`. Changes made after `__aenter__` returns are never missed."""
        ...



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
        """Poll instead of OS events: as asked, else watchfiles' own rule (WATCHFILES_FORCE_POLLING,
        or WSL, whose Windows-side files send no inotify events)."""
        if self.force_polling is not None:
            return self.force_polling
        env = os.environ.get("WATCHFILES_FORCE_POLLING")
        if env:
            return env.lower() not in {"false", "disable", "disabled"}
        import platform

        uname = platform.uname()
        return "microsoft-standard" in uname.release and uname.system == "Linux"

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
                split = await anyio.to_thread.run_sync(prune_roots, ident[0], subdirs, prunable)
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
        paths = tuple(dict.fromkeys(norm_path(p) for p in paths))
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
