"""Every control-plane command against a real background supervisor in tmp_path."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port, holds, pid_alive, pids_in_group, port_open, wait_until
from support_control import Stack, chain_a3sfile, no_process_left, service_block, stack_in

from a3s_dev.run import workspace

STATES = {
    "pending",
    "starting",
    "running",
    "unhealthy",
    "backoff",
    "stopping",
    "stopped",
    "completed",
    "failed",
}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with stack_in(tmp_path) as s:
        yield s


def get(port: int, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.read().decode()


def test_up_d_returns_once_healthy_and_a_second_up_d_reuses_the_supervisor(stack: Stack) -> None:
    ports = chain_a3sfile(stack.folder)
    workspace.ensure_state_dir(stack.paths)
    stack.paths.supervisor_log.write_text("an old supervisor's line\n" * 50_000)  # over 1 MB
    first = stack.a3s("up", "-d")
    assert first.code == 0, first.err
    assert "ready" in first.out
    rows = stack.status()
    assert [r["state"] for r in rows.values()] == ["running"] * 3
    assert get(ports["web"]).startswith("web ")  # healthy means it answers now, not later
    supervisor = stack.supervisor_pid()
    assert supervisor and pid_alive(supervisor)

    second = stack.a3s("up", "-d")
    assert second.code == 0, second.err
    assert stack.supervisor_pid() == supervisor
    assert stack.status()["db"]["pid"] == rows["db"]["pid"]  # nothing was started twice
    spawned = [name for name, event in stack.record() if event == "spawned"]
    assert sorted(spawned) == ["api", "db", "web"]

    # The control socket is private: 0600 in a 0700 folder.
    paths = stack.paths
    assert stat.S_IMODE(os.stat(paths.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(paths.state_dir).st_mode) == 0o700
    assert "supervisor" in paths.supervisor_log.read_text()
    # supervisor.log does not grow without end: past 1 MB it moved to supervisor.log.1
    assert "old supervisor" not in paths.supervisor_log.read_text()
    assert paths.supervisor_log.with_name("supervisor.log.1").read_text().startswith("an old supervisor's line")


def test_up_d_of_a_failing_service_exits_1_naming_it_with_its_last_lines(stack: Stack) -> None:
    ports = chain_a3sfile(stack.folder, ("db",))
    with open(stack.a3sfile, "a") as f:
        f.write(
            service_block(
                "broken",
                "echo about to fail; echo really; exit 3",
                port=free_port(),  # probed, so never "ready" in the instant before it exits
                depends_on=["db"],
                extra='restart = "never"',
            )
        )
    result = stack.a3s("up", "-d")
    assert result.code == 1
    assert "broken failed: exit code 3" in result.err
    assert "about to fail" in result.err and "really" in result.err
    assert stack.status()["db"]["state"] == "running"  # the rest keeps running, like compose
    assert get(ports["db"]).startswith("db ")


def test_up_d_runs_a_oneshot_once_and_fails_on_a_service_that_exits_0(stack: Stack) -> None:
    chain_a3sfile(stack.folder, ("db",))
    with open(stack.a3sfile, "a") as f:
        f.write(service_block("migrate", "echo migrating", extra="oneshot = true"))
        # With a port it is probed, so it is never "ready" before it exits 0.
        f.write(service_block("quitter", "echo bye", port=free_port(), depends_on=["migrate"]))
    result = stack.a3s("up", "-d")
    assert result.code == 1
    assert "quitter failed: exit code 0" in result.err and "bye" in result.err
    assert stack.a3s("up", "db").code == 0  # asks the running supervisor; migrate stays done
    rows = stack.status()
    assert rows["migrate"]["state"] == "completed" and rows["migrate"]["exit_code"] == 0
    assert (stack.paths.logs_dir / "migrate.log").read_text().count("migrating") == 1


def test_up_d_with_the_proxy_port_taken_exits_1_saying_so_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with stack_in(tmp_path, {"A3S_PROXY_PORT": str(port)}) as stack:
            ports = chain_a3sfile(tmp_path, ("db",))
            result = stack.a3s("up", "-d")
            assert result.code == 1
            assert f"port {port} is already in use" in result.err
            assert "serving" not in result.err
            wait_until(lambda: not workspace.lock_held(stack.paths), message="the supervisor to exit")
            # The first wave may have been spawned before the proxy failed: it is gone again.
            wait_until(lambda: not port_open(ports["db"]), message="db to be stopped")


def test_up_with_a_running_supervisor_starts_only_what_is_asked(stack: Stack) -> None:
    chain_a3sfile(stack.folder)
    assert stack.a3s("up", "-d", "db").code == 0
    rows = stack.status()
    assert rows["db"]["state"] == "running" and rows["web"]["state"] == "stopped"
    again = stack.a3s("up", "api")  # not detached: a supervisor runs, so ask it
    assert again.code == 0, again.err
    rows = stack.status()
    assert rows["api"]["state"] == "running" and rows["web"]["state"] == "stopped"


def test_down_of_one_service_stops_its_running_dependents_first(stack: Stack) -> None:
    chain_a3sfile(stack.folder)
    assert stack.a3s("up", "-d").code == 0
    result = stack.a3s("down", "api")
    assert result.code == 0, result.err
    rows = stack.status()
    assert rows["db"]["state"] == "running"
    assert rows["api"]["state"] == "stopped" and rows["web"]["state"] == "stopped"
    stopped = [name for name, event in stack.record() if event == "stopped"]
    assert stopped == ["web", "api"]


def test_down_stops_everything_and_the_supervisor_then_nothing_is_running(stack: Stack) -> None:
    chain_a3sfile(stack.folder)
    assert stack.a3s("up", "-d").code == 0
    groups = [r["pid"] for r in stack.status().values()]
    supervisor = stack.supervisor_pid()
    result = stack.a3s("down")
    assert result.code == 0, result.err
    assert [name for name, event in stack.record() if event == "stopped"] == ["web", "api", "db"]
    no_process_left(groups)
    assert supervisor is not None and not pid_alive(supervisor)
    assert not stack.paths.socket.exists()
    again = stack.a3s("down")
    assert again.code == 0 and "nothing is running" in again.out


def test_restart_gives_a_new_pid_and_returns_when_healthy(stack: Stack) -> None:
    ports = chain_a3sfile(stack.folder)
    assert stack.a3s("up", "-d").code == 0
    before = stack.status()
    result = stack.a3s("restart", "api")
    assert result.code == 0, result.err
    after = stack.status()
    assert after["api"]["pid"] != before["api"]["pid"]
    assert after["api"]["state"] == "running"
    assert get(ports["api"]).startswith(f"api {after['api']['pid']}")
    assert after["web"]["pid"] == before["web"]["pid"]  # dependents keep running


def test_restart_that_does_not_get_healthy_exits_1_with_the_reason(stack: Stack) -> None:
    chain_a3sfile(stack.folder, ("db",))
    flag = stack.folder / "ok"
    flag.write_text("")
    with open(stack.a3sfile, "a") as f:
        f.write(
            service_block(
                "flaky",
                f"test -f ok || {{ echo no ok file; exit 4; }}; exec {sys.executable} server.py",
                port=free_port(),
            )
        )
    assert stack.a3s("up", "-d").code == 0
    flag.unlink()
    result = stack.a3s("restart", "flaky")
    assert result.code == 1
    assert "flaky" in result.err and "exit code 4" in result.err
    assert "no ok file" in result.err


def test_sigkill_of_the_supervisor_then_down_leaves_no_service_process(stack: Stack) -> None:
    chain_a3sfile(stack.folder, ("db",))
    # A shell that keeps its server as a grandchild: the parent-death signal reaches only the
    # shell, so the server outlives a SIGKILLed supervisor until `down` ends its group.
    with open(stack.a3sfile, "a") as f:
        f.write(
            service_block(
                "deep", f"{sys.executable} -c 'import time; time.sleep(600)' & wait", port=None
            )
        )
    assert stack.a3s("up", "-d").code == 0
    rows = stack.status()
    groups = [rows["db"]["pid"], rows["deep"]["pid"]]
    supervisor = stack.supervisor_pid()
    assert supervisor is not None
    os.kill(supervisor, signal.SIGKILL)
    wait_until(lambda: not pid_alive(supervisor), message="the supervisor to die")
    assert pids_in_group(rows["deep"]["pid"]), "the grandchild should have outlived the supervisor"

    result = stack.a3s("down")
    assert result.code == 0, result.err
    assert "deep" in result.out
    no_process_left(groups)
    assert not stack.paths.socket.exists() and not stack.paths.pid.exists()
    assert stack.a3s("down").out.strip() == "nothing is running"


def test_sigkill_of_the_supervisor_then_up_d_ends_the_old_groups_first(stack: Stack) -> None:
    chain_a3sfile(stack.folder, ("db",))
    with open(stack.a3sfile, "a") as f:
        f.write(service_block("deep", f"{sys.executable} -c 'import time; time.sleep(600)' & wait"))
    assert stack.a3s("up", "-d").code == 0
    old = stack.status()
    supervisor = stack.supervisor_pid()
    assert supervisor is not None
    os.kill(supervisor, signal.SIGKILL)
    wait_until(lambda: not pid_alive(supervisor), message="the supervisor to die")

    result = stack.a3s("up", "-d")
    assert result.code == 0, result.err
    assert "killed supervisor left:" in result.out and "deep" in result.out
    no_process_left([old["deep"]["pid"]])
    new = stack.status()
    assert new["deep"]["state"] == "running" and new["deep"]["pid"] != old["deep"]["pid"]
    assert stack.supervisor_pid() not in (None, supervisor)


def test_long_state_path_puts_the_socket_under_xdg_runtime_dir(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 60) / ("y" * 40)
    deep.mkdir(parents=True)
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    with stack_in(deep, {"XDG_RUNTIME_DIR": str(xdg)}) as stack:
        chain_a3sfile(deep, ("db",))
        assert len(str(deep / ".a3s" / "control.sock")) > workspace.AF_UNIX_PATH_MAX
        assert stack.a3s("up", "-d").code == 0
        sockets = list((xdg / "a3s").glob("*.sock"))
        assert len(sockets) == 1
        assert stat.S_IMODE(os.stat(sockets[0]).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(xdg / "a3s").st_mode) == 0o700
        assert stack.status()["db"]["state"] == "running"
        assert stack.a3s("down").code == 0
        assert not sockets[0].exists()


def test_logs_follow_shows_a_new_line(stack: Stack) -> None:
    ports = chain_a3sfile(stack.folder, ("db", "api"))
    assert stack.a3s("up", "-d").code == 0
    follower = stack.popen("logs", "-f", "api")
    try:
        lines: list[str] = []

        def read() -> None:
            assert follower.stdout is not None
            for line in follower.stdout:
                lines.append(line)  # noqa: PERF402 - the test reads `lines` as they come

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        wait_until(
            lambda: any("api listening" in ln for ln in lines), timeout=20, message="the history"
        )
        assert not any(" db " in ln and "listening" in ln for ln in lines)  # only the asked service
        get(ports["api"], "/fresh-line")
        wait_until(
            lambda: any("api got /fresh-line" in ln for ln in lines),
            timeout=10,
            message="the new line",
        )
        line = next(ln for ln in lines if "/fresh-line" in ln)
        assert " api | api got /fresh-line" in line
        # The stream ends when the supervisor stops.
        assert stack.a3s("down").code == 0
        assert follower.wait(timeout=20) == 0
    finally:
        if follower.poll() is None:
            os.killpg(follower.pid, signal.SIGKILL)
            follower.wait()


def test_logs_history_is_merged_in_time_order_with_n_per_service(stack: Stack) -> None:
    ports = chain_a3sfile(stack.folder, ("db", "api"))
    assert stack.a3s("up", "-d").code == 0
    for i in range(3):
        for name, path in (("db", f"/d{i}"), ("api", f"/a{i}")):
            get(ports[name], path)
            # Lines are stamped when the supervisor reads them: let each land before the next.
            log = stack.paths.logs_dir / f"{name}.log"
            landed = f"got {path}"
            wait_until(lambda: log.exists() and landed in log.read_text(), message=path)  # noqa: B023
            # The files keep milliseconds: lines of two services within one millisecond
            # have no order to recover, so let the clock move on before the next one.
            stamped = time.time()
            wait_until(lambda: time.time() >= stamped + 0.002, message="the next millisecond")  # noqa: B023
    result = stack.a3s("logs", "db", "api", "-n", "2")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert [ln.split("| ", 1)[1] for ln in lines] == [
        "db got /d1",
        "api got /a1",
        "db got /d2",
        "api got /a2",
    ], (result.out, {n: (stack.paths.logs_dir / f"{n}.log").read_text() for n in ("db", "api")})


def test_status_json_schema_with_a_running_supervisor(stack: Stack) -> None:
    ports = chain_a3sfile(stack.folder, ("db", "api"))
    assert stack.a3s("up", "-d").code == 0
    result = stack.a3s("status", "--json")
    rows = json.loads(result.out)
    assert [r["name"] for r in rows] == ["db", "api"]
    for row in rows:
        assert list(row) == [
            "name", "state", "pid", "port", "health", "uptime_s", "restarts", "exit_code", "url", "probe", "project",
            "reason", "cpu", "rss", "image",
        ]
        assert row["state"] in STATES
        assert isinstance(row["pid"], int) and isinstance(row["uptime_s"], float)
        assert row["restarts"] == 0 and row["exit_code"] is None
        assert row["port"] == ports[row["name"]] and row["url"] == f"http://127.0.0.1:{row['port']}"
    table = stack.a3s("status").out.splitlines()
    assert table[0].split() == [
        "NAME",
        "STATE",
        "PID",
        "PORT",
        "HEALTH",
        "CPU",
        "MEM",
        "UPTIME",
        "RESTARTS",
        "URL",
    ]
    assert table[1].split()[:2] == ["db", "running"]


def test_every_command_without_a_supervisor(stack: Stack) -> None:
    ports = chain_a3sfile(stack.folder, ("db", "api"))
    rows = json.loads(stack.a3s("status", "--json").out)
    assert [(r["name"], r["state"], r["pid"], r["port"]) for r in rows] == [
        ("db", "stopped", None, ports["db"]),
        ("api", "stopped", None, ports["api"]),
    ]
    down = stack.a3s("down")
    assert (down.code, down.out.strip()) == (0, "nothing is running")
    restart = stack.a3s("restart", "api")
    assert restart.code == 1 and "nothing is running" in restart.err
    logs = stack.a3s("logs")
    assert (logs.code, logs.out) == (0, "")
    unknown = stack.a3s("logs", "apx")
    assert unknown.code == 2 and "did you mean 'api'" in unknown.err


def test_up_d_never_runs_a_failed_task_a_second_time(stack: Stack) -> None:
    """SPEC §8: the waiting `up -d` only asks what to wait for; it must not start the failed
    migration again (one that is not idempotent would run twice)."""
    chain_a3sfile(stack.folder, ("db",))
    runs = stack.folder / "runs.txt"
    with open(stack.a3sfile, "a") as f:
        f.write(service_block("migrate", f"echo run >> {runs}; exit 5", extra='oneshot = true\n  restart = "never"'))
    result = stack.a3s("up", "-d")
    assert result.code == 1 and "migrate failed: exit code 5" in result.err
    holds(lambda: runs.read_text().count("run") == 1, 1.0, message="one run of the failed task")
    assert stack.a3s("up", "-d").code == 1  # a plain `up` again does not retry it either
    holds(lambda: runs.read_text().count("run") == 1, 0.5, message="still one run")
    stack.a3s("up", "-d", "migrate")  # named: the user asks for it
    wait_until(lambda: runs.read_text().count("run") == 2, message="the named task run again")


def test_up_d_with_a_string_no_process_can_take_is_one_line_and_starts_nothing(stack: Stack) -> None:
    """SPEC §8: a NUL byte in a command used to crash the supervisor and orphan the good service
    declared before it."""
    stack.a3sfile.write_text(
        service_block("good", "exec sleep 30") + 'service "bad" {\n  cmd = "echo a\\u0000b"\n}\n'
    )
    bad_line = stack.a3sfile.read_text().splitlines().index('  cmd = "echo a\\u0000b"') + 1
    result = stack.a3s("up", "-d")
    assert result.code == 1
    expected = f'a3s: A3sfile.hcl:{bad_line}: error: service "bad": cmd holds a NUL byte, which no command, path'
    assert result.err.strip().splitlines() == [expected + " or environment can carry"]
    assert "Traceback" not in result.err + result.out
    assert stack.supervisor_pid() is None
    assert [name for name, event in stack.record() if event == "spawned"] == []


def test_each_a3sfile_has_its_own_state_folder_ignored_by_git(stack: Stack) -> None:
    """SPEC §8: `-f other.hcl` never sees or stops A3sfile.hcl's supervisor."""
    chain_a3sfile(stack.folder, ("db",))
    other = stack.folder / "other.hcl"
    other.write_text(service_block("solo", "exec sleep 30"))
    assert stack.a3s("-f", str(other), "up", "-d").code == 0
    assert (stack.folder / ".a3s-other" / "supervisor.pid").exists()
    plain = json.loads(stack.a3s("status", "--json").out)
    assert [(r["name"], r["state"]) for r in plain] == [("db", "stopped")]
    assert stack.a3s("down").out.strip() == "nothing is running"
    mine = json.loads(stack.a3s("-f", str(other), "status", "--json").out)
    assert [(r["name"], r["state"]) for r in mine] == [("solo", "running")]
    assert stack.a3s("-f", str(other), "down").code == 0
    assert (stack.folder / ".a3s-other" / ".gitignore").read_text().splitlines()[-1] == "*"
    import subprocess

    if shutil.which("git"):
        subprocess.run(["git", "init", "-q", str(stack.folder)], check=True)
        shown = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=stack.folder,
                               capture_output=True, text=True, check=True).stdout
        assert ".a3s" not in shown, shown


