"""The log pane: lines as the services wrote them (ANSI colors shown), a service-name gutter in
the merged view, and copying that gives the text alone, without that gutter."""

from __future__ import annotations

from collections.abc import Iterable

from rich.highlighter import Highlighter
from rich.text import Span, Text
from textual.selection import Selection
from textual.widgets import Log

GUTTER = " \u2502 "  # between a service's name and its line in the merged view
PALETTE = ("cyan", "magenta", "green", "yellow", "blue", "bright_cyan", "bright_magenta", "bright_green")
def color_of(service: str, names: Iterable[str]) -> str:
    """A service's color, stable for the stack (its place among the names)."""
    ordered = sorted(names)
    return PALETTE[ordered.index(service) % len(PALETTE)] if service in ordered else PALETTE[0]


class AnsiHighlighter(Highlighter):
    """Gives a line the ANSI colors it was written with (Log keeps lines as plain text, so that
    widths and selections count what is shown), and colors the gutter's name."""

    def __init__(self, remember: int) -> None:
        self.gutter: dict[str, str] = {}  # service name as shown -> its color (merged view)
        self.width = 0  # the gutter's width, names padded to it; 0: no gutter
        self.styles: dict[str, list[Span]] = {}  # a shown line -> the spans of its escapes
        self.remember = remember  # lines whose spans are kept (the oldest forgotten first)

    def keep(self, line: str, spans: list[Span]) -> None:
        self.styles[line] = spans
        while len(self.styles) > self.remember:
            del self.styles[next(iter(self.styles))]

    def highlight(self, text: Text) -> None:
        spans = self.styles.get(text.plain)
        if spans:
            text.spans = [*text.spans, *spans]
        if self.width:
            name = text.plain[: self.width].strip()
            if name in self.gutter:
                text.stylize(self.gutter[name], 0, self.width)
                text.stylize("dim", self.width, self.width + len(GUTTER))


class LogView(Log):
    """A Log whose lines may hold ANSI escapes and a gutter; selections copy the bare text."""

    def __init__(self, *, max_lines: int, id: str | None = None) -> None:
        super().__init__(highlight=True, max_lines=max_lines, auto_scroll=True, id=id)
        self.painter = AnsiHighlighter(remember=max_lines)
        self.highlighter = self.painter

    def set_gutter(self, names: Iterable[str]) -> None:
        """The merged view: each line starts with its service's name padded to the longest."""
        shown = list(names)
        self.painter.width = max((len(n) for n in shown), default=0)
        self.painter.gutter = {n: color_of(n, shown) for n in shown}

    def no_gutter(self) -> None:
        self.painter.width = 0
        self.painter.gutter = {}

    def entry(self, service: str, text: str) -> str:
        """How one line of `service` is written in this view: plain text, its colors kept aside."""
        spans: list[Span] = []
        if "\x1b" in text:
            decoded = Text.from_ansi(text)
            text, spans = decoded.plain, decoded.spans
        if self.painter.width:
            cut = self.painter.width + len(GUTTER)
            text = f"{service:<{self.painter.width}}{GUTTER}{text}"
            spans = [Span(s.start + cut, s.end + cut, s.style) for s in spans]
        if spans:
            self.painter.keep(text, spans)
        return text

    def bare(self, line: str) -> str:
        """A written line as a user copies it: no gutter."""
        if self.painter.width and line[self.painter.width: self.painter.width + len(GUTTER)] == GUTTER:
            return line[self.painter.width + len(GUTTER):]
        return line

    def visible_text(self) -> str:
        """The lines on screen now, bare (the `c` key)."""
        top = int(self.scroll_offset.y)
        return "\n".join(self.bare(line) for line in self.lines[top: top + self.size.height])

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        """The selected text as shown, then each whole line's gutter taken off."""
        picked = selection.extract("\n".join(self.lines))
        return "\n".join(self.bare(line) for line in picked.split("\n")), "\n"
