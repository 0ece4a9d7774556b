"""watch_services against an in-memory Watcher and a fake supervisor: debounce, routing, restart or report."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import anyio
import pytest
from support import stays, until

from a3s_dev.config.model import DevConfig, ServiceDef, WatchConfig
from a3s_dev.core.state import ServiceState, ServiceStatus
from a3s_dev.errors import A3sError
from a3s_dev.watch.service import watch_services

pytestmark = pytest.mark.anyio

ROOT = Path("/proj")


class FakeWatcher:
    """A `Watcher` whose changes the test makes up; it filters by `accept` like the real one."""

    def __init__(self) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[frozenset[str]](100)
        self.paths: Sequence[str] = ()
        self.accept: Callable[[str], bool] = lambda p: True

    @asynccontextmanager
    async def open(
        self, paths: Sequence[str], accept: Callable[[str], bool]
    ) -> AsyncIterator[AsyncIterator[frozenset[str]]]:
        self.paths, self.accept = paths, accept
        yield self.receive

    async def change(self, *rel: str) -> None:
        batch = frozenset(p for p in (str(ROOT / r) for r in rel) if self.accept(p))
        await self.send.send(batch)


class VirtualClock:
    """Time that moves only when the test says so: `advance(s)` wakes every sleeper whose time
    came, in time order, and lets each woken task run before time moves on."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, anyio.Event]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        woken = anyio.Event()
        self._sleepers.append((self.now + max(0.0, delay), woken))
        await woken.wait()

    async def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            await anyio.wait_all_tasks_blocked()
            due = sorted(t for t, _ in self._sleepers if t <= end)
            if not due:
                break
            self.now = max(self.now, due[0])
            for entry in [e for e in self._sleepers if e[0] <= self.now]:
                self._sleepers.remove(entry)
                entry[1].set()
        self.now = end
        await anyio.wait_all_tasks_blocked()


class FakeSupervisor:
    """The part of the Supervisor the watcher uses; `gate` (when set) holds restarts until released."""

    def __init__(self, config: DevConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.restarts: list[tuple[str, float]] = []
        self.lines: list[str] = []
        self.states = {name: ServiceState.RUNNING for name in config.names}
        self.gate: anyio.Event | None = None
        self.in_restart = 0
        self.fail_with: Exception | None = None
        self.standing: dict[str, tuple[str, float]] = {}

    async def restart(self, name: str, *, cause: str = "a3s restart") -> None:
        self.restarts.append((name, self.clock()))
        if self.fail_with is not None:
            raise self.fail_with
        if self.gate is not None:
            self.in_restart += 1
            await self.gate.wait()
            self.in_restart -= 1

    def status(self, name: str) -> ServiceStatus:
        return ServiceStatus(name=name, state=self.states[name])

    def announce(self, text: str) -> None:
        self.lines.append(text)

    def standing_warning(self, name: str, text: str, seconds: float) -> None:
        self.standing[name] = (text, seconds)

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.restarts if n == name)


def svc(
    name: str,
    *paths: str,
    restart: bool = True,
    debounce: float = 0.1,
    ignore: tuple[str, ...] = (),
) -> ServiceDef:
    watch = WatchConfig(
        paths=tuple(ROOT / p for p in paths), ignore=ignore, restart=restart, debounce=debounce
    )
    return ServiceDef(name=name, cmd="true", dir=ROOT, watch=watch if paths else None)


def config(*services: ServiceDef) -> DevConfig:
    return DevConfig(path=ROOT / "A3sfile.hcl", services=services)


@asynccontextmanager
async def watching(sup: FakeSupervisor, watcher: FakeWatcher, clock: VirtualClock | None = None) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        timing = {"clock": clock, "sleep": clock.sleep} if clock is not None else {}
        await tg.start(partial(watch_services, sup, watcher=watcher, **timing))
        try:
            yield
        finally:
            tg.cancel_scope.cancel()