def test_after_a_killed_supervisor_status_says_orphaned_and_down_uses_each_stop_signal(stack: Stack) -> None:
    """SPEC §8: never `stopped` for a service that still listens; the cleanup sends each
    service's own stop_signal and waits its stop_timeout."""
    signals = stack.folder / "signals.txt"
    trap = (
        f"{sys.executable} -c \"import signal, sys, time\n"
        f"def on(n, f):\n    open('{signals}', 'a').write(signal.Signals(n).name + chr(10)); sys.exit(0)\n"
        "signal.signal(signal.SIGINT, on); signal.signal(signal.SIGTERM, on)\ntime.sleep(600)\""
    )
    # Each command keeps its program as a grandchild: the parent-death signal ends only the
    # shell when the supervisor is SIGKILLed, so the program is left behind, as a real one is.
    stack.a3sfile.write_text(
        service_block("pg", f"{trap} & wait", extra='stop_signal = "SIGINT"\n  stop_timeout = "9s"')
        + service_block("idle", "sleep 600 & wait")
    )
    assert stack.a3s("up", "-d").code == 0
    before = stack.status()
    supervisor = stack.supervisor_pid()
    assert supervisor is not None
    os.kill(supervisor, signal.SIGKILL)
    wait_until(lambda: not pid_alive(supervisor), message="the supervisor to die")

    result = stack.a3s("status", "--json")
    rows = {r["name"]: r for r in json.loads(result.out)}
    assert rows["pg"]["state"] == rows["idle"]["state"] == "orphaned"
    assert rows["pg"]["pid"] in pids_in_group(before["pg"]["pid"]) and rows["pg"]["health"] is None
    assert "run `a3s down`" in result.err
    table = stack.a3s("status").out
    assert "orphaned" in table and "stopped" not in table

    assert stack.a3s("down").code == 0
    assert signals.read_text().split() == ["SIGINT"], "pg was ended with its own stop_signal"
    assert {r["state"] for r in json.loads(stack.a3s("status", "--json").out)} == {"stopped"}


