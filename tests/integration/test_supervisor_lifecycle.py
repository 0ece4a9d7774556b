"""Stopping, restarting, crash backoff, health after start, and the recorded process groups."""

from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from support import free_port, pid_alive, pids_in_group, stays, wait_until, write_http_service
from support_supervisor import make_config, poll, running, service, tcp

from a3s_dev.config.model import RestartMode
from a3s_dev.core.groups import GroupRegistry, recorded_orphans
from a3s_dev.core.policy import ExponentialBackoff
from a3s_dev.core.state import ServiceState
from a3s_dev.run import workspace

S = ServiceState
SERVER = "exec python3 server.py"


@pytest.mark.anyio
async def test_stop_ends_grandchildren_of_the_service(tmp_path: Path) -> None:
    write_http_service(tmp_path)
    config = make_config(
        tmp_path, service("api", "sleep 1000 & exec python3 server.py", tmp_path, port=free_port())
    )

    async with running(config) as (sup, _, _):
        await sup.start()
        await sup.wait_ready(["api"], timeout=20)
        pgid = sup.status("api").pid
        assert pgid is not None
        assert len(pids_in_group(pgid)) == 2  # python and the backgrounded sleep
        await sup.stop(["api"])
        assert sup.status("api").state is S.STOPPED
        assert pids_in_group(pgid) == []


@pytest.mark.anyio
async def test_stop_escalates_to_sigkill_after_stop_timeout(tmp_path: Path) -> None:
    stubborn = tmp_path / "stubborn.py"
    stubborn.write_text(
        "import signal, time\nsignal.signal(signal.SIGTERM, lambda *a: print('ignoring SIGTERM', flush=True))\n"
        "print('up', flush=True)\nwhile True: time.sleep(1)\n"
    )
    config = make_config(
        tmp_path, service("stubborn", "exec python3 stubborn.py", tmp_path, stop_timeout=0.5)
    )

    async with running(config) as (sup, sink, _):
        await sup.start()
        await poll(lambda: ("stubborn", "up") in sink.lines, message="stubborn up")
        pid = sup.status("stubborn").pid
        began = time.monotonic()
        await sup.stop()
        took = time.monotonic() - began
        assert ("stubborn", "ignoring SIGTERM") in sink.lines
        assert 0.4 <= took < 5, took
        assert pid is not None and not pid_alive(pid)
        assert sup.status("stubborn").exit_code == -9
        assert ("a3s", "stubborn did not stop within 500ms of SIGTERM: killed") in sink.lines


@pytest.mark.anyio
async def test_stop_signal_is_sent_to_the_group(tmp_path: Path) -> None:
    script = tmp_path / "trap.py"
    script.write_text(
        "import signal, sys, time\n"
        "signal.signal(signal.SIGINT, lambda *a: (print('got SIGINT', flush=True), sys.exit(0)))\n"
        "print('up', flush=True)\nwhile True: time.sleep(1)\n"
    )
    config = make_config(
        tmp_path, service("t", "exec python3 trap.py", tmp_path, stop_signal="SIGINT")
    )

    async with running(config) as (sup, sink, _):
        await sup.start()
        await poll(lambda: ("t", "up") in sink.lines, message="t up")
        await sup.stop()
        assert ("t", "got SIGINT") in sink.lines
        assert sup.status("t").exit_code == 0


def test_shutdown_stops_dependents_before_their_dependencies(tmp_path: Path) -> None:
    write_http_service(tmp_path)
    config = make_config(
        tmp_path,
        service("db", SERVER, tmp_path, port=free_port()),
        service("api", SERVER, tmp_path, port=free_port(), depends_on=("db",)),
        service("web", SERVER, tmp_path, port=free_port(), depends_on=("api",)),
    )

    async def body() -> list[str]:
        async with running(config) as (sup, _, rec):
            await sup.start()
            await sup.wait_ready(config.names, timeout=20)
            await sup.shutdown()
            await poll(
                lambda: all(s.state is S.STOPPED for s in sup.snapshot()), message="all stopped"
            )
            return [c.service for c in rec.changes if c.new is S.STOPPED]

    assert anyio.run(body) == ["web", "api", "db"]


