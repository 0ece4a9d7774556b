"""Start order, gating, parallel start, failures and the environment, with real child processes."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import anyio
import pytest
from support import free_port, stays, write_http_service
from support_supervisor import make_config, poll, read_record, running, service

from a3s_dev.config.model import RestartMode
from a3s_dev.core.state import ServiceState

S = ServiceState
SERVER = "exec python3 server.py"


@pytest.mark.anyio
async def test_dependents_start_only_after_dependency_is_healthy(tmp_path: Path) -> None:
    write_http_service(tmp_path)
    record = tmp_path / "record.txt"
    env = {"RECORD": str(record)}
    config = make_config(
        tmp_path,
        service("db", SERVER, tmp_path, port=free_port(), env={**env, "DELAY": "0.4"}),
        service("api", SERVER, tmp_path, port=free_port(), env=env, depends_on=("db",)),
        service("web", SERVER, tmp_path, port=free_port(), env=env, depends_on=("api",)),
    )

    async with running(config) as (sup, _, rec):
        await sup.start()
        statuses = await sup.wait_ready(config.names, timeout=20)
        assert {n: s.state for n, s in statuses.items()} == {
            "db": S.RUNNING,
            "api": S.RUNNING,
            "web": S.RUNNING,
        }
        assert rec.states("api")[0] is S.PENDING
        assert sup.status("web").reason is None
    times = read_record(record)
    assert times[("api", "spawned")][0] >= times[("db", "listening")][0]
    assert times[("web", "spawned")][0] >= times[("api", "listening")][0]


@pytest.mark.anyio
async def test_independent_services_start_in_parallel(tmp_path: Path) -> None:
    write_http_service(tmp_path)
    config = make_config(
        tmp_path,
        service("one", SERVER, tmp_path, port=free_port(), env={"DELAY": "1.0"}),
        service("two", SERVER, tmp_path, port=free_port(), env={"DELAY": "1.0"}),
    )

    async with running(config) as (sup, _, _):
        began = time.monotonic()
        await sup.start()
        statuses = await sup.wait_ready(config.names, timeout=20)
        elapsed = time.monotonic() - began
        assert all(s.state is S.RUNNING for s in statuses.values())
        assert elapsed < 1.9, f"two 1 s services took {elapsed:.2f}s: not started in parallel"


@pytest.mark.anyio
async def test_failed_dependency_leaves_dependents_pending_with_the_reason(tmp_path: Path) -> None:
    write_http_service(tmp_path)
    api_port = free_port()
    config = make_config(
        tmp_path,
        service(
            "db", "echo cannot start; exit 3", tmp_path, port=free_port(), restart=RestartMode.NEVER
        ),
        service("api", SERVER, tmp_path, port=api_port, depends_on=("db",)),
    )

    async with running(config) as (sup, sink, _):
        await sup.start()
        statuses = await sup.wait_ready(["api"], timeout=20)
        assert statuses["api"].state is S.PENDING
        db = sup.status("db")
        assert db.state is S.FAILED and db.exit_code == 3 and db.reason == "exit code 3"
        await poll(
            lambda: sup.status("api").reason == "dependency db failed", message="api's reason"
        )
        assert sup.status("api").pid is None
        assert ("db", "cannot start") in sink.lines


@pytest.mark.anyio
async def test_oneshot_task_gates_its_dependent_until_it_exits_zero(tmp_path: Path) -> None:
    write_http_service(tmp_path)
    record = tmp_path / "record.txt"
    task = f"sleep 0.3; echo \"migrate done $(python3 -c 'import time; print(time.time())')\" >> {record}"
    config = make_config(
        tmp_path,
        service("migrate", task, tmp_path, oneshot=True),
        service(
            "api",
            SERVER,
            tmp_path,
            port=free_port(),
            env={"RECORD": str(record)},
            depends_on=("migrate",),
        ),
    )

    async with running(config) as (sup, _, rec):
        await sup.start()
        statuses = await sup.wait_ready(config.names, timeout=20)
        assert statuses["migrate"].state is S.COMPLETED and statuses["migrate"].exit_code == 0
        assert statuses["api"].state is S.RUNNING
        assert rec.states("migrate") == [S.STARTING, S.RUNNING, S.COMPLETED]
    times = read_record(record)
    assert times[("api", "spawned")][0] >= times[("migrate", "done")][0]


@pytest.mark.anyio
async def test_failing_oneshot_blocks_its_dependent_and_is_not_restarted(tmp_path: Path) -> None:
    write_http_service(tmp_path)
    config = make_config(
        tmp_path,
        service("migrate", "echo broken schema; exit 4", tmp_path, oneshot=True),
        service("api", SERVER, tmp_path, port=free_port(), depends_on=("migrate",)),
        service("other", SERVER, tmp_path, port=free_port()),
    )

    async with running(config) as (sup, _, rec):
        await sup.start()
        statuses = await sup.wait_ready(config.names, timeout=20)
        assert statuses["migrate"].state is S.FAILED and statuses["migrate"].exit_code == 4
        await poll(lambda: sup.status("other").state is S.RUNNING, message="other running")
        assert sup.status("api").state is S.PENDING
        assert sup.status("api").reason == "dependency migrate failed"
        # A failed task is not run again, and never stops the rest.
        await stays(
            lambda: rec.states("migrate").count(S.STARTING) == 1 and sup.status("other").state is S.RUNNING,
            0.3,
            "one run of migrate, other running",
        )


def test_port_in_use_fails_the_service_before_spawning_and_names_the_owner(tmp_path: Path) -> None:
    write_http_service(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        config = make_config(tmp_path, service("api", SERVER, tmp_path, port=port))

        async def body() -> None:
            async with running(config) as (sup, sink, rec):
                await sup.start()
                statuses = await sup.wait_ready(["api"], timeout=20)
                assert statuses["api"].state is S.FAILED
                reason = statuses["api"].reason or ""
                assert reason.startswith(f"port {port} is already in use"), reason
                assert f"pid {os.getpid()}" in reason  # the owner (this test), found through /proc
                assert S.STARTING not in rec.states("api")  # never spawned
                assert any(name == "a3s" and f"port {port}" in line for name, line in sink.lines)

        anyio.run(body)


@pytest.mark.anyio
async def test_service_environment_follows_the_contract(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        'FROM_FILE=file\nOVERRIDDEN=file\n# comment\nexport QUOTED="a b"\n'
    )
    dump = "env | sort > env.txt; sleep 30"
    db_port = free_port()
    config = make_config(
        tmp_path,
        service(
            "my-db",
            f"exec python3 -m http.server --bind 127.0.0.1 {db_port}",
            tmp_path,
            port=db_port,
        ),
        service("cache", "sleep 30", tmp_path),
        service(
            "api",
            dump,
            tmp_path,
            port=free_port(),
            env={"OVERRIDDEN": "env", "PORT": "1"},
            env_file=tmp_path / ".env",
            depends_on=("my-db", "cache"),
        ),
    )

    async with running(config) as (sup, _, _):
        await sup.start(["api"])
        await poll(
            lambda: (tmp_path / "env.txt").exists() and (tmp_path / "env.txt").read_text(),
            message="env.txt",
        )
    env = dict(
        line.split("=", 1)
        for line in (tmp_path / "env.txt").read_text().splitlines()
        if "=" in line
    )
    api_port = config.service("api").port
    assert env["PORT"] == str(api_port)  # PORT wins over `env`
    assert env["OVERRIDDEN"] == "env"  # env wins over env_file
    assert env["FROM_FILE"] == "file" and env["QUOTED"] == "a b"
    assert env["A3S_SERVICE"] == "api"
    assert env["A3S_MY_DB_URL"] == f"http://127.0.0.1:{db_port}"
    assert "A3S_CACHE_URL" not in env  # no port, no URL
    assert "PATH" in env  # a3s's own environment comes first


@pytest.mark.anyio
async def test_a_dependency_that_exits_for_good_is_named_as_the_reason(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        # It has a port, so it gates on its probe, but it exits 0 before ever listening.
        service("setup", "echo done", tmp_path, port=free_port(), restart=RestartMode.NEVER),
        service("api", "sleep 30", tmp_path, depends_on=("setup",)),
    )

    async with running(config) as (sup, _, _):
        await sup.start()
        await poll(
            lambda: sup.status("api").reason == "dependency setup exited and is not restarted",
            message="api's reason",
        )
        assert sup.status("setup").state is S.STOPPED and sup.status("api").state is S.PENDING
