"""A small, strict reader for the plain HCL most A3sfiles are written in; lark decides the rest.

Loading lark and python-hcl2's LALR parser and lexing with it costs ~90 ms per process, most
of `a3s validate`'s budget. This reader handles blocks, attributes, strings (with escapes and
`${NAME}`), numbers, booleans, null, lists, maps and comments in ~1 ms, producing exactly the
tree `hcl.parse` builds from lark's. Whenever it meets anything else — an expression, a
heredoc, a template, an odd separator, or any error at all — it gives up (returns None) and
the caller parses with lark, which stays the authority on what HCL is and words every syntax
error. The tests check both agree on every input the reader accepts, fuzzed inputs included.
"""

from __future__ import annotations

import re
from bisect import bisect_left

from a3s_dev.hcl import Attribute, Block, Body, Value, unescape

_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_-]*")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_SIMPLE_INTERPOLATION = re.compile(r"\$\{[a-zA-Z_][a-zA-Z0-9_]*\}")
_LITERALS = {"true": ("bool", True), "false": ("bool", False), "null": ("null", None)}


class _Unsure(Exception):
    """Raised anywhere the reader is not certain lark would read the same tree."""


def parse_plain(text: str) -> Body | None:
    """The tree of `text` when it is plain HCL, else None (parse it with lark)."""
    try:
        return _Reader(text).document()
    except (_Unsure, IndexError):
        return None


class _Reader:
    def __init__(self, text: str) -> None:
        self.s = text + "\n"  # as for lark: the grammar wants a newline after the last item
        self.i = 0
        self.newlines = [m.start() for m in re.finditer("\n", self.s)]

    # ------------------------------------------------------------------ positions

    def line(self, pos: int) -> int:
        return bisect_left(self.newlines, pos) + 1

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def skip_spaces(self) -> None:
        s, i = self.s, self.i
        while i < len(s) and s[i] in " \t\r":
            i += 1
        self.i = i

    def skip_breaks(self) -> bool:
        """Skip spaces, newlines and comments; True when at least one newline or comment went by."""
        s = self.s
        seen = False
        while True:
            self.skip_spaces()
            i = self.i
            if i >= len(s):
                return seen
            if s[i] == "\n":
                self.i = i + 1
            elif s[i] == "#" or s.startswith("//", i):
                end = s.find("\n", i)
                if end < 0:
                    raise _Unsure
                self.i = end + 1
            elif s.startswith("/*", i):
                end = s.find("*/", i + 2)
                if end < 0:
                    raise _Unsure
                self.i = end + 2
            else:
                return seen
            seen = True

    def at_item_end(self) -> bool:
        """After an attribute or block: a newline, a comment or the closing brace must follow."""
        self.skip_spaces()
        c = self.peek()
        return c in ("\n", "#", "}", "") or self.s.startswith(("//", "/*"), self.i)

    def name(self) -> str:
        m = _NAME.match(self.s, self.i)
        if m is None:
            raise _Unsure
        self.i = m.end()
        return m.group()

    # ------------------------------------------------------------------ structure

    def document(self) -> Body:
        body = self.body(closing=False)
        if self.i < len(self.s):
            raise _Unsure
        return body

    def body(self, *, closing: bool) -> Body:
        items: list[Attribute | Block] = []
        while True:
            self.skip_breaks()
            c = self.peek()
            if c == "":
                if closing:
                    raise _Unsure
                return tuple(items)
            if c == "}":
                if not closing:
                    raise _Unsure
                return tuple(items)
            start = self.i
            word = self.name()
            self.skip_spaces()
            if self.peek() == "=" and self.s[self.i + 1] not in "=>":
                self.i += 1
                self.skip_spaces()
                items.append(Attribute(word, self.value(), self.line(start)))
            else:
                labels: list[str] = []
                while True:
                    c = self.peek()
                    if c == '"':
                        labels.append(self.string())
                    elif _NAME.match(self.s, self.i):
                        labels.append(self.name())
                    else:
                        break
                    self.skip_spaces()
                self.skip_breaks()
                if self.peek() != "{":
                    raise _Unsure
                self.i += 1
                inner = self.body(closing=True)
                self.i += 1  # the "}" body() stopped at
                items.append(Block(word, tuple(labels), inner, self.line(start)))
            if not self.at_item_end():
                raise _Unsure

    # ------------------------------------------------------------------ values

    def value(self) -> Value:
        c = self.peek()
        line = self.line(self.i)
        if c == '"':
            v = Value("string", self.string(), line)
        elif c == "[":
            v = self.list(line)
        elif c == "{":
            v = self.map(line)
        elif c.isdigit() or (c == "-" and self.s[self.i + 1 : self.i + 2].isdigit()):
            m = _NUMBER.match(self.s, self.i)
            assert m is not None
            self.i = m.end()
            text = m.group()
            v = Value("number", float(text) if "." in text else int(text), line)
        else:
            word = self.name()
            if word not in _LITERALS:
                raise _Unsure  # a reference or a function call: an expression
            kind, data = _LITERALS[word]
            v = Value(kind, data, line)
        # What may follow a value here; anything else (operators, `.attr`, `(`, `e3`) is lark's.
        self.skip_spaces()
        nxt = self.peek()
        if not (nxt in ("\n", "#", ",", "]", "}", "") or self.s.startswith(("//", "/*"), self.i)):
            raise _Unsure
        return v

    def string(self) -> str:
        s = self.s
        i = self.i + 1
        start = i
        parts: list[str] = []
        while True:
            c = s[i]
            if c == '"':
                parts.append(unescape(s[start:i]))
                self.i = i + 1
                return "".join(parts)
            if c == "\\":
                if s[i + 1] == "\n":
                    raise _Unsure
                i += 2
            elif c == "\n":
                raise _Unsure  # lark lets a string run over lines; leave that rarity to it
            elif c == "$" and s.startswith("${", i):
                m = _SIMPLE_INTERPOLATION.match(s, i)
                if m is None:
                    raise _Unsure
                parts.append(unescape(s[start:i]))
                parts.append(m.group())  # kept verbatim, as the lark walker does
                i = start = m.end()
            elif (c == "$" and s.startswith("$${", i)) or (c == "%" and s.startswith(("%{", "%%{"), i)):
                raise _Unsure
            else:
                i += 1

    def list(self, line: int) -> Value:
        self.i += 1
        items: list[Value] = []
        while True:
            self.skip_breaks()
            if self.peek() == "]":
                self.i += 1
                return Value("list", tuple(items), line)
            items.append(self.value())
            self.skip_breaks()
            c = self.peek()
            if c == ",":
                self.i += 1
            elif c != "]":
                raise _Unsure

    def map(self, line: int) -> Value:
        self.i += 1
        elems: list[tuple[str, int, Value]] = []
        separated = True
        while True:
            separated = self.skip_breaks() or separated
            if self.peek() == "}":
                self.i += 1
                return Value("map", tuple(elems), line)
            if not separated:
                raise _Unsure
            key_line = self.line(self.i)
            key = self.string() if self.peek() == '"' else self.name()
            self.skip_spaces()
            c = self.peek()
            nxt = self.s[self.i + 1]
            if not ((c == "=" and nxt not in "=>") or (c == ":" and nxt != ":")):
                raise _Unsure
            self.i += 1
            self.skip_spaces()
            elems.append((key, key_line, self.value()))
            separated = self.skip_breaks()
            if self.peek() == ",":
                self.i += 1
                separated = True
