"""The plain-HCL reader must read exactly lark's tree, or step aside (None) — never differ."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from a3s_dev import hcl
from a3s_dev.hcl_fast import parse_plain

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = [ROOT / "A3sfile.hcl", ROOT / "examples/quickstart/A3sfile.hcl", ROOT / "examples/monorepo/A3sfile.hcl"]

# Plain HCL the reader must take on itself (the fast path has to be the common path).
PLAIN = [
    "",
    "\n\n",
    "# only a comment",
    'a = "x"',
    'a = "x"\nb = 2\n',
    'service "api" { cmd = "x" }\n',
    'service "api" {\n  cmd = "run --port ${PORT}"\n}\n',
    'service api {\n  cmd = "x"\n}\n',
    'service "api"\n{\n  cmd = "x"\n}\n',
    'x = "tab\\there \\"q\\" back\\\\slash \\u00e9 \\U0001F600 \\q"\n',
    "x = -3\ny = 1.25\nz = -0.5\nw = 007\n",
    "x = true\ny = false\nz = null\n",
    'x = []\ny = [1, 2,]\nz = [\n  "a",  # one\n  "b"\n  ,\n]\n',
    'env = { A = "1", B = 2 }\n',
    'env = {\n  A = "1"\n  "B.C" = true\n  d: 3,\n}\n',
    "env = {}\n",
    "a = 1 // c\nb = 2 /* c */\n/* multi\nline */ c = 3\n",
    'dev {\n}\nservice "a" {\n  watch {\n    paths = ["src"]\n  }\n  health {\n    type = "http"\n  }\n}\n',
    'a = "x"\r\nb = "y"\r\n',
    "for_each = 1\nformat = 2\ntrue = 3\nin = 4\n",
    'x = "cost $5 and 100% and $$ and {braces}"\n',
    'x = "a\\${NOT}"\n',
    "nested = [[1, [2]], {a = [3]}]\n",
    'service "a" "b" {\n  x = 1\n}\n',
]

# Valid HCL the reader leaves to lark.
NOT_PLAIN = [
    "x = var.port\n",
    "x = max(1, 2)\n",
    "x = 1 + 2\n",
    "x = 1e3\n",
    'x = "${a.b}"\n',
    'x = "${ PORT }"\n',
    'x = "%{ if true }y%{ endif }"\n',
    'x = "$${literal}"\n',
    "x = <<EOT\nhello\nEOT\n",
    "x = <<-EOT\n  hello\n  EOT\n",
    "x = (1)\n",
    "x = - 1\n",
    "x = !true\n",
    'x = "multi\nline"\n',
    "x = [for v in y : v]\n",
    'a = 1 b = 2\n',
    "x = { a = 1 b = 2 }\n",
    "x = in\n",
]

# Not HCL at all: the reader must step aside so lark words the error.
INVALID = [
    "x = \n",
    "x = = 1\n",
    'service "a" {\n  cmd = "x"\n',
    'service "a" {\n  cmd "x"\n}\n',
    "}\n",
    'x = "open\n',
    "x = [1 2]\n",
    "x = [,]\n",
    "x = {a}\n",
    "x = 1,\n",
    "= 1\n",
    "x = 3s\n",
    "/* never closed\nx = 1\n",
    "x \u00e9 = 1\n",
]


def lark_or_error(text: str) -> hcl.Body | None:
    try:
        return hcl.parse_lark(text)
    except hcl.HclSyntaxError:
        return None


@pytest.mark.parametrize("text", PLAIN)
def test_plain_hcl_is_read_fast_and_exactly_as_lark_reads_it(text: str) -> None:
    fast = parse_plain(text)
    assert fast is not None, "the fast reader gave up on plain HCL"
    assert fast == hcl.parse_lark(text)


@pytest.mark.parametrize("text", NOT_PLAIN)
def test_anything_beyond_plain_hcl_is_left_to_lark(text: str) -> None:
    assert lark_or_error(text) is not None, "this sample should be valid HCL"
    assert parse_plain(text) is None


@pytest.mark.parametrize("text", INVALID)
def test_invalid_text_is_left_to_lark_for_the_error_message(text: str) -> None:
    assert lark_or_error(text) is None, "this sample should be invalid HCL"
    assert parse_plain(text) is None


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_bundled_examples_take_the_fast_path(path: Path) -> None:
    text = path.read_text()
    assert parse_plain(text) == hcl.parse_lark(text)
    assert parse_plain(text) is not None


SIGNIFICANT = list('"{}[]=,:#/\\\n $-.0a*%\t') + ["${", "//", "/*", "*/", "true", "\r\n"]


def mutate(text: str, rng: random.Random) -> str:
    kind = rng.randrange(4)
    pos = rng.randrange(len(text) + 1)
    if kind == 0 and text:
        return text[:pos] + text[pos + 1 :]
    if kind == 1:
        return text[:pos] + rng.choice(SIGNIFICANT) + text[pos:]
    lines = text.split("\n")
    a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
    if kind == 2:
        lines.insert(a, lines[b])
    else:
        lines[a], lines[b] = lines[b], lines[a]
    return "\n".join(lines)


@pytest.mark.parametrize("seed", range(4))
def test_fuzzed_files_never_read_differently(seed: int) -> None:
    """Mutants of the examples: whenever the fast reader accepts one, lark accepts the same tree."""
    rng = random.Random(seed)
    sources = [p.read_text() for p in EXAMPLES] + PLAIN[5:]
    accepted = 0
    for _ in range(200):
        text = rng.choice(sources)
        for _ in range(rng.randint(1, 3)):
            text = mutate(text, rng)
        fast = parse_plain(text)
        if fast is not None:
            accepted += 1
            assert fast == lark_or_error(text), f"fast reader differs from lark on:\n{text}"
    assert accepted > 20  # the fuzzing did exercise the accepting side
