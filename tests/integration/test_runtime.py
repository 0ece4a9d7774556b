"""The .a3s/ folder: lock, pid file, socket path and its fallback, stale cleanup."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import kill_group, pids_in_group, wait_until

from a3s_dev.core.groups import Orphan
from a3s_dev.run import workspace


def _a3sfile(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "A3sfile.hcl"
    path.write_text("")
    return path


def test_socket_lives_in_state_folder_when_short(tmp_path: Path) -> None:
    paths = workspace.paths_for(_a3sfile(tmp_path))
    assert paths.state_dir == tmp_path / ".a3s"
    assert paths.socket == tmp_path / ".a3s" / "control.sock"


def test_long_path_falls_back_to_xdg_runtime_dir_keyed_by_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    runtime_dir = tmp_path / "run"
    runtime_dir.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime_dir))
    a3sfile = _a3sfile(deep)
    paths = workspace.paths_for(a3sfile)
    assert paths.socket.parent == runtime_dir / "a3s"
    assert paths.socket.name == workspace.file_key(a3sfile) + ".sock"
    assert len(os.fsencode(str(paths.socket))) <= workspace.AF_UNIX_PATH_MAX
    # Another A3sfile gets another socket.
    other = _a3sfile(deep / "x")
    assert workspace.paths_for(other).socket != paths.socket


def test_long_path_without_xdg_uses_private_temp_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    paths = workspace.paths_for(_a3sfile(tmp_path / ("f" * 110)))
    assert paths.socket.parent.name == f"a3s-{os.getuid()}"
    workspace.ensure_state_dir(paths)
    assert stat.S_IMODE(paths.socket.parent.stat().st_mode) == 0o700


def test_bound_socket_is_0600_in_0700_folder(tmp_path: Path) -> None:
    paths = workspace.paths_for(_a3sfile(tmp_path))
    sock = workspace.bind_control_socket(paths)
    try:
        assert stat.S_ISSOCK(paths.socket.stat().st_mode)
        assert stat.S_IMODE(paths.socket.stat().st_mode) == 0o600
        assert stat.S_IMODE(paths.state_dir.stat().st_mode) == 0o700
        with socket.socket(socket.AF_UNIX) as probe:
            probe.connect(str(paths.socket))  # it listens
    finally:
        sock.close()
    with socket.socket(socket.AF_UNIX) as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(str(paths.socket))


def test_lock_admits_one_supervisor_and_writes_pid(tmp_path: Path) -> None:
    paths = workspace.paths_for(_a3sfile(tmp_path))
    assert not workspace.lock_held(paths)
    with workspace.SupervisorLock(paths):
        assert workspace.lock_held(paths)
        assert workspace.read_pid(paths) == os.getpid()
        with pytest.raises(workspace.AlreadyRunning, match=f"pid {os.getpid()}"):
            workspace.SupervisorLock(paths).acquire()
    assert not workspace.lock_held(paths)
    assert not paths.pid.exists() and not paths.lock.exists()  # nothing stale left behind


def test_a_look_at_the_lock_does_not_turn_a_starting_supervisor_away(tmp_path: Path) -> None:
    """`lock_held` takes the lock for an instant; a supervisor starting in that instant waits
    it out instead of reporting that one is already running."""
    import threading

    paths = workspace.paths_for(_a3sfile(tmp_path))
    workspace.ensure_state_dir(paths)
    paths.lock.write_text("")
    look = os.open(paths.lock, os.O_RDWR)
    workspace.fcntl.flock(look, workspace.fcntl.LOCK_EX | workspace.fcntl.LOCK_NB)  # a look, mid-way
    ends = threading.Timer(0.01, os.close, [look])
    ends.start()
    try:
        with workspace.SupervisorLock(paths):
            assert workspace.read_pid(paths) == os.getpid()
    finally:
        ends.join()


def test_a_lock_on_a_file_removed_meanwhile_is_not_kept(tmp_path: Path) -> None:
    paths = workspace.paths_for(_a3sfile(tmp_path))
    workspace.ensure_state_dir(paths)
    paths.lock.write_text("")
    original_flock = workspace.fcntl.flock
    replaced = []

    def flock_then_replace(fd: int, op: int) -> None:
        original_flock(fd, op)
        if not replaced:  # the holder before us removed the file and someone made a new one
            replaced.append(True)
            paths.lock.unlink()
            paths.lock.write_text("")

    workspace.fcntl.flock = flock_then_replace  # type: ignore[assignment]
    try:
        lock = workspace.SupervisorLock(paths)
        lock.acquire()
    finally:
        workspace.fcntl.flock = original_flock
    try:
        assert replaced and workspace.lock_held(paths)  # the lock is on the file at the path now
    finally:
        lock.release()


def test_lock_of_a_killed_process_is_free(tmp_path: Path) -> None:
    a3sfile = _a3sfile(tmp_path)
    code = (
        "import sys, time; from pathlib import Path; from a3s_dev.run import workspace;"
        f"workspace.SupervisorLock(workspace.paths_for(Path({str(a3sfile)!r}))).acquire();"
        "print('locked', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        paths = workspace.paths_for(a3sfile)
        assert workspace.lock_held(paths)
        proc.kill()
        proc.wait(10)
        assert not workspace.lock_held(paths)
    finally:
        proc.kill()
        proc.wait(10)


def test_clean_stale_ends_recorded_groups_and_removes_leftovers(tmp_path: Path) -> None:
    paths = workspace.paths_for(_a3sfile(tmp_path))
    workspace.ensure_state_dir(paths)
    # A service whose shell left a grandchild behind, in its own group.
    proc = subprocess.Popen(["/bin/sh", "-c", "sleep 60 & sleep 60"], start_new_session=True)
    try:
        wait_until(lambda: len(pids_in_group(proc.pid)) >= 2, message="service and grandchild")
        paths.groups.write_text(
            json.dumps({"api": {"pid": proc.pid, "pgid": proc.pid, "started": time.time()}})
        )
        paths.socket.write_text("")  # a stale socket file
        paths.pid.write_text("999999\n")
        paths.lock.write_text("")  # a lock file nobody holds
        orphans = workspace.clean_stale(paths, grace=2.0)
        assert orphans == [Orphan("api", proc.pid)]
        proc.wait(5)
        wait_until(lambda: not pids_in_group(proc.pid), message="group emptied")
        assert not paths.socket.exists() and not paths.pid.exists() and not paths.groups.exists()
        assert not paths.lock.exists()
    finally:
        kill_group(proc.pid)
        proc.wait(5)


def test_clean_stale_skips_a_reused_pid(tmp_path: Path) -> None:
    paths = workspace.paths_for(_a3sfile(tmp_path))
    workspace.ensure_state_dir(paths)
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        # Recorded as started an hour ago: this live process is someone else's.
        paths.groups.write_text(
            json.dumps({"api": {"pid": proc.pid, "pgid": proc.pid, "started": time.time() - 3600}})
        )
        assert workspace.clean_stale(paths, grace=0.5) == []
        assert proc.poll() is None
    finally:
        kill_group(proc.pid)
        proc.wait(5)


def test_clean_stale_does_nothing_while_locked(tmp_path: Path) -> None:
    paths = workspace.paths_for(_a3sfile(tmp_path))
    with workspace.SupervisorLock(paths):
        paths.groups.write_text(json.dumps({"api": {"pid": 1, "pgid": os.getpgrp(), "started": 0}}))
        assert workspace.clean_stale(paths) == []
        assert paths.groups.exists()
