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


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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


class FakeSupervisor:
    """The part of the Supervisor the watcher uses; `gate` (when set) holds restarts until released."""

    def __init__(self, config: DevConfig) -> None:
        self.config = config
        self.restarts: list[tuple[str, float]] = []
        self.lines: list[str] = []
        self.states = {name: ServiceState.RUNNING for name in config.names}
        self.gate: anyio.Event | None = None
        self.in_restart = 0
        self.fail_with: Exception | None = None

    async def restart(self, name: str, *, cause: str = "a3s restart") -> None:
        self.restarts.append((name, time.monotonic()))
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
async def watching(sup: FakeSupervisor, watcher: FakeWatcher) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        await tg.start(partial(watch_services, sup, watcher=watcher))
        try:
            yield
        finally:
            tg.cancel_scope.cancel()


async def test_a_burst_of_changes_restarts_the_service_once_after_the_debounce() -> None:
    sup, watcher = FakeSupervisor(config(svc("api", "src", debounce=0.2))), FakeWatcher()
    async with watching(sup, watcher):
        first = time.monotonic()
        for i in range(10):  # 10 writes within ~100 ms
            await watcher.change(f"src/m{i}.py")
            await anyio.sleep(0.01)
        await until(lambda: sup.restarts, message="a restart")
        assert sup.restarts[0][1] - first >= 0.2  # waited for the burst to end
        await stays(lambda: sup.count("api") == 1, 0.5)
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
    sup, watcher = (
        FakeSupervisor(config(svc("fast", "src", debounce=0.05), svc("slow", "src", debounce=0.6))),
        FakeWatcher(),
    )
    async with watching(sup, watcher):
        await watcher.change("src/a.py")
        await until(lambda: sup.count("fast") == 1, timeout=0.5, message="the fast service")
        assert sup.count("slow") == 0
        await until(lambda: sup.count("slow") == 1, message="the slow service")


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
    sup, watcher = FakeSupervisor(config(svc("api", "src", debounce=0.05))), FakeWatcher()
    async with watching(sup, watcher):
        began = time.monotonic()
        while not sup.restarts and time.monotonic() - began < 3:
            await watcher.change("src/app.log")  # every 20 ms, under the 50 ms debounce
            await anyio.sleep(0.02)
        assert sup.restarts, "no restart during an endless stream of changes"
        assert sup.restarts[0][1] - began < 1.0  # 10 x 50 ms, plus slack


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
        await stays(lambda: sup.count("api") == 5, 0.5, "the sixth restart waits its backoff (1 s)")
        await until(lambda: sup.count("api") == 6, timeout=3, message="the delayed sixth restart")
        assert sum("restarted 6 times" in line for line in sup.lines) == 1
