"""Line splitting and the terminal and file sinks (no processes)."""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

import pytest

from a3s_dev.core.history import read_history
from a3s_dev.core.logs import (
    FileSink,
    LineSplitter,
    TerminalSink,
    color_for,
    format_stamp,
    use_color,
)


def test_splitter_keeps_partial_lines_across_reads_and_flushes_the_last_one() -> None:
    s = LineSplitter()
    assert s.feed(b"one\ntw") == ["one"]
    assert s.feed(b"o") == []
    assert s.feed(b"\nthree\nfo") == ["two", "three"]
    assert s.flush() == ["fo"]
    assert s.flush() == []


def test_splitter_passes_a_megabyte_line_fed_in_small_chunks_whole() -> None:
    s = LineSplitter()
    data = b"y" * 1_000_000 + b"\n"
    out: list[str] = []
    for i in range(0, len(data), 65536):
        out += s.feed(data[i : i + 65536])
    assert out == ["y" * 1_000_000]


def test_splitter_replaces_invalid_utf8_and_survives_a_character_split_across_reads() -> None:
    s = LineSplitter()
    euro = "€".encode()
    assert s.feed(b"bad \xff ok " + euro[:1]) == []
    assert s.feed(euro[1:] + b"\n") == ["bad \ufffd ok €"]
    assert s.feed(b"\n\n") == ["", ""]


class Tty(io.BytesIO):
    def isatty(self) -> bool:
        return True


def _drain(sink: TerminalSink) -> None:
    sink.close()


def test_terminal_lines_are_timestamped_and_names_padded_without_color_off_a_tty() -> None:
    out = io.BytesIO()
    sink = TerminalSink(["db", "gateway"], out)
    at = time.mktime((2026, 11, 23, 10, 29, 21, 0, 0, -1))
    sink.write("db", ["ready", "\x1b[32mgreen\x1b[0m"], at, "stdout")
    sink.write("a3s", ["db is healthy (0.26s)"], at, "a3s")
    _drain(sink)
    assert out.getvalue().decode().splitlines() == [
        "10:29:21 db      | ready",
        "10:29:21 db      | \x1b[32mgreen\x1b[0m",  # the child's own colors pass through
        "10:29:21 a3s     | db is healthy (0.26s)",
    ]


def test_terminal_colors_each_service_stably_on_a_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = Tty()
    assert use_color(out)
    sink = TerminalSink(["db"], out)
    sink.write("db", ["x"], time.time(), "stdout")
    _drain(sink)
    line = out.getvalue().decode()
    assert line.startswith("\x1b[36m") and line.endswith(" db  |\x1b[0m x\n")
    assert color_for("a3s") != color_for("db")