@pytest.mark.anyio
async def test_crash_restarts_wait_the_policys_growing_delays(tmp_path: Path) -> None:
    stamps = tmp_path / "stamps.txt"
    crash = f"echo spawned >> {stamps}; echo crashing; exit 2"
    config = make_config(tmp_path, service("crashy", crash, tmp_path))
    policy = ExponentialBackoff(first=1.0, factor=2.0, cap=30.0)
    waited: list[float] = []

    async def recorded_sleep(delay: float) -> None:
        waited.append(delay)  # the wall clock plays no part: the delays are what was asked for
        await anyio.lowlevel.checkpoint()

    async with running(config, policy=policy, sleep=recorded_sleep) as (sup, sink, rec):
        await sup.start()
        await poll(lambda: len(waited) >= 7, timeout=20, message="seven restarts")
        assert S.BACKOFF in rec.states("crashy")
        assert sup.status("crashy").restarts >= 6
        reasons = [c.reason for c in rec.changes if c.new is S.BACKOFF]
        assert reasons[:4] == [
            "exit code 2, restarting in 1s",
            "exit code 2, restarting in 2s",
            "exit code 2, restarting in 4s",
            "exit code 2, restarting in 8s",
        ]
        assert any("crashy exited (exit code 2), restarting in 2s" in line for _, line in sink.lines)
    assert waited[:7] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]  # SPEC §3
    assert len(stamps.read_text().split()) >= 7  # and each one was a real spawn


@pytest.mark.anyio
async def test_restart_never_leaves_a_crashed_service_failed(tmp_path: Path) -> None:
    config = make_config(
        tmp_path, service("once", "echo bye; exit 1", tmp_path, restart=RestartMode.NEVER)
    )

    async with running(config) as (sup, _, rec):
        await sup.start()
        await poll(lambda: sup.status("once").state is S.FAILED, message="failed")
        await stays(
            lambda: rec.states("once").count(S.STARTING) == 1 and sup.status("once").restarts == 0,
            0.3,
            "no restart of a never-restarted service",
        )
        assert sup.status("once").exit_code == 1


@pytest.mark.anyio
async def test_restart_always_restarts_a_clean_exit(tmp_path: Path) -> None:
    config = make_config(tmp_path, service("loop", "exit 0", tmp_path, restart=RestartMode.ALWAYS))

    async with running(config, policy=ExponentialBackoff(first=0.05, cap=0.05)) as (sup, _, _):
        await sup.start()
        await poll(lambda: sup.status("loop").restarts >= 2, message="two restarts")


@pytest.mark.anyio
async def test_service_becomes_unhealthy_after_retries_and_recovers(tmp_path: Path) -> None:
    flag = tmp_path / "closed"
    server = tmp_path / "flaky.py"
    # Listens; closes its listener while the flag file exists; reopens when it is gone.
    server.write_text(
        textwrap.dedent(
            """
            import os, socket, time
            port = int(os.environ["PORT"])
            def listen():
                s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port)); s.listen(); return s
            s = listen()
            while True:
                time.sleep(0.02)
                if os.path.exists("closed") and s is not None:
                    s.close(); s = None
                elif not os.path.exists("closed") and s is None:
                    s = listen()
            """
        )
    )
    config = make_config(
        tmp_path,
        service(
            "flaky",
            "exec python3 flaky.py",
            tmp_path,
            port=free_port(),
            health=tcp(interval=0.1, retries=3),
        ),
    )

    async with running(config) as (sup, sink, rec):
        await sup.start()
        await sup.wait_ready(["flaky"], timeout=20)
        assert sup.status("flaky").health == "healthy"
        flag.write_text("")
        await poll(lambda: sup.status("flaky").state is S.UNHEALTHY, message="unhealthy")
        assert sup.status("flaky").health == "unhealthy"
        assert sup.health_failures("flaky") >= 3
        assert sup.status("flaky").pid is not None  # reported, not killed
        flag.unlink()
        await poll(lambda: sup.status("flaky").state is S.RUNNING, message="recovered")
        assert any("flaky is unhealthy" in line for _, line in sink.lines)
        assert rec.states("flaky")[-2:] == [S.UNHEALTHY, S.RUNNING]


@pytest.mark.anyio
async def test_restart_replaces_the_process_and_keeps_dependents_running(tmp_path: Path) -> None:
    write_http_service(tmp_path)
    config = make_config(
        tmp_path,
        service("db", SERVER, tmp_path, port=free_port()),
        service("api", SERVER, tmp_path, port=free_port(), depends_on=("db",)),
    )

    async with running(config) as (sup, _, _):
        await sup.start()
        await sup.wait_ready(config.names, timeout=20)
        old_db, old_api = sup.status("db").pid, sup.status("api").pid
        await sup.restart("db")
        statuses = await sup.wait_ready(["db"], timeout=20)
        assert statuses["db"].state is S.RUNNING
        assert statuses["db"].pid not in (None, old_db)
        assert sup.status("api").pid == old_api and sup.status("api").state is S.RUNNING
        assert old_db is not None and pids_in_group(old_db) == []