def test_status_of_a_frozen_supervisor_answers_within_2s_saying_so(stack: Stack) -> None:
    chain_a3sfile(stack.folder, ("db",))
    assert stack.a3s("up", "-d").code == 0
    supervisor = stack.supervisor_pid()
    assert supervisor is not None
    os.kill(supervisor, signal.SIGSTOP)
    try:
        began = time.monotonic()
        result = stack.a3s("status")
        took = time.monotonic() - began
    finally:
        os.kill(supervisor, signal.SIGCONT)
    assert result.code == 1 and took < 2.5, (took, result.err)
    assert f"the supervisor (pid {supervisor}) is not answering" in result.err
    assert "Traceback" not in result.err


def test_every_stop_is_logged_with_its_cause_in_stop_order(stack: Stack) -> None:
    """SPEC §8: `a3s down api` used to write nothing; a full stop said only "every service stopped"."""
    chain_a3sfile(stack.folder)  # db <- api <- web
    assert stack.a3s("up", "-d").code == 0
    a3s_log = stack.paths.logs_dir / "a3s.log"
    assert stack.a3s("down", "api").code == 0  # api and its dependent web
    wait_until(lambda: "api stopped (a3s down api)" in a3s_log.read_text(), message="the stop of api logged")
    text = a3s_log.read_text()
    assert text.index("web stopped (a3s down api)") < text.index("api stopped (a3s down api)")
    assert stack.a3s("restart", "db").code == 0
    wait_until(lambda: "db stopped (a3s restart)" in a3s_log.read_text(), message="the restart's stop logged")
    assert stack.a3s("down").code == 0
    text = a3s_log.read_text()
    assert "db stopped (a3s down)" in text
    assert text.index("db stopped (a3s down)") < text.index("every service stopped")