def test_a_service_keeps_its_color_from_one_run_to_the_next() -> None:
    """crc32, not hash(): str hashes change with every interpreter (PYTHONHASHSEED)."""
    import subprocess
    import sys

    code = "from a3s_dev.core.logs import color_for; print(color_for('db'), color_for('api-worker'))"
    runs = {
        tuple(
            subprocess.run(
                [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                capture_output=True, text=True, check=True,
            ).stdout.split()
        )
        for seed in ("1", "2", "3")
    }
    assert runs == {(color_for("db"), color_for("api-worker"))}


def test_declared_services_get_distinct_colors(monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f"svc{i}" for i in range(10)]
    out = Tty()
    sink = TerminalSink(names, out, color=True)
    for name in names:
        sink.write(name, ["x"], time.time(), "stdout")
    _drain(sink)
    colors = [line.split("m", 1)[0] for line in out.getvalue().decode().splitlines()]
    assert len(set(colors)) == 10


def test_no_color_env_or_flag_turns_colors_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(Tty())
    monkeypatch.delenv("NO_COLOR")
    assert not use_color(Tty(), no_color=True)
    assert not use_color(io.BytesIO())


class Stalled(io.BytesIO):
    """A terminal that does not read: every write blocks until released."""

    def __init__(self) -> None:
        super().__init__()
        import threading

        self.release = threading.Event()

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.release.wait(10)
        return super().write(data)


def test_a_stalled_terminal_never_blocks_the_writer_and_says_how_many_lines_it_dropped() -> None:
    out = Stalled()
    sink = TerminalSink(["svc"], out, max_pending=1000)
    began = time.monotonic()
    for i in range(500):
        sink.write("svc", [f"line {i}"], time.time(), "stdout")
    assert time.monotonic() - began < 1.0  # the event loop never waited for the terminal
    out.release.set()
    _drain(sink)
    text = out.getvalue().decode()
    assert re.search(r"\d+ lines not shown: the terminal is too slow", text)


def test_file_sink_writes_millisecond_stamps_and_rotates(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "logs", rotate_bytes=200)
    at = 1_700_000_000.123
    sink.write("api", ["first", "second"], at, "stdout")
    assert (tmp_path / "logs" / "api.log").read_text().splitlines() == [
        f"{format_stamp(at)} first",
        f"{format_stamp(at)} second",
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.123", format_stamp(at))
    for i in range(10):
        sink.write("api", [f"line {i}"], at, "stdout")
    sink.close()
    assert (tmp_path / "logs" / "api.log.1").exists()
    assert (tmp_path / "logs" / "api.log").stat().st_size < 200
    both = (tmp_path / "logs" / "api.log.1").read_text() + (
        tmp_path / "logs" / "api.log"
    ).read_text()
    assert "line 9" in both


def test_rotation_keeps_the_configured_number_of_older_files_and_logs_reads_them_all(tmp_path: Path) -> None:
    """SPEC §8: rotation used to keep one older file: after 1M lines the first 668k were gone."""
    folder = tmp_path / "logs"
    sink = FileSink(folder, rotate_bytes=2048, keep=3)
    at = 1_700_000_000.0
    for i in range(400):
        sink.write("api", [f"line {i:04d}"], at + i * 0.001, "stdout")
    sink.close()
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["api.log", "api.log.1", "api.log.2", "api.log.3"]
    texts = [e.text for e in read_history(folder)]
    assert texts == sorted(texts) and texts[-1] == "line 0399"  # oldest first, across every file
    kept = sum(len(p.read_text().splitlines()) for p in folder.iterdir())
    assert len(texts) == kept and kept < 400  # what is older than the third rotated file is gone


def test_keep_zero_keeps_no_older_file(tmp_path: Path) -> None:
    sink = FileSink(tmp_path, rotate_bytes=1024, keep=0)
    for i in range(200):
        sink.write("api", [f"line {i}"], 1_700_000_000.0, "stdout")
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["api.log"]


def test_a_full_disk_drops_lines_and_says_so_once_then_once_when_writing_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from a3s_dev.core import logs

    monkeypatch.setattr(logs, "RECOVERED_AFTER", 0.0)  # tests/integration/test_disk_full.py waits it out

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    said: list[str] = []
    sink = FileSink(tmp_path, on_trouble=said.append)
    (tmp_path / "api.log").symlink_to("/dev/full")  # every write: ENOSPC
    for i in range(50):
        sink.write("api", [f"line {i}"], 1_700_000_000.0, "stdout")  # never raises
    assert len(said) == 1 and "cannot write the log files" in said[0] and "No space left" in said[0]
    (tmp_path / "api.log").unlink()
    sink.write("api", ["back"], 1_700_000_001.0, "stdout")
    sink.close()
    assert said[1] == "writing the log files again (50 lines not kept)"
    assert (tmp_path / "api.log").read_text().endswith(" back\n")


def test_the_run_marker_reads_as_the_spec_writes_it() -> None:
    from a3s_dev.core.logs import run_marker

    assert re.fullmatch(r"── a3s up \d{4}-\d\d-\d\d \d\d:\d\d:\d\d ──", run_marker(1_700_000_000.0))


def test_a3s_probe_requests_are_told_apart_by_method_and_path() -> None:
    from a3s_dev.config.model import HealthConfig, ProbeKind, ServiceDef
    from a3s_dev.core.logs import probe_requests, without_probe_requests

    api = ServiceDef("api", "x", Path("/"), port=8000, health=HealthConfig(type=ProbeKind.HTTP, path="/health"))
    lines = [
        'INFO:     127.0.0.1:51234 - "GET /health HTTP/1.1" 500 Internal Server Error',
        "GET /health?full=1 200",
        'INFO:     127.0.0.1:51234 - "GET /healthz HTTP/1.1" 200 OK',  # another path
        'INFO:     127.0.0.1:51234 - "POST /health HTTP/1.1" 200 OK',  # not the probe's method
        "Traceback (most recent call last):",
    ]
    assert without_probe_requests(lines, api) == lines[2:]
    assert probe_requests(ServiceDef("db", "x", Path("/"), port=5432)) is None  # tcp: nothing to hide