@pytest.mark.anyio
async def test_stop_of_a_dependency_stops_its_dependents_first(tmp_path: Path) -> None:
    write_http_service(tmp_path)
    config = make_config(
        tmp_path,
        service("db", SERVER, tmp_path, port=free_port()),
        service("api", SERVER, tmp_path, port=free_port(), depends_on=("db",)),
        service("other", SERVER, tmp_path, port=free_port()),
    )

    async with running(config) as (sup, _, rec):
        await sup.start()
        await sup.wait_ready(config.names, timeout=20)
        await sup.stop(["db"])
        assert [c.service for c in rec.changes if c.new is S.STOPPED] == ["api", "db"]
        assert sup.status("other").state is S.RUNNING


@pytest.mark.anyio
async def test_live_groups_are_recorded_and_a_later_run_can_end_them(tmp_path: Path) -> None:
    write_http_service(tmp_path)
    config = make_config(
        tmp_path, service("api", "sleep 1000 & exec python3 server.py", tmp_path, port=free_port())
    )
    paths = workspace.paths_for(config.path)

    async with running(config, groups=GroupRegistry(paths.state_dir)) as (sup, _, _):
        await sup.start()
        await sup.wait_ready(["api"], timeout=20)
        pgid = sup.status("api").pid
        recorded = json.loads(paths.groups.read_text())
        assert recorded["api"]["pgid"] == pgid and recorded["api"]["pid"] == pgid
        assert abs(recorded["api"]["started"] - time.time()) < 30
        # What control's reader sees after a SIGKILLed supervisor:
        assert [o.service for o in recorded_orphans(paths.groups)] == ["api"]
        await sup.stop()
        assert json.loads(paths.groups.read_text()) == {}


@pytest.mark.anyio
async def test_without_a_probe_a_service_is_ready_once_spawned(tmp_path: Path) -> None:
    config = make_config(tmp_path, service("worker", "sleep 30", tmp_path))

    async with running(config) as (sup, _, _):
        await sup.start()
        statuses = await sup.wait_ready(["worker"], timeout=5)
        assert statuses["worker"].state is S.RUNNING and statuses["worker"].health is None


@pytest.mark.anyio
async def test_supervisor_leaves_nothing_when_its_task_group_is_cancelled(tmp_path: Path) -> None:
    write_http_service(tmp_path)
    config = make_config(
        tmp_path, service("api", "sleep 1000 & exec python3 server.py", tmp_path, port=free_port())
    )
    seen: list[int] = []

    from a3s_dev.core.supervisor import Supervisor

    sup = Supervisor(config)
    with anyio.move_on_after(20):
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            await sup.start()
            await sup.wait_ready(["api"], timeout=20)
            pid = sup.status("api").pid
            assert pid is not None
            seen.append(pid)
            tg.cancel_scope.cancel()
    wait_until(lambda: pids_in_group(seen[0]) == [], timeout=10, message="group gone")


def processes_in(folder: Path, command: str) -> list[int]:
    """Pids of live processes running `command` whose working folder is `folder`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "cwd")) == folder and command.encode() in (entry / "cmdline").read_bytes().replace(b"\0", b" "):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_a_broken_probe_fails_its_service_only(tmp_path: Path) -> None:
    from a3s_dev.config.model import HealthConfig
    from a3s_dev.core import health

    def broken(svc, cfg, res):  # type: ignore[no-untyped-def]
        raise ValueError("probe kind 'broken' is misconfigured")

    health.register_probe("broken", broken)
    write_http_service(tmp_path)
    config = make_config(
        tmp_path,
        service(
            "odd",
            "sleep 1000 & exec python3 server.py",
            tmp_path,
            port=free_port(),
            health=HealthConfig(type="broken"),
        ),  # type: ignore[arg-type]
        service("fine", SERVER, tmp_path, port=free_port()),
    )
    try:

        async def body() -> None:
            async with running(config) as (sup, sink, _):
                await sup.start()
                statuses = await sup.wait_ready(config.names, timeout=20)
                assert statuses["odd"].state is S.FAILED
                assert "misconfigured" in (statuses["odd"].reason or "")
                await poll(lambda: sup.status("fine").state is S.RUNNING, message="fine running")
                assert any("odd failed: ValueError" in line for _, line in sink.lines)
                # its process, spawned before the probe failed, is ended with it, background job too
                await poll(lambda: not processes_in(tmp_path, "sleep 1000"), message="odd's processes ended")

        anyio.run(body)
    finally:
        health._REGISTRY.pop("broken")
