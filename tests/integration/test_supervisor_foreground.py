"""`a3s up` in the foreground as a real subprocess: merged logs, Ctrl-C leaves nothing, a second one kills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import (
    free_port,
    kill_group,
    pid_alive,
    pids_in_group,
    port_open,
    recorded_pgids,
    start_a3s,
    wait_until,
    write_http_service,
)

# Builds the config from dataclasses (as `a3s up` does after loading the A3sfile) and runs
# the foreground session, so the test exercises exactly what the CLI runs.
LAUNCHER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from a3s_dev.config.model import DevConfig, ServiceDef
    from a3s_dev.run.options import UpOptions
    from a3s_dev.run.serve import run_foreground

    spec = json.loads(Path(sys.argv[1]).read_text())
    folder = Path(spec["folder"])
    services = tuple(
        ServiceDef(s["name"], s["cmd"], folder, port=s.get("port"), depends_on=tuple(s.get("depends_on", ())),
                   stop_timeout=s.get("stop_timeout", 5.0))
        for s in spec["services"]
    )
    sys.exit(run_foreground(DevConfig(path=folder / "A3sfile.hcl", services=services), UpOptions(proxy=False), color=False))
    """
)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator:
    procs: list[subprocess.Popen[str]] = []

    def start(services: list[dict]) -> subprocess.Popen[str]:
        (tmp_path / "launcher.py").write_text(LAUNCHER)
        spec = tmp_path / "spec.json"
        spec.write_text(json.dumps({"folder": str(tmp_path), "services": services}))
        proc = subprocess.Popen(
            [sys.executable, str(tmp_path / "launcher.py"), str(spec)],
            stdout=open(tmp_path / "out.txt", "w"),  # noqa: SIM115 - the child owns it
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so cleanup can kill whatever it left
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        kill_group(proc.pid)
        proc.wait(timeout=10)
    for pgid in recorded_pgids(tmp_path):
        kill_group(pgid)


PID_SERVER = "sleep 1000 & exec python3 server.py"


def test_sigint_stops_everything_in_reverse_order_and_exits_zero(tmp_path: Path, launch) -> None:
    write_http_service(tmp_path)
    db, api = free_port(), free_port()
    proc = launch(
        [
            {"name": "db", "cmd": PID_SERVER, "port": db},
            {"name": "api", "cmd": PID_SERVER, "port": api, "depends_on": ["db"]},
        ]
    )
    out = tmp_path / "out.txt"
    wait_until(lambda: "api is healthy" in out.read_text(), timeout=20, message="api healthy line")
    groups = recorded_pgids(tmp_path)
    assert len(groups) == 2 and all(pids_in_group(g) for g in groups)

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0
    text = out.read_text()
    assert all(pids_in_group(g) == [] for g in groups), "a process of a service survived Ctrl-C"
    assert not port_open(db) and not port_open(api)
    lines = text.splitlines()
    assert any(
        line.startswith(("0", "1", "2")) and " db  | db listening on" in line for line in lines
    ), text
    assert "every service stopped" in lines[-1]
    stops = [line.split("| ", 1)[1] for line in lines if line.endswith("stopped (Ctrl-C)")]
    assert stops == ["api stopped (Ctrl-C)", "db stopped (Ctrl-C)"], "each stop, with its cause, dependents first"
    assert any("a3s | all 2 services ready in " in line for line in lines)
    # One healthy line per service, with the time to ready.
    assert [line.split("| ", 1)[1].split(" (")[0] for line in lines if "is healthy" in line] == [
        "db is healthy",
        "api is healthy",
    ]
    log_dir = tmp_path / ".a3s" / "logs"
    assert "db listening on" in (log_dir / "db.log").read_text()
    assert "every service stopped" in (log_dir / "a3s.log").read_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_are_a_graceful_stop_too(
    tmp_path: Path, launch, sig: signal.Signals
) -> None:
    write_http_service(tmp_path)
    proc = launch([{"name": "web", "cmd": PID_SERVER, "port": free_port()}])
    out = tmp_path / "out.txt"
    wait_until(lambda: "web is healthy" in out.read_text(), timeout=20, message="web healthy")
    groups = recorded_pgids(tmp_path)
    proc.send_signal(sig)
    assert proc.wait(timeout=20) == 0
    assert all(pids_in_group(g) == [] for g in groups)
    assert f"{sig.name}: stopping every service" in out.read_text()


def test_second_sigint_kills_at_once(tmp_path: Path, launch) -> None:
    stubborn = tmp_path / "stubborn.py"
    stubborn.write_text(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\n"
        "while True: time.sleep(1)\n"
    )
    proc = launch([{"name": "stubborn", "cmd": "exec python3 stubborn.py", "stop_timeout": 60}])
    out = tmp_path / "out.txt"
    wait_until(lambda: "stubborn | up" in out.read_text(), timeout=20, message="stubborn up")
    groups = recorded_pgids(tmp_path)
    proc.send_signal(signal.SIGINT)
    wait_until(
        lambda: "stopping every service" in out.read_text(),
        timeout=10,
        message="graceful stop begun",
    )
    assert proc.poll() is None  # still waiting for the 60 s stop_timeout
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0
    assert all(pids_in_group(g) == [] for g in groups)


def test_a_sigkilled_supervisor_leaves_groups_the_next_run_ends(tmp_path: Path, launch) -> None:
    write_http_service(tmp_path)
    port = free_port()
    first = launch([{"name": "api", "cmd": PID_SERVER, "port": port}])
    out = tmp_path / "out.txt"
    wait_until(lambda: "api is healthy" in out.read_text(), timeout=20, message="api healthy")
    groups = recorded_pgids(tmp_path)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    # PDEATHSIG ends the direct child; the backgrounded grandchild is still there.
    wait_until(
        lambda: not port_open(port), timeout=10, message="direct child gone by PR_SET_PDEATHSIG"
    )
    leftovers = [p for g in groups for p in pids_in_group(g)]
    assert leftovers and all(pid_alive(p) for p in leftovers)

    second = launch([{"name": "api", "cmd": PID_SERVER, "port": port}])
    wait_until(
        lambda: (
            out.read_text().count("api is healthy") >= 1
            and not any(pids_in_group(g) for g in groups)
        ),
        timeout=20,
        message="old groups ended by the next run",
    )
    second.send_signal(signal.SIGINT)
    assert second.wait(timeout=20) == 0


def _a3sfile(folder: Path, body: str) -> None:
    (folder / "A3sfile.hcl").write_text("dev {\n  proxy_port = 0\n}\n\n" + body)


def test_real_a3s_up_command_streams_logs_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    write_http_service(tmp_path)
    db, api = free_port(), free_port()
    _a3sfile(
        tmp_path,
        f'service "db" {{\n  cmd = "sleep 1000 & exec python3 server.py"\n  port = {db}\n}}\n'
        f'service "api" {{\n  cmd = "exec python3 server.py"\n  port = {api}\n  depends_on = ["db"]\n}}\n',
    )
    out = tmp_path / "out.txt"
    proc = start_a3s(tmp_path, "up", "--no-watch", out=out)
    groups: list[int] = []
    try:
        wait_until(lambda: "api is healthy" in out.read_text(), timeout=30, message="api healthy")
        groups = recorded_pgids(tmp_path)
        assert len(groups) == 2
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        assert all(pids_in_group(g) == [] for g in groups)
        assert not port_open(db) and not port_open(api)
        text = out.read_text()
        assert "db  | db listening on" in text and "every service stopped" in text
    finally:
        kill_group(proc.pid)
        proc.wait(timeout=10)
        for g in groups:
            kill_group(g)


def test_real_a3s_up_with_a_bad_a3sfile_exits_1_and_starts_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    _a3sfile(
        tmp_path,
        f'service "ok" {{\n  cmd = "touch {marker}; sleep 30"\n}}\n'
        'service "bad" {\n  cmd = "true"\n  depends_on = ["nope"]\n}\n',
    )
    result = subprocess.run(
        [sys.executable, "-m", "a3s_dev", "up"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "nope" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()
