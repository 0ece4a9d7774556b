"""The `a3s ui` screen: the services table over the log, keys to act on the selected service.

Two threads read the control API (the supervisor's status, long-polled; the merged log stream,
history then live) and hand what they read to the app: status rows through `call_from_thread`,
log lines through a bounded inbox the app drains ten times a second, so a service printing
10,000 lines a second costs one repaint per tick, never one per line, and memory stays capped.
Quitting ends the view only: the stack runs on.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, Static

from a3s_dev.control.client import ControlClient, NotRunning
from a3s_dev.control.table import COLUMNS, STATE_STYLE, table_cells
from a3s_dev.errors import A3sError
from a3s_dev.ui.logview import LogView

HISTORY = 2000  # lines each view keeps (per service, and merged)
SCREEN_LINES = 5000  # lines the log pane holds
INBOX = 20000  # lines read but not shown yet; past this the oldest are skipped, and counted
TICK = 0.1  # seconds between two drains of the inbox

HELP = """\
[b]a3s ui[/b]: the stack keeps running when you quit.

  [b]↑ ↓ j k[/b]  select a service       [b]m[/b]  its log / every service's
  [b]r[/b]  restart   [b]s[/b]  stop   [b]u[/b]  start (up)
  [b]a[/b]  attach to an interactive service (Ctrl-] gives the terminal back)
  [b]o[/b]  open its URL                [b]f[/b]  follow / pause the log
  [b]/[/b]  filter the log (Enter keeps it, Esc clears it)
  [b]c[/b]  copy the visible log (plain text, through the terminal: OSC 52)
  [b]?[/b]  this help                   [b]q[/b]  quit

Selecting with the mouse copies the lines without the service names.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "dismiss", "close")]
    DEFAULT_CSS = "HelpScreen { align: center middle; } HelpScreen > Static { width: 84; border: round $accent; padding: 1 2; background: $surface; }"

    def compose(self) -> ComposeResult:
        yield Static(HELP)


@dataclass
class Buffers:
    """What the log views show, capped: the merged stream and each service's own."""

    merged: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    by_service: dict[str, deque[str]] = field(default_factory=dict)

    def add(self, service: str, text: str) -> None:
        self.merged.append((service, text))
        self.by_service.setdefault(service, deque(maxlen=HISTORY)).append(text)


