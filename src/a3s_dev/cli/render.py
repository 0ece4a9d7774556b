"""How the command line shows things: the status table, the waiting line of `up`, validation lines."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import IO, Any

from a3s_dev.control.table import COLUMNS, STATE_STYLE, table_cells


def render_plain(rows: Sequence[Mapping[str, Any]]) -> str:
    """The status table in aligned columns without color, for pipes and files."""
    return aligned([list(COLUMNS)] + [table_cells(r) for r in rows])


def aligned(cells: Sequence[Sequence[str]]) -> str:
    """Rows of cells as text in columns two spaces apart, each as wide as its widest cell."""
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() + "\n" for line in cells)


def render_rich(rows: Sequence[Mapping[str, Any]], out: IO[str], color: bool) -> None:
    """The rich table with the state colored, for a terminal."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in COLUMNS:
        table.add_column(
            col,
            no_wrap=col != "URL",
            justify="right" if col in ("PID", "PORT", "CPU", "MEM", "RESTARTS") else "left",
        )
    for row in rows:
        cells: list[Any] = table_cells(row)
        cells[1] = Text(str(row["state"]), style=STATE_STYLE.get(str(row["state"]), ""))
        table.add_row(*cells)
    console = Console(file=out, no_color=not color, highlight=False)
    project = next((r.get("project") for r in rows if r.get("project")), None)
    if project:
        console.print(Text.assemble(("project ", "dim"), (str(project), "bold")))
    console.print(table)


def render_status(
    rows: Sequence[Mapping[str, Any]], *, as_json: bool, out: IO[str], color: bool
) -> None:
    """`a3s status` output: SPEC §2 JSON, a rich table on a terminal, plain columns otherwise."""
    if as_json:
        from a3s_dev.core.state import STATUS_KEYS

        out.write(json.dumps([{k: r.get(k) for k in STATUS_KEYS} for r in rows], indent=2) + "\n")
    elif out.isatty():
        render_rich(rows, out, color)
    else:
        out.write(render_plain(rows))


class Progress:
    """Shows what `up` still waits for: one rich live line on a TTY, a plain line per change otherwise."""

    def __init__(self, out: IO[str], color: bool) -> None:
        self.out = out
        self.tty = out.isatty()
        self.color = color
        self._last: str | None = None
        self._live: Any = None

    def waiting(self, waiting: Sequence[tuple[str, str]]) -> None:
        text = "waiting for " + ", ".join(f"{name} ({state})" for name, state in waiting)
        if text == self._last:
            return
        self._last = text
        if self.tty:
            if self._live is None:
                from rich.console import Console
                from rich.status import Status

                console = Console(file=self.out, no_color=not self.color, highlight=False)
                self._live = Status(self._line(text), console=console)
                self._live.start()
            else:
                self._live.update(self._line(text))
        else:
            print(f"a3s: {text}", file=self.out, flush=True)

    def _line(self, text: str) -> str:
        # One line, cut with an ellipsis: a wrapped live line redraws badly.
        import shutil

        room = shutil.get_terminal_size().columns - 3  # the spinner and its space
        return text if len(text) <= room else text[: max(0, room - 1)] + "…"

    def done(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def say(self, text: str) -> None:
        self.done()
        print(text, file=self.out, flush=True)


def paint_diagnostic(line: str, color: bool) -> str:
    """Errors red, warnings yellow, when stderr is a terminal that takes colors."""
    if not color:
        return line
    code = "31" if ": error: " in line else "33"
    return f"\x1b[{code}m{line}\x1b[0m"


class JsonLines:
    """A log sink writing one JSON object a line (`a3s logs --json`): `service`, `at` as ISO 8601
    with milliseconds in local time, `text`."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out

    def write(self, service: str, lines: Sequence[str], at: float, stream: str) -> None:
        from datetime import datetime

        stamp = datetime.fromtimestamp(at).astimezone().isoformat(timespec="milliseconds")
        self.out.write(b"".join(
            json.dumps({"service": service, "at": stamp, "text": text}).encode() + b"\n" for text in lines
        ))
        self.out.flush()

    def close(self) -> None:
        self.out.flush()
