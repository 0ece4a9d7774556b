"""`a3s ui` (SPEC §12) against a real supervisor: headless through Textual's Pilot (each key acts;
a line printed after the start appears; the filter narrows; copying gives bare text; quitting
leaves the stack running), and once as a real program in a real terminal under tmux."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from support import wait_until
from support_control import Stack, stack_in
from textual.geometry import Offset
from textual.selection import Selection

from a3s_dev.control.client import ControlClient
from a3s_dev.ui.app import StackView
from a3s_dev.ui.logview import LogView

A3SFILE = """\
dev {
  name = "uishop"
}
service "ticker" {
  cmd = "i=0; while true; do i=$((i+1)); printf '\\\\033[32mtick\\\\033[0m %s\\\\n' $i; sleep 0.2; done"
}
service "web" {
  cmd = "exec python3 -u -m http.server $PORT --bind 127.0.0.1"
  port = "auto"
}
service "waiter" {
  cmd = "while [ ! -e go ]; do sleep 0.05; done; echo \\"marker $(cat go)\\"; exec sleep 1000"
}
"""


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    (tmp_path / "A3sfile.hcl").write_text(A3SFILE)
    with stack_in(tmp_path, {"A3S_PROXY_PORT": "0"}) as st:
        result = st.a3s("up", "-d")
        assert result.code == 0, result.out + result.err
        yield st


def rows(st: Stack) -> dict[str, dict[str, Any]]:
    return st.status()


async def until(pilot: Any, predicate: Any, message: str, timeout: float = 10.0) -> None:
    """A bounded poll that lets the app run between checks."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        await pilot.pause(0.05)


def app_for(st: Stack) -> StackView:
    return StackView(ControlClient(st.paths.socket), "uishop")


@pytest.mark.anyio
async def test_keys_restart_stop_and_start_the_selected_service_and_quitting_leaves_the_stack(stack: Stack) -> None:
    app = app_for(stack)
    async with app.run_test(size=(140, 40)) as pilot:
        await until(pilot, lambda: list(app.rows) == ["ticker", "web", "waiter"], "the services in the table")
        assert app.selected() == "ticker"
        await pilot.press("j")
        assert app.selected() == "web"
        before = rows(stack)["web"]["pid"]
        await pilot.press("r")
        await until(pilot, lambda: (r := rows(stack)["web"])["pid"] not in (None, before) and r["state"] == "running",
                    "web restarted with a new pid", timeout=20)
        await pilot.press("s")
        await until(pilot, lambda: rows(stack)["web"]["state"] == "stopped", "web stopped", timeout=20)
        await until(pilot, lambda: app.rows["web"]["state"] == "stopped", "the table saying so")
        await pilot.press("u")
        await until(pilot, lambda: rows(stack)["web"]["state"] == "running", "web started again", timeout=20)
        await pilot.press("k")
        assert app.selected() == "ticker"
        await pilot.press("q")
    assert not app.is_running
    after = rows(stack)
    assert all(r["state"] == "running" for r in after.values()), after


@pytest.mark.anyio
async def test_a_line_printed_after_the_start_appears_and_the_filter_narrows(stack: Stack) -> None:
    app = app_for(stack)
    async with app.run_test(size=(140, 40)) as pilot:
        view = app.query_one("#log", LogView)
        await until(pilot, lambda: any("tick" in line for line in view.lines), "history in the log")
        token = f"t{os.getpid()}"
        (stack.folder / "go").write_text(token)
        await until(pilot, lambda: any(f"marker {token}" in line for line in view.lines), "the new line", timeout=15)
        marker = next(line for line in view.lines if token in line)
        assert marker.startswith("waiter") and "\u2502 marker" in marker  # the merged view's gutter
        await pilot.press("slash")
        await pilot.press(*"marker")
        await until(pilot, lambda: view.lines and all("marker" in line for line in view.lines), "only matching lines")
        assert len(view.lines) == 1
        await pilot.press("escape")
        await until(pilot, lambda: any("tick" in line for line in view.lines), "every line again")
        # one service's log: no gutter; ANSI colors are shown, not printed
        await pilot.press("m")
        assert app.selected() == "ticker" and all(not line.startswith("ticker") for line in view.lines)
        assert view.lines and view.lines[-1].startswith("tick ")  # the escapes are not text ...
        assert any(str(span.style) == "color(2)" for span in view.painter.styles[view.lines[-1]])  # ... but green
        await pilot.press("f")  # paused: nothing new is written
        frozen = list(view.lines)
        await pilot.pause(0.6)
        assert list(view.lines) == frozen
        await pilot.press("f")
        await until(pilot, lambda: len(view.lines) > len(frozen) or view.lines[-1] != frozen[-1], "following again")


@pytest.mark.anyio
async def test_copy_gives_plain_text_without_service_names(stack: Stack) -> None:
    app = app_for(stack)
    async with app.run_test(size=(140, 40)) as pilot:
        view = app.query_one("#log", LogView)
        await until(pilot, lambda: sum("tick" in line for line in view.lines) >= 3, "a few ticks")
        await pilot.press("c")
        copied = app.clipboard.splitlines()
        assert copied and any(line.startswith("tick ") for line in copied)
        assert not any("\u2502" in line or "\x1b" in line or line.startswith("ticker") for line in copied)
        picked = view.get_selection(Selection(Offset(0, 0), Offset(0, 2)))
        assert picked is not None
        assert picked[0].splitlines() == [view.bare(line) for line in view.lines[:2]]
        assert all(not line.startswith(("ticker", "waiter", "web ")) for line in picked[0].splitlines())


