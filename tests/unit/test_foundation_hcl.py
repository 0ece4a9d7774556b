"""The HCL front end: the parser cached by lark in the user's cache folder, and the parsed-tree cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from a3s_dev.config import hcl

pytestmark = pytest.mark.timeout(60)

SAMPLE = 'dev {\n  proxy_port = 7080\n}\nservice "a" {\n  cmd = "x"\n  env = { A = 1 }\n  depends_on = ["b"]\n}\n'
# A heredoc: the walker must handle more than plain literals.
LARK_ONLY = 'service "a" {\n  cmd = <<-EOT\n    echo hi\n  EOT\n}\n'


@pytest.fixture(autouse=True)
def _fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test has its own cache folder (the parser already built stays in memory)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("A3S_NO_CACHE", raising=False)


CACHE = Path("/nonexistent")  # the folder part of a tree cache path; only names are compared


def _stamp(path: Path) -> tuple[int, int, bytes]:
    info = path.stat()
    return info.st_ino, info.st_mtime_ns, path.read_bytes()[:80]


def test_the_parser_is_built_once_then_loaded_from_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hcl, "_PARSER", None)
    assert hcl.parse_lark(SAMPLE)  # builds (slow) and stores it through lark's cache=
    cached = tmp_path / "cache" / "a3s" / "hcl-parser.lark"
    assert cached.is_file()
    before = _stamp(cached)
    monkeypatch.setattr(hcl, "_PARSER", None)
    assert [type(item).__name__ for item in hcl.parse_lark(SAMPLE)] == ["Block", "Block"]
    assert _stamp(cached) == before, "the parser was built again instead of loaded"


@pytest.mark.parametrize(
    "stale",
    [b"0" * 64 + b"\nfrom another lark or grammar", b"garbage"],
    ids=["other-version", "garbage"],
)
def test_a_stale_or_broken_parser_cache_is_rebuilt_never_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stale: bytes
) -> None:
    cached = tmp_path / "cache" / "a3s" / "hcl-parser.lark"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(stale)
    monkeypatch.setattr(hcl, "_PARSER", None)
    assert [type(item).__name__ for item in hcl.parse_lark(SAMPLE)] == ["Block", "Block"]
    assert cached.read_bytes() != stale  # rebuilt and stored again


def test_unwritable_cache_folder_costs_speed_not_correctness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.setattr(hcl, "_PARSER", None)
    body = hcl.parse(LARK_ONLY)  # neither the parser nor the tree can be stored
    assert body == hcl.parse_lark(LARK_ONLY)


def test_an_upgrade_of_lark_is_a_tree_cache_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    before = hcl._tree_cache_path(LARK_ONLY, CACHE)
    monkeypatch.setattr(hcl, "_lark_marker", lambda: '__version__ = "99.0"')
    assert hcl._tree_cache_path(LARK_ONLY, CACHE) != before


def test_the_tree_cache_is_plain_json(tmp_path: Path) -> None:
    hcl.parse(LARK_ONLY)
    import json

    (entry,) = (tmp_path / "cache" / "a3s" / "trees").iterdir()
    assert entry.suffix == ".json" and isinstance(json.loads(entry.read_text()), list)


def test_the_package_ships_and_uses_no_pickle_marshal_or_blob() -> None:
    package = Path(hcl.__file__).parents[1]
    for path in package.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            assert path.suffix in (".py", ".typed", ".js", ".css"), f"{path} is not source"
            text = path.read_text(encoding="utf-8")
            for word in ("import pickle", "import marshal", "pickle.load", "marshal.load"):
                assert word not in text, f"{path} uses {word}"


def test_tree_cache_returns_the_same_tree_without_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    first = hcl.parse(LARK_ONLY)
    assert hcl._tree_cache_path(LARK_ONLY, hcl.private_cache_dir() or CACHE).exists()
    monkeypatch.setattr(hcl, "parse_lark", lambda text: pytest.fail("parsed again"))
    assert hcl.parse(LARK_ONLY) == first


def test_tree_cache_is_keyed_by_the_text() -> None:
    other = LARK_ONLY.replace("hi", "ho")
    assert hcl.parse(other) != hcl.parse(LARK_ONLY)
    assert hcl._tree_cache_path(LARK_ONLY, CACHE) != hcl._tree_cache_path(other, CACHE)


def test_corrupt_tree_cache_entry_is_reparsed() -> None:
    expected = hcl.parse(LARK_ONLY)
    hcl._tree_cache_path(LARK_ONLY, hcl.private_cache_dir() or CACHE).write_bytes(b"garbage")
    assert hcl.parse(LARK_ONLY) == expected


def test_no_cache_env_skips_the_tree_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A3S_NO_CACHE", "1")
    hcl.parse(LARK_ONLY)
    assert not hcl._tree_cache_path(LARK_ONLY, hcl.private_cache_dir() or CACHE).exists()


def test_syntax_errors_are_not_cached() -> None:
    with pytest.raises(hcl.HclSyntaxError):
        hcl.parse("service {")
    with pytest.raises(hcl.HclSyntaxError) as info:
        hcl.parse("service {")
    assert info.value.line == 1


def test_values_keep_their_lines_and_kinds() -> None:
    body = hcl.parse('x = [\n  "a",\n  2,\n  true,\n  null,\n]\ny = { k = -3 }\n', cache=False)
    x, y = body
    assert isinstance(x, hcl.Attribute) and x.line == 1
    assert [(v.kind, v.data, v.line) for v in x.value.data] == [
        ("string", "a", 2), ("number", 2, 3), ("bool", True, 4), ("null", None, 5)
    ]
    assert isinstance(y, hcl.Attribute) and y.value.python() == {"k": -3}


def test_unicode_escapes_beyond_range_or_malformed_are_kept_as_written() -> None:
    assert hcl.unescape(r"\u00e9\U0001F600") == "é😀"
    assert hcl.unescape(r"\UFFFFFFFF \u 12a \u12 \q") == r"\UFFFFFFFF \u 12a \u12 \q"


def test_a_read_only_cache_folder_falls_back_to_a_private_temp_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # let it read TMPDIR again
    cached = hcl.private_cache_dir()
    assert cached == tmp_path / "tmp" / f"a3s-{os.getuid()}"


def test_a_cache_folder_others_can_write_to_is_never_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "cache" / "a3s"
    shared.mkdir(parents=True)
    shared.chmod(0o777)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp" / f"a3s-{os.getuid()}").mkdir(parents=True, mode=0o777)
    (tmp_path / "tmp" / f"a3s-{os.getuid()}").chmod(0o777)
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    assert hcl.private_cache_dir() is None  # lark's cache is a pickle: a planted one would run