async def test_a_burst_of_changes_restarts_the_service_once_after_the_debounce() -> None:
    clock = VirtualClock()
    sup, watcher = FakeSupervisor(config(svc("api", "src", debounce=0.2)), clock), FakeWatcher()
    async with watching(sup, watcher, clock):
        for i in range(10):  # 10 writes, 10 ms apart: the last at 0.09 s
            if i:
                await clock.advance(0.01)
            await watcher.change(f"src/m{i}.py")
        await clock.advance(0.19)
        assert sup.restarts == []  # 0.19 s after the last write: still waiting
        await clock.advance(0.02)
        assert sup.restarts == [("api", pytest.approx(0.29))]  # 0.2 s after the burst ended
        await clock.advance(5.0)
        assert sup.count("api") == 1
    assert sup.lines == ["api: 10 files changed (src/m0.py, src/m1.py, src/m2.py, …) → restarting"]


async def test_changes_during_a_restart_cause_exactly_one_more_restart_after_it() -> None:
    sup, watcher = FakeSupervisor(config(svc("api", "src", debounce=0.05))), FakeWatcher()
    sup.gate = anyio.Event()
    async with watching(sup, watcher):
        await watcher.change("src/a.py")
        await until(lambda: sup.in_restart == 1, message="the first restart to begin")
        for name in ("b", "c", "d", "b"):
            await watcher.change(f"src/{name}.py")
            await anyio.sleep(0.03)
        await stays(lambda: sup.count("api") == 1, 0.3)  # no restart while one is under way
        sup.gate.set()
        await until(lambda: sup.count("api") == 2, message="the follow-up restart")
        await stays(lambda: sup.count("api") == 2, 0.4)
    assert sup.lines[1] == "api: 3 files changed (src/b.py, src/c.py, src/d.py) → restarting"


async def test_restart_false_reports_the_change_and_never_restarts() -> None:
    sup, watcher = (
        FakeSupervisor(config(svc("docs", "docs", restart=False, debounce=0.05))),
        FakeWatcher(),
    )
    async with watching(sup, watcher):
        await watcher.change("docs/index.md")
        await until(lambda: sup.lines, message="the change line")
        await stays(lambda: not sup.restarts, 0.2)
    assert sup.lines == ["docs: 1 file changed (docs/index.md)"]


async def test_only_the_services_whose_paths_contain_the_change_restart() -> None:
    cfg = config(svc("api", "api", "shared"), svc("web", "web", "shared"), svc("db"))
    sup, watcher = FakeSupervisor(cfg), FakeWatcher()
    async with watching(sup, watcher):
        await watcher.change("api/app.py")
        await until(lambda: sup.count("api") == 1)
        await stays(lambda: sup.count("web") == 0, 0.3)
        await watcher.change("shared/util.py")
        await until(lambda: sup.count("api") == 2 and sup.count("web") == 1)
    assert sup.count("db") == 0


async def test_ignored_paths_restart_nothing() -> None:
    sup, watcher = (
        FakeSupervisor(config(svc("api", "src", ignore=("*.log", "src/gen/**")))),
        FakeWatcher(),
    )
    async with watching(sup, watcher):
        await watcher.change(
            "src/out.log", "src/gen/models.py", "src/__pycache__/app.pyc", "src/.app.py.swp"
        )
        await stays(lambda: not sup.restarts and not sup.lines, 0.4)


async def test_each_service_has_its_own_debounce() -> None:
    clock = VirtualClock()
    sup, watcher = (
        FakeSupervisor(config(svc("fast", "src", debounce=0.05), svc("slow", "src", debounce=0.6)), clock),
        FakeWatcher(),
    )
    async with watching(sup, watcher, clock):
        await watcher.change("src/a.py")
        await clock.advance(0.5)
        assert sup.restarts == [("fast", pytest.approx(0.05))]
        await clock.advance(0.1)
        assert sup.restarts[1:] == [("slow", pytest.approx(0.6))]


async def test_a_service_that_is_not_running_is_not_restarted() -> None:
    sup, watcher = FakeSupervisor(config(svc("api", "src", debounce=0.05))), FakeWatcher()
    sup.states["api"] = ServiceState.STOPPED
    async with watching(sup, watcher):
        await watcher.change("src/a.py")
        await stays(lambda: not sup.restarts, 0.3)
        sup.states["api"] = ServiceState.FAILED  # a crashed service: the change may be the fix
        await watcher.change("src/a.py")
        await until(lambda: sup.count("api") == 1)


