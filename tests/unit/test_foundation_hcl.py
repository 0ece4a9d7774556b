"""The HCL front end: the shipped parser blob, its fallbacks, and the parsed-tree cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from a3s_dev import hcl

pytestmark = pytest.mark.timeout(60)

SAMPLE = 'dev {\n  proxy_port = 7080\n}\nservice "a" {\n  cmd = "x"\n  env = { A = 1 }\n  depends_on = ["b"]\n}\n'
# A heredoc: the walker must handle more than plain literals.
LARK_ONLY = 'service "a" {\n  cmd = <<-EOT\n    echo hi\n  EOT\n}\n'


@pytest.fixture(autouse=True)
def _fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no parser loaded in memory and its own cache folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("A3S_NO_CACHE", raising=False)
    monkeypatch.setattr(hcl, "_PARSER", None)


def _no_build(grammar: str) -> None:
    raise AssertionError("the parser was rebuilt; it should have been loaded")


def test_shipped_parser_matches_the_installed_lark_and_grammar() -> None:
    key = hcl.grammar_key(hcl.grammar_path().read_text(encoding="utf-8"))
    assert hcl._read_blob(hcl.SHIPPED_BLOB, key) is not None, (
        "src/a3s_dev/hcl_parser.bin is stale for this lark/python-hcl2: run `python -m a3s_dev.hcl` and commit it"
    )


def test_parser_is_loaded_from_the_package_never_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hcl, "build_parser", _no_build)
    body = hcl.parse_lark(SAMPLE)
    assert [type(item).__name__ for item in body] == ["Block", "Block"]


def test_stale_shipped_parser_is_built_once_then_read_from_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / "stale.bin"
    stale.write_bytes(b'{"key": "other"}\n')
    monkeypatch.setattr(hcl, "SHIPPED_BLOB", stale)
    assert hcl.parse_lark(SAMPLE)  # builds (slow) and stores it
    assert list((tmp_path / "cache" / "a3s").glob("hcl-parser-*.bin"))
    monkeypatch.setattr(hcl, "_PARSER", None)
    monkeypatch.setattr(hcl, "build_parser", _no_build)
    assert hcl.parse_lark(SAMPLE)


def test_unwritable_cache_folder_costs_speed_not_correctness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    body = hcl.parse(LARK_ONLY)  # tree cache write fails silently
    assert body == hcl.parse_lark(LARK_ONLY)


def test_corrupt_blob_is_a_cache_miss(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    key = hcl.grammar_key(hcl.grammar_path().read_text(encoding="utf-8"))
    bad.write_bytes(b'{"key": "' + key.encode() + b'", "lark": "x"}\nnot zlib')
    assert hcl._read_blob(bad, key) is None


def test_tree_cache_returns_the_same_tree_without_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    first = hcl.parse(LARK_ONLY)
    assert hcl._tree_cache_path(LARK_ONLY).exists()
    monkeypatch.setattr(hcl, "parse_lark", lambda text: pytest.fail("parsed again"))
    assert hcl.parse(LARK_ONLY) == first


def test_tree_cache_is_keyed_by_the_text() -> None:
    other = LARK_ONLY.replace("hi", "ho")
    assert hcl.parse(other) != hcl.parse(LARK_ONLY)
    assert hcl._tree_cache_path(LARK_ONLY) != hcl._tree_cache_path(other)


def test_corrupt_tree_cache_entry_is_reparsed() -> None:
    expected = hcl.parse(LARK_ONLY)
    hcl._tree_cache_path(LARK_ONLY).write_bytes(b"garbage")
    assert hcl.parse(LARK_ONLY) == expected


def test_no_cache_env_skips_the_tree_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A3S_NO_CACHE", "1")
    hcl.parse(LARK_ONLY)
    assert not hcl._tree_cache_path(LARK_ONLY).exists()


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