class StackView(App[None]):
    """The services of one project and their logs."""

    TITLE = "a3s"
    CSS = """
    #services { height: auto; max-height: 45%; }
    #log { height: 1fr; border-top: solid $accent; }
    #filter { dock: bottom; display: none; }
    #filter.shown { display: block; }
    #note { height: 1; color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("r", "restart", "restart"),
        Binding("s", "stop", "stop"),
        Binding("u", "start", "start"),
        Binding("a", "attach", "attach"),
        Binding("o", "open", "open"),
        Binding("m", "merged", "all/one"),
        Binding("f", "follow", "follow/pause"),
        Binding("slash", "filter", "filter"),
        Binding("c", "copy", "copy"),
        Binding("question_mark", "help", "help"),
        Binding("j", "cursor(1)", show=False),
        Binding("k", "cursor(-1)", show=False),
        Binding("down", "cursor(1)", show=False),
        Binding("up", "cursor(-1)", show=False),
    ]

    def __init__(self, client: ControlClient, project: str, *,
                 attach: Callable[[str], object] | None = None) -> None:
        super().__init__()
        self.client = client
        self.project = project
        self.attach_to = attach  # runs `a3s attach` in this terminal (the cli hands it in)
        self.rows: dict[str, dict[str, Any]] = {}
        self.warnings: dict[str, str] = {}  # the supervisor's standing ones (a restart loop)
        self.buffers = Buffers()
        self.inbox: deque[tuple[str, str]] = deque()
        self.skipped = 0  # lines dropped from a full inbox (shown as a note)
        self.merged = True  # every service's log, else the selected one's
        self.following = True
        self.needle = ""  # the filter, lower-cased
        self.closing = threading.Event()  # the readers stop at their next answer
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        with Vertical():
            table: DataTable[Any] = DataTable(id="services", cursor_type="row", zebra_stripes=False)
            yield table
            yield Static("", id="note")
            yield LogView(max_lines=SCREEN_LINES, id="log")
        yield Input(placeholder="filter the log (Enter keeps it, Esc clears it)", id="filter")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.project
        self._say(f"{self.project}: ? for the keys, q quits (the stack keeps running)")
        table = self.query_one("#services", DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column)
        threading.Thread(target=self._read_status, name="a3s-ui-status", daemon=True).start()
        threading.Thread(target=self._read_logs, name="a3s-ui-logs", daemon=True).start()
        self.set_interval(TICK, self._drain)
        table.focus()

    def on_unmount(self) -> None:
        self.closing.set()

    # ------------------------------------------------------------------ readers (threads)

    def _hand(self, call: Callable[..., object], *args: object) -> bool:
        """Run `call` on the app's loop; False once the app is closing or closed."""
        if self.closing.is_set():
            return False
        try:
            self.call_from_thread(call, *args)
        except RuntimeError:  # the loop closed meanwhile
            return False
        return True

    def _read_status(self) -> None:
        seq = None
        while not self.closing.is_set():
            try:
                answer = self.client.status() if seq is None else self.client.status(after=seq, wait=1.0)
            except NotRunning:
                self._hand(self._say, "the supervisor stopped (`a3s up -d` starts it again)")
                return
            except A3sError as exc:
                self._hand(self._say, str(exc))
                self.closing.wait(1.0)
                continue
            seq = answer.get("seq")
            if not self._hand(self._show_status, list(answer.get("services", [])), dict(answer.get("warnings") or {})):
                return

    def _read_logs(self) -> None:
        try:
            for item in self.client.logs(n=HISTORY, follow=True):
                if self.closing.is_set():
                    return  # closes the stream
                if "text" not in item:
                    continue
                with self._lock:
                    if len(self.inbox) >= INBOX:
                        self.inbox.popleft()
                        self.skipped += 1
                    self.inbox.append((str(item.get("service", "")), str(item["text"])))
        except A3sError:
            pass

    # ------------------------------------------------------------------ showing

    def _say(self, text: str) -> None:
        self.query_one("#note", Static).update(Text(text, style="bold"))

    def _show_status(self, rows: list[dict[str, Any]], warnings: dict[str, str] | None = None) -> None:
        warnings = warnings or {}
        if warnings != self.warnings:  # said in the stream once; here while it holds
            self._say(" ".join(warnings.values()))
        self.warnings = warnings
        table = self.query_one("#services", DataTable)
        fresh = [str(r["name"]) for r in rows]
        if fresh != list(self.rows):
            selected = self.selected()
            table.clear()
            for row in rows:
                table.add_row(*self._cells(row), key=str(row["name"]))
            if selected in fresh:
                table.move_cursor(row=fresh.index(selected))
            self.rows = {str(r["name"]): r for r in rows}
            self._rebuild()
            return
        for row in rows:
            name = str(row["name"])
            if row != self.rows.get(name):
                for column, cell in zip(COLUMNS, self._cells(row)):
                    table.update_cell(name, column, cell, update_width=True)
            self.rows[name] = row

    @staticmethod
    def _cells(row: dict[str, Any]) -> list[Text | str]:
        cells: list[Text | str] = list(table_cells(row))
        cells[1] = Text(str(cells[1]), style=STATE_STYLE.get(str(row["state"]), ""))
        return cells

    def selected(self) -> str | None:
        table = self.query_one("#services", DataTable)
        names = list(self.rows)
        return names[table.cursor_row] if 0 <= table.cursor_row < len(names) else None

    def _drain(self) -> None:
        with self._lock:
            batch = list(self.inbox)
            self.inbox.clear()
            skipped, self.skipped = self.skipped, 0
        if skipped:
            self._say(f"{skipped} log lines skipped to keep up (they are in `a3s logs`)")
        if not batch:
            return
        for service, text in batch:
            self.buffers.add(service, text)
        if self.following:
            view = self.query_one("#log", LogView)
            view.write_lines([view.entry(s, t) for s, t in batch if self._shows(s, t)])

    def _shows(self, service: str, text: str) -> bool:
        if not self.merged and service != self.selected():
            return False
        return not self.needle or self.needle in text.lower()

    def _rebuild(self) -> None:
        """The log pane afresh for the current view, filter and services."""
        view = self.query_one("#log", LogView)
        view.clear()
        if self.merged:
            view.set_gutter(self.rows or {s for s, _ in self.buffers.merged})
            lines = [view.entry(s, t) for s, t in self.buffers.merged if self._shows(s, t)]
        else:
            view.no_gutter()
            name = self.selected() or ""
            lines = [view.entry(name, t) for t in self.buffers.by_service.get(name, ()) if self._shows(name, t)]
        view.write_lines(lines)
        self._title()

    def _title(self) -> None:
        what = "every service" if self.merged else (self.selected() or "")
        flags = [] if self.following else ["paused"]
        if self.needle:
            flags.append(f'filter "{self.needle}"')
        self.query_one("#log", LogView).border_title = " · ".join([what, *flags])

    @on(DataTable.RowHighlighted, "#services")
    def _row_changed(self) -> None:
        if not self.merged and self.following:  # paused: the pane stays as it is
            self._rebuild()

    # ------------------------------------------------------------------ keys

    def action_cursor(self, step: int) -> None:
        table = self.query_one("#services", DataTable)
        table.move_cursor(row=max(0, min(len(self.rows) - 1, table.cursor_row + step)))

    def action_merged(self) -> None:
        self.merged = not self.merged
        self._rebuild()

    def action_follow(self) -> None:
        self.following = not self.following
        if self.following:
            self._rebuild()  # what arrived while paused, too
        else:
            self._title()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.value = self.needle
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.needle = event.value.lower()
        self._rebuild()

    @on(Input.Submitted, "#filter")
    def _filter_kept(self) -> None:
        self.query_one("#filter", Input).remove_class("shown")
        self.query_one("#services", DataTable).focus()

    def on_key(self, event: Any) -> None:
        box = self.query_one("#filter", Input)
        if event.key == "escape" and box.has_class("shown"):
            box.value = ""
            box.remove_class("shown")
            self.query_one("#services", DataTable).focus()
            event.stop()

    def action_copy(self) -> None:
        text = self.query_one("#log", LogView).visible_text()
        self.copy_to_clipboard(text)
        self.notify(f"copied {len(text.splitlines())} lines", timeout=2)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def _act(self, verb: str, call: Callable[[str], object]) -> None:
        name = self.selected()
        if name is None:
            return

        def run() -> None:
            try:
                call(name)
            except A3sError as exc:
                said = f"{verb} {name}: {exc}"
                self._hand(lambda: self.notify(said, severity="error"))

        self.notify(f"{verb} {name}", timeout=2)
        threading.Thread(target=run, name=f"a3s-ui-{verb}", daemon=True).start()

    def action_restart(self) -> None:
        self._act("restart", lambda name: self.client.restart([name]))

    def action_stop(self) -> None:
        self._act("stop", lambda name: self.client.stop([name]))

    def action_start(self) -> None:
        self._act("start", lambda name: self.client.start([name]))

    def action_open(self) -> None:
        name = self.selected()
        url = self.rows.get(name or "", {}).get("url")
        if not url:
            self.notify(f"{name} has no URL to open", severity="warning")
            return
        self.notify(str(url), timeout=4)
        if str(url).startswith(("http://", "https://")):
            self.open_url(str(url))  # the browser, or the terminal's own link opening

    async def action_attach(self) -> None:
        """The terminal to the service until Ctrl-] (`attach_to`: `a3s attach` as a child
        process, waited for in a thread), then back to this screen."""
        import asyncio

        name = self.selected()
        if name is None or self.attach_to is None:
            return
        attach = self.attach_to

        def session() -> None:
            try:
                attach(name)
            except A3sError as exc:
                print(f"a3s: {exc}", flush=True)
                time.sleep(1.5)

        with self.suspend():
            await asyncio.to_thread(session)
