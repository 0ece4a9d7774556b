"""HCL text -> a small positioned tree (blocks, attributes, literal values) via python-hcl2's grammar.

python-hcl2 builds its lark LALR parser on first use (1-2 s) and caches it inside its own
package folder, which fails silently on read-only installs. We parse with the same grammar
(`hcl2/hcl2.lark`) and let lark cache the built parser in the user's cache folder
(`~/.cache/a3s/`), where lark itself checks it against the grammar and its version. Only
literal values are accepted, so the dict output of
python-hcl2 (which loses line numbers and silently merges duplicate attributes) is not used;
we walk lark's tree ourselves and keep every position.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from a3s_dev.errors import ConfigError

if TYPE_CHECKING:  # lark is imported lazily: a cached tree needs none of it
    from lark import Lark, Tree

# The options python-hcl2 8.x uses, minus its postlexer (it only re-attaches newlines to
# binary operators, and expressions are not part of the A3sfile language anyway).
PARSER_OPTIONS: dict[str, Any] = {"parser": "lalr", "propagate_positions": True}


# ---------------------------------------------------------------------------- the tree


@dataclass(frozen=True, slots=True)
class Value:
    """A literal value with the line it starts on.

    kind is one of "string", "number", "bool", "null", "list", "map" or "expression" (anything
    computed: references, function calls, operators; `data` then holds its source text).
    Lists hold a tuple of Values; maps a tuple of (key, key_line, Value) in source order.
    """

    kind: str
    data: Any
    line: int

    def python(self) -> Any:
        """The plain Python value (lists and maps converted recursively, last duplicate key wins)."""
        if self.kind == "list":
            return [v.python() for v in self.data]
        if self.kind == "map":
            return {k: v.python() for k, _, v in self.data}
        return self.data


@dataclass(frozen=True, slots=True)
class Attribute:
    name: str
    value: Value
    line: int


@dataclass(frozen=True, slots=True)
class Block:
    type: str
    labels: tuple[str, ...]
    body: tuple[Attribute | Block, ...]
    line: int


Body = tuple[Attribute | Block, ...]


class HclSyntaxError(ConfigError):
    """The text is not HCL. Carries the position and a one-line explanation."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


# ---------------------------------------------------------------------------- parser loading


