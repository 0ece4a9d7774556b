"""The shared proxy says running out of descriptors once a minute, with how many accepts failed
meanwhile, and leaves every other loop error to asyncio (issue 21)."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path
from typing import Any

import pytest

from a3s_dev.proxy.server import SAY_FAILED_ACCEPTS_EVERY, FailedAccepts


def out_of_files() -> dict[str, Any]:
    return {"message": "socket.accept() out of system resource", "exception": OSError(errno.EMFILE, "Too many open files")}


def test_running_out_is_said_once_per_interval_with_the_count() -> None:
    said: list[str] = []
    now = [100.0]
    handler = FailedAccepts(said.append, clock=lambda: now[0])
    loop = asyncio.new_event_loop()
    try:
        for _ in range(1000):
            handler(loop, out_of_files())
        assert len(said) == 1 and "Too many open files" in said[0] and "1 failed accepts" in said[0]
        now[0] += SAY_FAILED_ACCEPTS_EVERY
        handler(loop, out_of_files())
        assert len(said) == 2 and "1000 failed accepts" in said[1]
    finally:
        loop.close()


def test_any_other_loop_error_goes_to_asyncio(caplog: pytest.LogCaptureFixture) -> None:
    said: list[str] = []
    handler = FailedAccepts(said.append)
    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level("ERROR", logger="asyncio"):
            handler(loop, {"message": "Task exception was never retrieved", "exception": ValueError("x")})
            handler(loop, {"message": "socket.accept() failed", "exception": OSError(errno.EBADF, "Bad")})
    finally:
        loop.close()
    assert said == []
    assert [r.getMessage().splitlines()[0] for r in caplog.records] == [
        "Task exception was never retrieved", "socket.accept() failed"]


def test_a_new_proxy_keeps_a_long_log_as_dot_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from a3s_dev.link import proxy_process

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    log = proxy_process.log_path(7480)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("short\n")
    proxy_process.rotate_log(7480)
    assert log.read_text() == "short\n"
    log.write_bytes(b"x" * proxy_process.LOG_BYTES)
    proxy_process.rotate_log(7480)
    assert not log.exists() and log.with_name(log.name + ".1").stat().st_size == proxy_process.LOG_BYTES
    proxy_process.rotate_log(7480)  # no log at all is fine