def test_a_dependent_left_pending_by_a_failed_dependency_says_so_once(stack: Stack) -> None:
    stack.a3sfile.write_text(
        service_block("migrate", "exit 3", extra='oneshot = true\n  restart = "never"')
        + service_block("api", "exec sleep 30", depends_on=["migrate"])
    )
    assert stack.a3s("up", "-d").code == 1
    a3s_log = stack.paths.logs_dir / "a3s.log"
    wait_until(lambda: "api stays pending: dependency migrate failed" in a3s_log.read_text(), message="the line")
    holds(lambda: a3s_log.read_text().count("api stays pending") == 1, 0.5, message="said once")


def test_each_up_marks_its_run_in_the_history_and_logs_shows_it(stack: Stack) -> None:
    chain_a3sfile(stack.folder, ("db",))
    for _ in range(2):
        assert stack.a3s("up", "-d").code == 0
        assert stack.a3s("down").code == 0
    markers = [line for line in stack.a3s("logs", "a3s").out.splitlines() if "── a3s up " in line]
    assert len(markers) == 2, markers
    assert re.search(r"a3s +\| ── a3s up \d{4}-\d\d-\d\d \d\d:\d\d:\d\d ──$", markers[0])


def test_up_d_on_a_full_disk_is_one_line_and_leaves_nothing_behind(stack: Stack) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    chain_a3sfile(stack.folder, ("db",))
    workspace.ensure_state_dir(stack.paths)
    tmp = stack.paths.pid.with_suffix(".pid.tmp")
    tmp.symlink_to("/dev/full")  # writing the pid file: ENOSPC, as on a full disk
    result = stack.a3s("up", "-d")
    assert result.code == 1
    assert "cannot write the supervisor's pid file (No space left on device)" in result.err
    assert "Traceback" not in result.err + result.out
    assert not tmp.exists() and not stack.paths.pid.exists()
    assert [name for name, event in stack.record() if event == "spawned"] == []