def grammar_path() -> Path:
    """python-hcl2's grammar file, found without importing hcl2 (its package import is slow)."""
    import importlib.util

    spec = importlib.util.find_spec("hcl2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("python-hcl2 is not installed (pip install python-hcl2)")
    return Path(next(iter(spec.submodule_search_locations))) / "hcl2.lark"


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/a3s` (default `~/.cache/a3s`): rebuildable files only, safe to delete."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "a3s"


def _tree_caching() -> bool:
    return not os.environ.get("A3S_NO_CACHE")


def private_cache_dir() -> Path | None:
    """The user's cache folder, else (read-only home) a private folder in the temp folder; None
    when neither can be written.

    lark's cache is a pickle, so a folder someone else could write to is never used: loading a
    planted file would run its code.
    """
    import stat
    import tempfile

    for folder in (cache_dir(), Path(tempfile.gettempdir()) / f"a3s-{os.getuid()}"):
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = folder.stat()
        except OSError:
            continue
        private = info.st_uid == os.getuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if private and os.access(folder, os.W_OK):
            return folder
    return None


_PARSER: Lark | None = None


def parser() -> Lark:
    """The LALR parser for python-hcl2's grammar, built once per lark version and grammar.

    Building it takes 1-2 s, so lark's own `cache=` keeps it in the user's cache folder: lark
    checks the grammar, the options and its own version against the file and rebuilds a stale
    or broken one by itself. A cache that cannot be written only costs that time.
    """
    global _PARSER
    if _PARSER is None:
        from lark import Lark

        grammar = grammar_path().read_text(encoding="utf-8")
        folder = private_cache_dir()
        cache = {"cache": str(folder / "hcl-parser.lark")} if folder is not None else {}
        _PARSER = Lark(grammar, **PARSER_OPTIONS, **cache)
    return _PARSER


# ---------------------------------------------------------------------------- tree cache

# Bump when the tree classes or the walker change shape; the key also covers this file's
# source, python-hcl2's grammar and lark's version, so an upgrade is a cache miss.
TREE_FORMAT = 2
_TREE_CACHE_KEEP = 64  # entries kept; every edit of an A3sfile makes a new one


def _tree_cache_path(text: str, folder: Path) -> Path:
    """Where the tree of `text` is cached in `folder`, as plain JSON keyed by everything that shapes it."""
    import hashlib

    digest = hashlib.sha256()
    for part in (
        str(TREE_FORMAT),
        _lark_marker(),
        Path(__file__).read_text(encoding="utf-8"),
        grammar_path().read_text(encoding="utf-8"),
        text,
    ):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return folder / "trees" / f"{digest.hexdigest()[:32]}.json"


def _lark_marker() -> str:
    """lark's `__init__.py`, which names its version, read without importing lark (~60 ms)."""
    import importlib.util

    spec = importlib.util.find_spec("lark")
    if spec is None or spec.origin is None:
        raise ConfigError("lark is not installed (pip install python-hcl2)")
    return Path(spec.origin).read_text(encoding="utf-8")


def _encode_value(v: Value) -> list[Any]:
    if v.kind == "list":
        return [v.kind, [_encode_value(x) for x in v.data], v.line]
    if v.kind == "map":
        return [v.kind, [[k, kl, _encode_value(x)] for k, kl, x in v.data], v.line]
    return [v.kind, v.data, v.line]


def _decode_value(t: list[Any]) -> Value:
    kind, data, line = t
    if kind == "list":
        return Value(kind, tuple(_decode_value(x) for x in data), line)
    if kind == "map":
        return Value(kind, tuple((k, kl, _decode_value(x)) for k, kl, x in data), line)
    return Value(kind, data, line)


def _encode_body(body: Body) -> list[Any]:
    return [
        ["a", item.name, _encode_value(item.value), item.line]
        if isinstance(item, Attribute)
        else ["b", item.type, list(item.labels), _encode_body(item.body), item.line]
        for item in body
    ]


def _decode_body(data: list[Any]) -> Body:
    return tuple(
        Attribute(t[1], _decode_value(t[2]), t[3]) if t[0] == "a" else Block(t[1], tuple(t[2]), _decode_body(t[3]), t[4])
        for t in data
    )


def _read_tree(path: Path) -> Body | None:
    import json

    try:
        return _decode_body(json.loads(path.read_text(encoding="utf-8")))
    except Exception:  # noqa: BLE001 - missing, truncated or foreign: a cache miss
        return None


def _write_tree(path: Path, body: Body) -> None:
    """Store atomically; a read-only or full cache folder only costs speed."""
    import json
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tree-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(_encode_body(body), f, ensure_ascii=True, separators=(",", ":"))
        os.replace(tmp, path)
        entries = sorted(path.parent.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for old in entries[:-_TREE_CACHE_KEEP]:
            old.unlink(missing_ok=True)
    except (OSError, ValueError):
        pass


# ---------------------------------------------------------------------------- parsing


def parse(text: str, *, cache: bool = True) -> Body:
    """Parse HCL text into blocks and attributes; raise HclSyntaxError with line and column.

    With `cache`, a tree lark built before from the very same text is read back from the
    user's cache folder instead (~2 ms instead of ~120 ms of imports and parsing).
    """
    folder = private_cache_dir() if cache and _tree_caching() else None
    if folder is None:
        return parse_lark(text)
    path = _tree_cache_path(text, folder)
    body = _read_tree(path)
    if body is None:
        body = parse_lark(text)
        _write_tree(path, body)
    return body


def parse_lark(text: str) -> Body:
    """Parse with python-hcl2's grammar on lark, always (the authority; see `parse`)."""
    from lark.exceptions import UnexpectedInput

    source = _ENV_DEFAULT.sub(_encode_default, text) if ":-" in text else text
    try:
        # python-hcl2 appends a newline too: the grammar needs one after the last item.
        tree = parser().parse(source + "\n")
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text) from None
    return _Walker(source).body(tree.children[0])  # type: ignore[arg-type]  # the start rule holds one body


# `${env.NAME:-default}` (SPEC §13) is no HCL expression: before parsing it is written as the
# attribute access `${env.NAME.a3s_default_<hex of default>}`, and read back as written.
_ENV_DEFAULT = re.compile(r'(?<!\$)\$\{(\s*env\.[A-Za-z_][A-Za-z0-9_]*)\s*:-([^}"\n]*)\}')
_ENCODED_DEFAULT = re.compile(r"\$\{(\s*env\.[A-Za-z_][A-Za-z0-9_]*)\.a3s_default_([0-9a-f]*)\}")


def _encode_default(match: re.Match[str]) -> str:
    return "${" + f"{match.group(1)}.a3s_default_{match.group(2).encode().hex()}" + "}"


def _decode_defaults(text: str) -> str:
    return _ENCODED_DEFAULT.sub(lambda m: "${" + f"{m.group(1)}:-{bytes.fromhex(m.group(2)).decode()}" + "}", text)


# Human names for the terminals that appear in "expected ..." lists.
_TERMINALS = {
    "EQ": '"="',
    "COLON": '":"',
    "LBRACE": '"{"',
    "RBRACE": '"}"',
    "LSQB": '"["',
    "RSQB": '"]"',
    "LPAR": '"("',
    "RPAR": '")"',
    "COMMA": '","',
    "DBLQUOTE": "a quote",
    "NAME": "a name",
    "NL_OR_COMMENT": "a new line",
    "INT_LITERAL": "a number",
    "FLOAT_LITERAL": "a number",
    "STRING_CHARS": "text",
}


def _syntax_error(exc: Any, text: str) -> HclSyntaxError:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    line = max(1, int(getattr(exc, "line", 0) or 0))
    column = max(1, int(getattr(exc, "column", 0) or 0))
    lines = text.splitlines()
    if isinstance(exc, UnexpectedEOF) or line > len(lines):
        line = max(1, len(lines))
        msg = "unexpected end of file (a block or a string is not closed)"
        column = len(lines[-1]) + 1 if lines else 1
    elif isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream or 0
        char = text[pos] if pos < len(text) else ""
        if char == "\n":
            msg = "unexpected end of line"
        else:
            msg = f"unexpected character {char!r}"
        if '"' in (lines[line - 1] if line <= len(lines) else ""):
            msg += " (is a string left open?)" if lines[line - 1].count('"') % 2 else ""
    elif isinstance(exc, UnexpectedToken):
        tok = exc.token
        first = (str(tok).strip().splitlines() or [""])[0][:20]
        shown = "end of line" if tok.type == "NL_OR_COMMENT" or not first else repr(first)
        if tok.type == "$END":
            shown = "end of file"
        msg = f"unexpected {shown}"
        if {"DBLQUOTE", "INT_LITERAL"} <= set(exc.expected):
            msg += " (expected a value)"
        else:
            expected = sorted({_TERMINALS[t] for t in exc.expected if t in _TERMINALS})
            if expected and len(expected) <= 4:
                msg += f" (expected {' or '.join(expected)})"
        if "LBRACE" in exc.expected and "EQ" not in exc.expected:
            # `cmd "x"` parses as the start of a block `cmd "x" { }`; lark only notices at the
            # next line. Point at the line that lacks its "=" instead.
            pos = exc.pos_in_stream if exc.pos_in_stream is not None else len(text)
            before = text[:pos].rstrip()
            prev_line = before.count("\n") + 1
            prev_text = lines[prev_line - 1] if 0 < prev_line <= len(lines) else ""
            if "=" not in prev_text and "{" not in prev_text and prev_text.strip():
                word = prev_text.split()[0]
                line, column = prev_line, len(prev_text) - len(prev_text.lstrip()) + 1
                msg = f'"{word}" needs "=" (an attribute) or "{{" (a block)'
    else:  # pragma: no cover - lark has no other UnexpectedInput kinds today
        msg = str(exc).splitlines()[0]
    source = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    where = f"syntax error at column {column}: {msg}"
    if source:
        where += f": {source}"
    return HclSyntaxError(where, line, column)


_HEX = frozenset("0123456789abcdefABCDEF")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def unescape(chars: str) -> str:
    """HCL string escapes: \\n \\r \\t \\" \\\\ \\uNNNN \\UNNNNNNNN."""
    if "\\" not in chars:
        return chars
    out: list[str] = []
    i = 0
    while i < len(chars):
        c = chars[i]
        if c == "\\" and i + 1 < len(chars):
            n = chars[i + 1]
            if n in _ESCAPES:
                out.append(_ESCAPES[n])
                i += 2
                continue
            width = 4 if n == "u" else 8 if n == "U" else 0
            digits = chars[i + 2 : i + 2 + width]
            if width and len(digits) == width and all(d in _HEX for d in digits) and int(digits, 16) <= 0x10FFFF:
                out.append(chr(int(digits, 16)))
                i += 2 + width
                continue
        out.append(c)
        i += 1
    return "".join(out)


def _heredoc(token: str, trim: bool) -> str:
    # "<<EOF\nbody\nEOF\n": drop the opening line and the closing marker line.
    lines = token.split("\n")
    body = lines[1:-2]
    if trim:
        indents = [len(ln) - len(ln.lstrip()) for ln in body if ln.strip()]
        cut = min(indents, default=0)
        body = [ln[cut:] for ln in body]
    return "".join(ln.rstrip("\r") + "\n" for ln in body)


class _Walker:
    """Turns lark's parse tree into Attribute / Block / Value, keeping line numbers."""

    def __init__(self, text: str) -> None:
        self.text = text

    def body(self, tree: Tree[Any]) -> Body:
        items: list[Attribute | Block] = []
        for child in tree.children:
            data = getattr(child, "data", None)
            if data == "attribute":
                items.append(self.attribute(child))
            elif data == "block":
                items.append(self.block(child))
        return tuple(items)

    def _name(self, node: Any) -> str:
        # identifier / keyword / literal_value wrap a single token
        return str(node.children[0]) if hasattr(node, "children") else str(node)

    def attribute(self, tree: Tree[Any]) -> Attribute:
        name_node, _eq, expr = tree.children
        return Attribute(self._name(name_node), self.value(expr), tree.meta.line)

    def block(self, tree: Tree[Any]) -> Block:
        kids = [c for c in tree.children if getattr(c, "data", None) != "new_line_or_comment"]
        btype = self._name(kids[0])
        labels: list[str] = []
        body: Body = ()
        for child in kids[1:]:
            data = getattr(child, "data", None)
            if data == "string":
                labels.append(self._string(child))
            elif data == "body":
                body = self.body(child)
            elif data in ("identifier", "keyword", "literal_value"):
                labels.append(self._name(child))
        return Block(btype, tuple(labels), body, tree.meta.line)

    def _source(self, tree: Tree[Any]) -> str:
        return self.text[tree.meta.start_pos : tree.meta.end_pos]

    def _string(self, tree: Tree[Any]) -> str:
        parts: list[str] = []
        for part in tree.children:
            if getattr(part, "data", None) != "string_part":
                continue  # the quote tokens
            inner = part.children[0]
            if hasattr(inner, "data"):
                # ${...} and %{...} are kept verbatim: a3s does not evaluate templates, and
                # in `cmd` the shell then expands ${PORT} from the service's environment.
                parts.append(_decode_defaults(self._source(inner)))
                continue
            tok: Any = inner  # a Token
            if tok.type == "ESCAPED_INTERPOLATION":
                parts.append(str(tok)[1:])  # $${x} -> ${x}
            elif tok.type == "ESCAPED_DIRECTIVE":
                parts.append(str(tok)[1:])
            else:
                parts.append(unescape(str(tok)))
        return "".join(parts)

    def value(self, node: Any) -> Value:
        line = node.meta.line if hasattr(node, "meta") and not node.meta.empty else 0
        data = node.data
        if data == "expr_term":
            kids = [c for c in node.children if getattr(c, "data", None) != "new_line_or_comment"]
            if len(kids) == 1 and hasattr(kids[0], "data"):
                return self.value(kids[0])
            if len(kids) == 3 and getattr(kids[0], "type", "") == "LPAR":
                return self.value(kids[1])
            return Value("expression", self._source(node), line)
        if data == "string":
            return Value("string", self._string(node), line)
        if data == "int_lit":
            return Value("number", int(str(node.children[0])), line)
        if data == "float_lit":
            return Value("number", float(str(node.children[0])), line)
        if data == "literal_value":
            word = str(node.children[0])
            return Value("null", None, line) if word == "null" else Value("bool", word == "true", line)
        if data in ("heredoc_template", "heredoc_template_trim"):
            return Value("string", _heredoc(str(node.children[0]), data.endswith("trim")), line)
        if data == "tuple":
            items = tuple(
                self.value(c)
                for c in node.children
                if hasattr(c, "data") and c.data != "new_line_or_comment"
            )
            return Value("list", items, line)
        if data == "object":
            elems = []
            for c in node.children:
                if getattr(c, "data", None) == "object_elem":
                    key_node, _sep, expr = c.children
                    key = self._key(key_node)
                    elems.append((key, key_node.meta.line, self.value(expr)))
            return Value("map", tuple(elems), line)
        if data == "unary_op":
            op, term = node.children
            inner = self.value(term)
            if str(op) == "-" and inner.kind == "number":
                return Value("number", -inner.data, line)
            return Value("expression", self._source(node), line)
        return Value("expression", self._source(node), line)

    def _key(self, key_node: Tree[Any]) -> str:
        inner = key_node.children[0]
        if getattr(inner, "data", None) == "keyword":
            return self._name(inner)
        val = self.value(inner)
        if val.kind == "expression" and getattr(inner, "data", None) == "expr_term":
            kid = inner.children[0]
            if getattr(kid, "data", None) in ("identifier", "literal_value"):
                return self._name(kid)
        if val.kind in ("string", "number", "bool"):
            return str(val.data) if val.kind != "bool" else ("true" if val.data else "false")
        return self._source(key_node)
