"""process.py on its own: spawning with and without setpriv, the parent-death signal, port owners."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support import kill_group, pid_alive, wait_until

from a3s_dev.config.model import ServiceDef
from a3s_dev.core import process
from a3s_dev.errors import RuntimeFailure
from a3s_dev.system.ports import port_in_use
from a3s_dev.system.procfs import port_owner

# A middle process that spawns a service through process.spawn, prints its pid, then waits
# to be SIGKILLed: the service must die with it (PR_SET_PDEATHSIG).
MIDDLE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from a3s_dev.core import process
    from a3s_dev.config.model import ServiceDef
    if sys.argv[1] == "fallback":
        process._SETPRIV[:] = [None]
    proc = process.spawn(ServiceDef("s", "exec sleep 1000", Path(".")), {"PATH": "/usr/bin:/bin"})
    print(proc.pid, flush=True)
    time.sleep(1000)
    """
)


@pytest.mark.parametrize("mode", ["setpriv", "fallback"])
def test_a_service_dies_with_its_supervisor(tmp_path: Path, mode: str) -> None:
    if mode == "setpriv" and process._setpriv() is None:
        pytest.skip("no setpriv with --pdeathsig here")
    (tmp_path / "middle.py").write_text(MIDDLE)
    middle = subprocess.Popen(
        [sys.executable, "middle.py", mode], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    child = 0
    try:
        assert middle.stdout is not None
        child = int(middle.stdout.readline())
        assert pid_alive(child)
        middle.send_signal(signal.SIGKILL)
        middle.wait(timeout=10)
        wait_until(
            lambda: not pid_alive(child),
            timeout=10,
            message="service killed by the parent-death signal",
        )
    finally:
        middle.kill()
        if child:
            kill_group(child)


def test_spawn_refuses_a_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(RuntimeFailure, match="does not exist"):
        process.spawn(ServiceDef("s", "true", tmp_path / "nope"), dict(os.environ))


def test_port_owner_names_the_listening_process() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert port_in_use(port)
        owner = port_owner(port)
        assert owner is not None and owner.startswith(f"pid {os.getpid()} (")
    assert not port_in_use(port)


def test_a_service_whose_parent_changed_before_setpriv_took_effect_exits_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if process._setpriv() is None:
        pytest.skip("no setpriv with --pdeathsig here")
    # As if the supervisor had died between the spawn and the prctl: the parent is not "us".
    monkeypatch.setattr(process.os, "getpid", lambda: 1)
    proc = process.spawn(
        ServiceDef("s", "echo should not run; sleep 30", tmp_path), dict(os.environ)
    )
    try:
        assert proc.popen.wait(timeout=10) == 129
        assert proc.popen.stdout is not None and proc.popen.stdout.read() == b""
    finally:
        kill_group(proc.pid)
        proc.popen.wait()
        if proc.popen.stdout is not None:
            proc.popen.stdout.close()


def test_a_command_no_process_can_take_is_a_runtime_failure_not_a_crash(tmp_path: Path) -> None:
    from a3s_dev.core.process import spawn
    from a3s_dev.errors import RuntimeFailure

    for cmd, env in (("echo a\0b", {}), ("true", {"K": "v\0w"}), ("echo \ud800", {})):
        svc = ServiceDef("bad", cmd, tmp_path)
        with pytest.raises(RuntimeFailure, match="service bad: cannot start: "):
            spawn(svc, env)


def test_the_shells_messages_count_the_users_lines_not_the_wrappers(tmp_path: Path) -> None:
    """SPEC §8: `/bin/sh: 2: uvicron: not found` leaked the parent-death guard's line."""
    from a3s_dev.core.process import spawn

    proc = spawn(ServiceDef("api", "uvicron-not-installed --reload", tmp_path), dict(os.environ))
    assert proc.popen.stdout is not None
    out = proc.popen.stdout.read().decode()
    assert proc.popen.wait(timeout=10) == 127
    assert "uvicron-not-installed" in out and ": 2:" not in out and "line 2" not in out, out


def test_each_first_wave_group_is_on_disk_before_the_next_spawn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEC §8: a supervisor killed between two spawns leaves nothing `a3s down` cannot find."""
    import json

    from a3s_dev.config.model import DevConfig
    from a3s_dev.core.groups import GroupRegistry
    from a3s_dev.run import prepare

    groups_file = tmp_path / ".a3s" / "groups.json"
    on_disk: list[list[str]] = []
    real_start = prepare.start

    def spying_start(service: ServiceDef, config: DevConfig) -> object:
        on_disk.append(sorted(json.loads(groups_file.read_text())) if groups_file.exists() else [])
        return real_start(service, config)

    monkeypatch.setattr(prepare, "start", spying_start)
    config = DevConfig(
        path=tmp_path / "A3sfile.hcl", services=tuple(ServiceDef(n, "exec sleep 30", tmp_path) for n in ("a", "b", "c"))
    )
    procs = prepare.prespawn(config, config.names, GroupRegistry(tmp_path / ".a3s"))
    try:
        assert on_disk == [[], ["a"], ["a", "b"]]
        recorded = json.loads(groups_file.read_text())
        assert sorted(recorded) == ["a", "b", "c"] and recorded["a"]["stop_signal"] == "SIGTERM"
    finally:
        for proc in procs.values():
            proc.kill()


def test_ps_shows_the_command_as_written_not_the_parent_check(tmp_path: Path) -> None:
    """SPEC §16: `/bin/sh -c [ "$PPID" = … ] || exit 129; …` was what `ps` showed."""
    from a3s_dev.core.process import spawn

    proc = spawn(ServiceDef("api", "sleep 30; true", tmp_path), dict(os.environ))
    try:
        wait_until(lambda: Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[:3]
                   == [b"/bin/sh", b"-c", b"sleep 30; true"], timeout=5, message="the shell that runs the command")
    finally:
        kill_group(proc.pid)
        proc.popen.wait()
        if proc.popen.stdout is not None:
            proc.popen.stdout.close()
