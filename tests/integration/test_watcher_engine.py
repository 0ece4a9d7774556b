"""The watchfiles engine on real files: changes arrive, paths may appear, vanish or be replaced."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from a3s_dev.watch.engine import WatchfilesWatcher
from a3s_dev.watch.rules import WatchRoots

pytestmark = pytest.mark.anyio


async def seen(
    batches: AsyncIterator[frozenset[str]],
    path: Path,
    *,
    poke: Callable[[], None] | None = None,
    timeout: float = 5.0,
) -> None:
    """Read batches until one names `path`; `poke` (repeated every 0.2 s) makes the change."""
    target = str(path)
    with anyio.fail_after(timeout):
        while True:
            if poke is not None:
                poke()
            with anyio.move_on_after(0.2 if poke else timeout):
                async for batch in batches:
                    if target in batch:
                        return


async def test_a_write_in_a_watched_folder_is_reported(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    async with WatchfilesWatcher().open([str(src)], lambda p: True) as batches:
        (src / "app.py").write_text("print(1)\n")  # armed once open() returned: no poke needed
        await seen(batches, src / "app.py")


async def test_rejected_paths_are_not_reported(tmp_path: Path) -> None:
    async with WatchfilesWatcher().open(
        [str(tmp_path)], lambda p: not p.endswith(".log")
    ) as batches:
        (tmp_path / "noise.log").write_text("x")
        (tmp_path / "app.py").write_text("x")
        with anyio.fail_after(5):
            batch = await batches.__anext__()
        assert str(tmp_path / "noise.log") not in batch


async def test_a_watch_path_that_appears_later_is_picked_up(tmp_path: Path) -> None:
    gen = tmp_path / "src" / "gen"
    async with WatchfilesWatcher(rescan=0.2).open([str(gen)], lambda p: True) as batches:
        gen.mkdir(parents=True)
        n = 0

        def poke() -> None:
            nonlocal n
            n += 1
            (gen / "models.py").write_text(f"v = {n}\n")

        await seen(batches, gen / "models.py", poke=poke)


async def test_a_watched_folder_deleted_and_created_again_keeps_being_watched(
    tmp_path: Path,
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    async with WatchfilesWatcher(rescan=0.2).open([str(src)], lambda p: True) as batches:
        (src / "a.py").write_text("1")
        await seen(batches, src / "a.py")
        shutil.rmtree(src)
        await seen(batches, src)  # its deletion is a change too
        src.mkdir()
        n = 0

        def poke() -> None:
            nonlocal n
            n += 1
            (src / "b.py").write_text(str(n))

        await seen(batches, src / "b.py", poke=poke)


async def test_a_single_file_saved_by_rename_keeps_being_watched(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text("a = 1\n")
    (tmp_path / "other.txt").write_text("")

    def atomic_save(text: str) -> None:
        tmp = tmp_path / ".settings.toml.tmp"
        tmp.write_text(text)
        os.replace(tmp, settings)  # how many editors save: the watched inode is replaced

    accept = lambda p: p == str(settings)
    async with WatchfilesWatcher().open([str(settings)], accept) as batches:
        atomic_save("a = 2\n")
        await seen(batches, settings)
        atomic_save("a = 3\n")
        await seen(batches, settings)
        settings.write_text("a = 4\n")
        await seen(batches, settings)


async def test_a_watch_path_that_does_not_exist_yet_is_quiet_then_seen_once_created(tmp_path: Path) -> None:
    target = tmp_path / "nope" / "deeper"
    got: list[frozenset[str]] = []
    async with WatchfilesWatcher(rescan=0.1).open([str(target)], lambda p: True) as batches:
        with anyio.move_on_after(0.5):
            async for batch in batches:
                got.append(batch)
        assert got == [], "a path that does not exist sends no changes"
        target.mkdir(parents=True)
        # The watcher re-arms on its next rescan; the write repeats until a batch names it.
        await seen(batches, target / "new.txt", poke=lambda: (target / "new.txt").write_text("x"))


async def test_leaving_the_context_stops_the_notifier_threads_promptly(tmp_path: Path) -> None:
    watcher = WatchfilesWatcher(rescan=30.0)  # no timeout wake-up to hide behind
    start = time.monotonic()
    async with watcher.open([str(tmp_path)], lambda p: True):
        await anyio.sleep(0.1)
    assert time.monotonic() - start < 1.5


class LimitedWatcher(WatchfilesWatcher):
    """Refuses OS notifications as an exhausted inotify watch limit does; polling still works."""

    def _arm(self, roots: WatchRoots) -> list[Any]:
        if not self.force_polling:
            raise OSError("OS file watch limit reached")
        return super()._arm(roots)


async def test_the_os_refusing_notifications_falls_back_to_polling_and_says_so(
    tmp_path: Path,
) -> None:
    warnings: list[str] = []
    watcher = LimitedWatcher(poll_delay_ms=50, warn=warnings.append)
    async with watcher.open([str(tmp_path)], lambda p: True) as batches:
        assert warnings == ["file watching: OS file watch limit reached; falling back to polling"]
        n = 0

        def poke() -> None:
            nonlocal n
            n += 1
            (tmp_path / "app.py").write_text("x" * n)  # a new size each time: polling sees it

        await seen(batches, tmp_path / "app.py", poke=poke)


def inotify_watches() -> int:
    """OS watches this process holds (Linux: one `inotify wd:` line per watch in fdinfo)."""
    count = 0
    for fd in os.listdir("/proc/self/fdinfo"):
        try:
            with open(f"/proc/self/fdinfo/{fd}") as f:
                count += sum(1 for line in f if line.startswith("inotify wd:"))
        except OSError:
            continue
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fdinfo"), reason="Linux only")
async def test_ignored_folders_get_no_os_watches_even_when_created_later(tmp_path: Path) -> None:
    for i in range(300):
        (tmp_path / "node_modules" / f"pkg{i}").mkdir(parents=True)
    (tmp_path / "src").mkdir()
    accept = lambda p: "node_modules" not in p.split(os.sep)
    async with WatchfilesWatcher(rescan=0.2).open([str(tmp_path)], accept) as batches:
        assert inotify_watches() <= 5
        # A new folder beside the pruned one is watched, and so is what is inside it …
        for i in range(300):
            (tmp_path / "lib" / "node_modules" / f"pkg{i}").mkdir(parents=True)
        n = 0

        def poke() -> None:
            nonlocal n
            n += 1
            (tmp_path / "lib" / "app.py").write_text(str(n))

        await seen(batches, tmp_path / "lib" / "app.py", poke=poke)
        # … while its own node_modules is pruned as well.
        with anyio.fail_after(5):
            while inotify_watches() > 8:
                await anyio.sleep(0.05)


async def test_a_temporary_file_renamed_over_the_real_one_is_not_reported(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("v = 1\n")
    async with WatchfilesWatcher().open([str(tmp_path)], lambda p: True) as batches:
        scratch = tmp_path / "app.py.tmp.1234"
        scratch.write_text("v = 2\n")
        os.replace(scratch, tmp_path / "app.py")  # a safe write, as many editors do it
        with anyio.fail_after(5):
            batch = await batches.__anext__()
        assert batch == {str(tmp_path / "app.py")}