def test_up_on_an_empty_a3sfile_is_one_line(stack: Stack) -> None:
    stack.a3sfile.write_text("")
    for args in (("up", "-d"), ("up",)):
        result = stack.a3s(*args)
        assert result.code == 1
        assert result.err.strip().endswith('no services to start (add a service "name" { cmd = "..." } block)')
        assert len(result.err.strip().splitlines()) == 1


def test_up_d_reports_the_time_to_ready_from_its_own_start(stack: Stack) -> None:
    chain_a3sfile(stack.folder, ("db",))
    began = time.monotonic()
    result = stack.a3s("up", "-d")
    took = time.monotonic() - began
    assert result.code == 0
    shown = float(re.search(r"ready: db \((\d+\.\d\d)s\)", result.out).group(1))  # type: ignore[union-attr]
    assert 0.05 < shown <= took + 0.05, (shown, took)


def test_up_d_timeout_bounds_the_wait_and_leaves_the_supervisor_running(stack: Stack) -> None:
    stack.a3sfile.write_text(service_block("never", "exec sleep 60", port=free_port()))  # never listens
    began = time.monotonic()
    result = stack.a3s("up", "-d", "--timeout", "1s")
    assert result.code == 1 and time.monotonic() - began < 8
    assert "not ready after 1s: never (starting: connection refused); the supervisor keeps running" in result.err
    assert "waiting for never (starting: connection refused)" in result.out
    assert stack.status()["never"]["state"] == "starting"