TMUX = shutil.which("tmux")


class Terminal:
    """`a3s ui` running in a tmux server of its own: what its pane shows, and keys to type."""

    def __init__(self, tmux: list[str], session: str) -> None:
        self.tmux = tmux
        self.session = session

    def pane(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-t", self.session], capture_output=True,
                              text=True, check=False).stdout

    def keys(self, *typed: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.session, *typed], check=True)


@contextmanager
def ui_in_tmux(st: Stack, name: str, size: tuple[int, int]) -> Iterator[Terminal]:
    """`a3s ui` in `st`'s folder in a real terminal; it prints UI-EXITED and its code when it
    quits. The tmux server is ended whatever happens."""
    assert TMUX is not None
    session = f"{name}-{os.getpid()}"
    tmux = [TMUX, "-S", str(st.folder / "tmux.sock")]  # a tmux server of its own, its socket in the test's folder
    command = f"cd {st.folder} && {sys.executable} -m a3s_dev ui; echo UI-EXITED $?; sleep 30"
    subprocess.run([*tmux, "new-session", "-d", "-s", session, "-x", str(size[0]), "-y", str(size[1]), command],
                   env={**st.env, "TERM": "xterm-256color"}, check=True)
    try:
        yield Terminal(tmux, session)
    finally:
        subprocess.run([*tmux, "kill-server"], check=False, capture_output=True)


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (.ci/run installs it)")
def test_a3s_ui_in_a_real_terminal_under_tmux(stack: Stack) -> None:
    with ui_in_tmux(stack, "a3s-ui", (140, 40)) as term:
        wait_until(lambda: "ticker" in term.pane() and "running" in term.pane()
                   and "tick" in term.pane().split("every service")[-1],
                   timeout=20, message="the table and the log on screen")
        term.keys("j")
        term.keys("q")
        wait_until(lambda: "UI-EXITED 0" in term.pane(), timeout=10, message="a3s ui to quit with 0")
        assert all(r["state"] == "running" for r in rows(stack).values())


REPL = """\
dev {
  name = "uirepl"
}
service "repl" {
  cmd = "exec python3 -u -c \\"while True: print('heard', input('say> '))\\""
  interactive = true
}
"""


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (.ci/run installs it)")
def test_attach_from_the_ui_hands_the_terminal_to_the_service_until_ctrl_close_bracket(tmp_path: Path) -> None:
    (tmp_path / "A3sfile.hcl").write_text(REPL)
    with stack_in(tmp_path, {"A3S_PROXY_PORT": "0"}) as st:
        assert st.a3s("up", "-d").code == 0
        with ui_in_tmux(st, "a3s-ui-attach", (120, 30)) as term:
            wait_until(lambda: "repl" in term.pane() and "running" in term.pane(), timeout=20, message="the UI")
            term.keys("a")
            wait_until(lambda: "attached to repl" in term.pane(), timeout=10, message="attached")
            term.keys("hello", "Enter")
            wait_until(lambda: "heard hello" in term.pane(), timeout=10, message="the service's answer")
            term.keys("C-]")
            wait_until(lambda: "every service" in term.pane() and "NAME" in term.pane(), timeout=10,
                       message="the UI back")
            term.keys("q")
            wait_until(lambda: "UI-EXITED 0" in term.pane(), timeout=10, message="a3s ui to quit")
            assert st.status()["repl"]["state"] == "running"


LOOPING = """\
dev {
  name = "uiloop"
}
service "writer" {
  cmd = "sleep 0.5; date > data.json; exec sleep 1000"
  watch {
    paths    = ["."]
    debounce = "100ms"
  }
}
"""


@pytest.mark.anyio
async def test_a_restart_loop_warning_stays_in_view_while_the_loop_goes_on(tmp_path: Path) -> None:
    """Issue 21: the warning was said once in the merged stream; the note line keeps it."""
    (tmp_path / "A3sfile.hcl").write_text(LOOPING)
    with stack_in(tmp_path, {"A3S_PROXY_PORT": "0"}) as st:
        assert st.a3s("up", "-d").code == 0
        app = StackView(ControlClient(st.paths.socket), "uiloop")
        async with app.run_test(size=(140, 40)) as pilot:
            await until(pilot, lambda: list(app.rows) == ["writer"], "the service in the table")
            (tmp_path / "data.json").write_text("edited")
            note = app.query_one("#note")

            def said() -> str:
                return str(note.content)  # type: ignore[attr-defined]

            await until(pilot, lambda: "restarted 6 times in a minute" in said(), "the warning in view", timeout=30)
            assert 'ignore = ["data.json"]' in said()
            await pilot.press("m")  # one service's log, where the stream's line is not
            await pilot.pause(0.3)
            assert "restarted 6 times" in said()
            await pilot.press("q")
