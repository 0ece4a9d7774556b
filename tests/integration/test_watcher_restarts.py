"""File changes restart real services through the real Supervisor: the development loop end to end."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
from anyio.abc import TaskStatus
from support import free_port, kill_group, pid_alive, stays, until, write_http_service

from a3s_dev.config.model import DevConfig, ServiceDef, WatchConfig
from a3s_dev.core.events import LogLine
from a3s_dev.core.state import ServiceState
from a3s_dev.core.supervisor import Supervisor
from a3s_dev.watch.service import watch_services

pytestmark = pytest.mark.anyio

DEBOUNCE = 0.2


def service(
    root: Path,
    name: str,
    *watch: str,
    ignore: tuple[str, ...] = (),
    restart: bool = True,
    depends_on: tuple[str, ...] = (),
) -> ServiceDef:
    """An HTTP service on a fresh port, recording `spawned` lines to `<root>/record`."""
    return ServiceDef(
        name=name,
        cmd=f"exec {sys.executable} server.py",
        dir=root,
        port=free_port(),
        env={"NAME": name, "RECORD": str(root / "record")},
        depends_on=depends_on,
        stop_timeout=3.0,
        watch=WatchConfig(
            paths=tuple(root / p for p in watch), ignore=ignore, restart=restart, debounce=DEBOUNCE
        )
        if watch
        else None,
    )


@dataclass
class Stack:
    sup: Supervisor
    root: Path
    lines: list[str] = field(default_factory=list)

    def pid(self, name: str) -> int | None:
        status = self.sup.status(name)
        return status.pid if status.state is ServiceState.RUNNING else None

    def spawns(self, name: str) -> int:
        record = self.root / "record"
        if not record.exists():
            return 0
        return sum(
            1 for line in record.read_text().splitlines() if line.startswith(f"{name} spawned")
        )


@asynccontextmanager
async def stack(root: Path, *services: ServiceDef) -> AsyncIterator[Stack]:
    """Run a Supervisor with watch_services attached until every service is running; always stop them."""
    write_http_service(root)
    config = DevConfig(path=root / "A3sfile.hcl", services=services)
    sup = Supervisor(config)
    st = Stack(sup, root)
    sup.bus.subscribe(lambda e: st.lines.append(e.text) if e.service == "a3s" else None, (LogLine,))  # type: ignore[union-attr]
    pgids: set[int] = set()
    try:
        async with anyio.create_task_group() as tg:

            async def run_supervisor(*, task_status: TaskStatus[None]) -> None:
                try:
                    await sup.run(task_status=task_status)
                finally:
                    tg.cancel_scope.cancel()  # the watcher has nothing left to watch

            await tg.start(run_supervisor)
            await sup.start()
            await until(
                lambda: all(st.pid(s.name) for s in services), message="every service running"
            )
            await tg.start(watch_services, sup)
            try:
                yield st
            finally:
                pgids.update(p for p in (sup.status(s.name).pid for s in services) if p)
                with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                    await sup.shutdown()
    finally:
        for pgid in pgids:  # services are group leaders; a failed stop must not leak them
            kill_group(pgid)


async def test_a_write_restarts_the_service_with_a_new_pid_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    async with stack(tmp_path, service(tmp_path, "api", "src")) as st:
        old = st.pid("api")
        (tmp_path / "src" / "app.py").write_text("print('v2')\n")
        await until(lambda: st.pid("api") not in (None, old), message="a new api pid")
        assert not pid_alive(old)  # type: ignore[arg-type]
        assert "api: 1 file changed (src/app.py) → restarting" in st.lines


async def test_ten_writes_in_100ms_restart_exactly_once(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    async with stack(tmp_path, service(tmp_path, "api", "src")) as st:
        old = st.pid("api")
        for i in range(10):
            (tmp_path / "src" / f"m{i % 3}.py").write_text(f"v = {i}\n")
            await anyio.sleep(0.01)
        await until(lambda: st.pid("api") not in (None, old), message="a new api pid")
        await stays(lambda: st.spawns("api") == 2, DEBOUNCE + 1.0, "exactly one restart")
        assert [line for line in st.lines if "changed" in line] == [
            "api: 3 files changed (src/m0.py, src/m1.py, src/m2.py) → restarting"
        ]


async def test_an_ignored_path_restarts_nothing(tmp_path: Path) -> None:
    for folder in ("src/gen", "src/__pycache__", "src/node_modules"):
        (tmp_path / folder).mkdir(parents=True)
    async with stack(
        tmp_path, service(tmp_path, "api", "src", ignore=("*.log", "src/gen/**"))
    ) as st:
        old = st.pid("api")
        (tmp_path / "src" / "debug.log").write_text("noise\n")
        (tmp_path / "src" / "gen" / "models.py").write_text("generated\n")
        (tmp_path / "src" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
        (tmp_path / "src" / "node_modules" / "x.js").write_text("1\n")
        await stays(lambda: st.pid("api") == old, 2.0, "api kept its pid")
        assert st.spawns("api") == 1
        assert not [line for line in st.lines if "changed" in line]


async def test_restart_false_logs_the_change_and_keeps_the_pid(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    async with stack(tmp_path, service(tmp_path, "docs", "docs", restart=False)) as st:
        old = st.pid("docs")
        (tmp_path / "docs" / "index.md").write_text("# hi\n")
        await until(
            lambda: "docs: 1 file changed (docs/index.md)" in st.lines, message="the change line"
        )
        await stays(lambda: st.pid("docs") == old, DEBOUNCE + 0.5, "docs kept its pid")
        assert st.spawns("docs") == 1


async def test_a_dependent_keeps_running_with_its_pid_while_its_dependency_restarts(
    tmp_path: Path,
) -> None:
    (tmp_path / "api").mkdir()
    api = service(tmp_path, "api", "api")
    web = service(tmp_path, "web", depends_on=("api",))
    async with stack(tmp_path, api, web) as st:
        old_api, old_web = st.pid("api"), st.pid("web")
        (tmp_path / "api" / "app.py").write_text("v = 2\n")
        await until(lambda: st.pid("api") not in (None, old_api), message="a new api pid")
        assert st.pid("web") == old_web
        assert st.spawns("web") == 1


async def test_a_single_file_watch_path_restarts_on_that_file_only(tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text("a = 1\n")
    async with stack(tmp_path, service(tmp_path, "api", "settings.toml")) as st:
        old = st.pid("api")
        (tmp_path / "other.toml").write_text("b = 1\n")  # its neighbour does not count
        await stays(lambda: st.pid("api") == old, DEBOUNCE + 0.5, "api kept its pid")
        (tmp_path / "settings.toml").write_text("a = 2\n")
        await until(lambda: st.pid("api") not in (None, old), message="a new api pid")
        assert "api: 1 file changed (settings.toml) → restarting" in st.lines


async def test_a_watch_path_created_after_start_is_watched(tmp_path: Path) -> None:
    async with stack(tmp_path, service(tmp_path, "api", "src/gen")) as st:
        old = st.pid("api")
        gen = tmp_path / "src" / "gen"
        gen.mkdir(parents=True)
        (gen / "first.py").write_text("v = 0\n")  # created before the watcher can see inside
        await until(
            lambda: st.pid("api") not in (None, old), message="a restart for the new folder"
        )
        assert any(line.startswith("api: 1 file changed (src/gen)") for line in st.lines)
        second = st.pid("api")
        (gen / "models.py").write_text("v = 1\n")  # the folder itself is watched by now
        await until(
            lambda: st.pid("api") not in (None, second), message="a restart for a file inside it"
        )