def test_two_checkouts_with_automatic_ports_run_side_by_side_and_keep_their_ports(tmp_path: Path) -> None:
    """SPEC §6: `port = "auto"`: a free loopback port per service, kept across its restarts,
    exported as PORT and to dependents, shown by status."""
    text = (
        service_block("api", f"exec {sys.executable} server.py", extra='port = "auto"')
        + service_block("client", 'echo "api at $A3S_API_URL"; exec sleep 60', depends_on=["api"])
    )
    import contextlib

    from support import write_http_service

    with contextlib.ExitStack() as cleanup:
        stacks = []
        for name in ("one", "two"):
            folder = tmp_path / name
            folder.mkdir()
            (folder / "A3sfile.hcl").write_text(text)
            write_http_service(folder)
            s = cleanup.enter_context(stack_in(folder, {"A3S_PROXY_PORT": "0"}))
            stacks.append(s)
            assert s.a3s("up", "-d").code == 0
        ports = [s.status()["api"]["port"] for s in stacks]
        assert all(isinstance(p, int) for p in ports) and ports[0] != ports[1]
        for s, port in zip(stacks, ports, strict=True):
            assert get(port).startswith("hello from api")  # it listens where status says
            log = (s.paths.logs_dir / "client.log").read_text()
            assert f"api at http://127.0.0.1:{port}" in log
        assert stacks[0].a3s("restart", "api").code == 0
        assert stacks[0].status()["api"]["port"] == ports[0], "kept across a restart"


