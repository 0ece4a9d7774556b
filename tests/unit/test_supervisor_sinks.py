"""Line splitting and the terminal and file sinks (no processes)."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest

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
    assert color_for("db") == color_for("db") and color_for("a3s") != color_for("db")


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