async def test_a_failed_restart_is_reported_and_watching_goes_on() -> None:
    sup, watcher = FakeSupervisor(config(svc("api", "src", debounce=0.05))), FakeWatcher()
    sup.fail_with = A3sError("port 8080 is already in use")
    async with watching(sup, watcher):
        await watcher.change("src/a.py")
        await until(lambda: any("restart failed" in line for line in sup.lines))
        sup.fail_with = None
        await watcher.change("src/b.py")
        await until(lambda: sup.count("api") == 2)
    assert "api: restart failed: port 8080 is already in use" in sup.lines


async def test_the_watcher_is_given_every_watch_path_once() -> None:
    sup, watcher = (
        FakeSupervisor(config(svc("api", "src", "shared"), svc("web", "shared", "web/index.html"))),
        FakeWatcher(),
    )
    async with watching(sup, watcher):
        pass
    assert list(watcher.paths) == [str(ROOT / p) for p in ("src", "shared", "web/index.html")]


async def test_nothing_to_watch_returns_at_once() -> None:
    sup, watcher = FakeSupervisor(config(svc("db"))), FakeWatcher()
    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            await tg.start(partial(watch_services, sup, watcher=watcher))
    assert watcher.paths == ()


class FlakyWatcher(FakeWatcher):
    """Fails to open `failures` times (like an OS refusing a watch), then works."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    @asynccontextmanager
    async def open(
        self, paths: Sequence[str], accept: Callable[[str], bool]
    ) -> AsyncIterator[AsyncIterator[frozenset[str]]]:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("inotify said no")
        async with super().open(paths, accept) as batches:
            yield batches


async def test_a_watcher_that_fails_is_reported_and_retried_without_stopping_the_stack() -> None:
    sup, watcher = (
        FakeSupervisor(config(svc("api", "src", debounce=0.05))),
        FlakyWatcher(failures=2),
    )
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(partial(watch_services, sup, watcher=watcher, retry_delay=0.05))
            assert sup.lines == ["file watching failed: inotify said no; retrying in 0.05s"]
            await until(
                lambda: "file watching resumed" in sup.lines, message="the watcher to come back"
            )
            await watcher.change("src/a.py")
            await until(lambda: sup.count("api") == 1)
            tg.cancel_scope.cancel()
    assert "file watching failed: inotify said no; retrying in 0.1s" in sup.lines


async def test_a_stream_of_changes_that_never_pauses_still_restarts() -> None:
    clock = VirtualClock()
    sup, watcher = FakeSupervisor(config(svc("api", "src", debounce=0.05)), clock), FakeWatcher()
    async with watching(sup, watcher, clock):
        while not sup.restarts and clock.now < 3:
            await watcher.change("src/app.log")  # every 20 ms, under the 50 ms debounce
            await clock.advance(0.02)
        assert sup.restarts, "no restart during an endless stream of changes"
        assert sup.restarts[0][1] <= 0.5  # at most 10 debounce periods after the first change


async def test_a_service_that_keeps_changing_its_own_files_gets_one_warning_and_slows_down() -> None:
    """SPEC §8: 20 restarts in 15 s, RESTARTS 0, no word; now one warning naming the file."""
    sup, watcher = FakeSupervisor(config(svc("api", "src", debounce=0.01))), FakeWatcher()
    async with watching(sup, watcher):
        for n in range(1, 7):
            await watcher.change("src/state.json")
            await until(lambda n=n: sup.count("api") >= min(n, 5), message=f"restart {n}")
        await until(lambda: any("restarted 6 times in a minute" in line for line in sup.lines), message="the warning")
        warning = next(line for line in sup.lines if "restarted 6 times" in line)
        assert 'ignore = ["src"]' in warning and "src/state.json" in warning
        assert sup.standing == {"api": (warning, 60.0)}, "`status` says it while the loop goes on"
        await stays(lambda: sup.count("api") == 5, 0.5, "the sixth restart waits its backoff (1 s)")
        await until(lambda: sup.count("api") == 6, timeout=3, message="the delayed sixth restart")
        assert sum("restarted 6 times" in line for line in sup.lines) == 1