def test_a_second_running_project_with_the_same_name_is_refused_naming_the_first(tmp_path: Path) -> None:
    """SPEC §6: names are how the proxy tells projects apart; the second `up` says how to rename."""
    import contextlib

    with contextlib.ExitStack() as cleanup:
        firsts = []
        for where in ("a", "b"):
            folder = tmp_path / where / "shop"
            folder.mkdir(parents=True)
            (folder / "A3sfile.hcl").write_text(service_block("web", "exec sleep 60"))
            firsts.append(cleanup.enter_context(stack_in(folder, {"A3S_PROXY_PORT": "0"})))
        one, two = firsts
        assert one.a3s("up", "-d").code == 0
        refused = two.a3s("up", "-d")
        assert refused.code == 1
        assert f'project "shop" is already running from {one.a3sfile}' in refused.err
        assert 'dev { name = "shop-2" } or A3S_PROJECT=shop-2' in refused.err
        assert two.supervisor_pid() is None and [n for n, e in two.record() if e == "spawned"] == []
        assert one.a3s("down").code == 0
        assert two.a3s("up", "-d").code == 0, "the name is free once the first project stopped"


def test_the_supervisor_computes_the_plan_itself_and_its_children_are_the_services(stack: Stack) -> None:
    """The graph's plan is computed in the supervisor (networkx in a worker thread, once the first
    wave is up): no helper process beside it, ever; a stop in dependency order still works."""
    chain_a3sfile(stack.folder, ("db", "api"))
    assert stack.a3s("up", "-d").code == 0
    supervisor = stack.supervisor_pid()
    assert supervisor is not None
    services = {row["pid"] for row in stack.status().values()}

    def strangers() -> list[str]:
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in services:
                continue
            try:
                stat_line = Path(f"/proc/{entry}/stat").read_text()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat_line.rsplit(")", 1)[1].split()[1])
            if ppid == supervisor and b"a3s_dev.proxy" not in cmdline:  # the shared proxy it started
                found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
        return found

    holds(lambda: strangers() == [], 3.0, message="the supervisor has only services (and the proxy) as children")
    assert stack.a3s("restart", "db").code == 0
    assert stack.a3s("down").code == 0


