"""A full disk under `.a3s/logs` (SPEC §16 / issue 21): said once, lines never glued together,
the lost lines counted truly, recovery said once it lasts; `up -d` says why it failed. A real
tmpfs of a few KB is the full disk (root mounts it; elsewhere these tests are skipped)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from a3s_dev.core import logs
from a3s_dev.core.logs import FileSink


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(folder)], capture_output=True,
                          check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_is_said_once_lines_stay_whole_and_lost_ones_are_counted(
    small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "RECOVERED_AFTER", 0.3)
    said: list[str] = []
    sink = FileSink(small_disk / "logs", on_trouble=said.append)
    sent = 0
    for i in range(400):  # ~40 KB into 16 KB, a3s's own short lines in between
        sink.write("web", [f"line {i:04d} " + "x" * 90], time.time(), "stdout")
        sent += 1
        if i % 50 == 0:
            sink.write("a3s", ["a short line"], time.time(), "stdout")
    assert len(said) == 1 and "cannot write the log files" in said[0] and "No space left on device" in said[0]
    web = small_disk / "logs" / "web.log"
    kept = web.read_bytes().count(b"\n")
    # room again: the cut line is ended, the next starts whole, and the recovery is said once,
    # with the number of lines really lost
    (small_disk / "logs" / "a3s.log").unlink()
    web.write_bytes(b"")  # (as a user would free space: the file is emptied, its tail with it)
    kept = 0
    time.sleep(0.35)
    sink.write("web", ["after"], time.time(), "stdout")
    sink.write("web", ["again"], time.time(), "stdout")
    assert len(said) == 2, said
    lost = sent + 8 - kept  # every line sent before (8 short ones too) is gone with the emptied file
    assert said[1].startswith("writing the log files again (")
    dropped = int(said[1].split("(")[1].split()[0])
    assert 0 < dropped <= lost
    sink.close()


def test_a_line_cut_by_a_full_disk_is_ended_before_the_next_one(small_disk: Path) -> None:
    sink = FileSink(small_disk / "logs")
    big = "y" * 3000
    for _ in range(10):
        sink.write("web", [big], time.time(), "stdout")
    web = small_disk / "logs" / "web.log"
    data = web.read_bytes()
    assert not data.endswith(b"\n")  # the disk cut the last line
    filler = [p for p in small_disk.rglob("*") if p.is_file() and p != web]
    for p in filler:
        p.unlink()
    os.truncate(web, len(data))  # nothing to free but what a3s.log held: make room by hand
    subprocess.run(["mount", "-o", "remount,size=64k", str(small_disk)], check=True)
    sink.write("web", ["whole"], time.time(), "stdout")
    lines = web.read_bytes().split(b"\n")
    assert lines[-2].endswith(b" whole") and lines[-2].count(b"yyy") == 0  # its own line
    sink.close()


def test_up_d_on_a_full_disk_says_so(tmp_path: Path, small_disk: Path) -> None:
    from support_control import stack_in

    project = small_disk / "shop"
    project.mkdir()
    (project / "A3sfile.hcl").write_text('service "a" {\n  cmd = "sleep 100"\n}\n')
    fd = os.open(small_disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError):
            while True:  # the rest of the 16 KB
                os.write(fd, b"z" * 512)
    finally:
        os.close(fd)
    with stack_in(project, {"A3S_PROXY_PORT": "0"}) as st:
        result = st.a3s("up", "-d")
        assert result.code != 0
        assert "is full" in result.err and "free some space" in result.err, result.err
        assert "Traceback" not in result.err