DAEMON = """\
import os, sys, time
lifetime = float(sys.argv[1])
pid = os.fork()
if pid == 0:
    os.setsid()  # a daemon's double fork: its own session, out of the service's group
    if os.fork() == 0:
        open(sys.argv[2], "w").write(str(os.getpid()))
        time.sleep(lifetime)
        os._exit(0)
    os._exit(0)
os.waitpid(pid, 0)
time.sleep(1000)
"""


def test_down_ends_what_a_service_double_forked_away_and_exited_ones_are_reaped(tmp_path: Path) -> None:
    from a3s_dev.system.procfs import stat_fields

    (tmp_path / "daemon.py").write_text(DAEMON)
    (tmp_path / "A3sfile.hcl").write_text(
        'service "stays" {\n  cmd = "exec python3 daemon.py 1000 stays.pid"\n}\n'
        'service "brief" {\n  cmd = "exec python3 daemon.py 0.2 brief.pid"\n}\n'
    )
    with stack_in(tmp_path, {"A3S_PROXY_PORT": "0"}) as st:
        assert st.a3s("up", "-d").code == 0
        wait_until(lambda: (tmp_path / "stays.pid").exists() and (tmp_path / "brief.pid").exists(),
                   message="the grandchildren")
        stays, brief = (int((tmp_path / f"{n}.pid").read_text()) for n in ("stays", "brief"))
        supervisor = st.supervisor_pid()
        wait_until(lambda: (stat_fields(stays) or [b"", b"0"])[1] == str(supervisor).encode(), timeout=5,
                   message="the grandchild reparented to the supervisor, not to init")
        # one that exits is not left a zombie: the supervisor collects it
        wait_until(lambda: stat_fields(brief) is None, timeout=10, message="the brief grandchild reaped")
        assert st.a3s("down").code == 0
        wait_until(lambda: not pid_alive(stays), timeout=10, message="the daemon's grandchild ended by down")
