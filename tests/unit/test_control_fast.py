"""The cold `a3s status` path: argument recognition, finding the A3sfile and socket, rendering."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from a3s_dev import fast, runtime


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["status"], (None, False, False)),
        (["status", "--json"], (None, True, False)),
        (["-f", "x.hcl", "status"], ("x.hcl", False, False)),
        (["--no-color", "status", "--file", "y.hcl", "--json"], ("y.hcl", True, True)),
        (["status", "--file=z.hcl"], ("z.hcl", False, False)),
    ],
)
def test_plain_status_command_lines_are_recognised(
    argv: list[str], expected: tuple[object, ...]
) -> None:
    assert fast.parse_status_argv(argv) == expected


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["up"],
        ["status", "--help"],
        ["--version"],
        ["status", "extra"],
        ["--json", "status"],
        ["status", "-f"],
    ],
)
def test_anything_else_goes_to_the_typer_app(argv: list[str]) -> None:
    assert fast.parse_status_argv(argv) is None


def test_find_a3sfile_searches_upward_and_honours_file_and_env(tmp_path: Path) -> None:
    (tmp_path / "A3sfile.hcl").write_text("")
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    assert fast.find_a3sfile(None, str(sub), {}) == str(tmp_path / "A3sfile.hcl")
    other = tmp_path / "other.hcl"
    other.write_text("")
    assert fast.find_a3sfile("../../other.hcl", str(sub), {}) == str(other)
    assert fast.find_a3sfile(None, str(sub), {"A3S_FILE": str(other)}) == str(other)
    assert fast.find_a3sfile(str(tmp_path), str(sub), {}) == str(
        tmp_path / "A3sfile.hcl"
    )  # a folder
    assert fast.find_a3sfile("missing.hcl", str(sub), {}) is None


def test_socket_path_is_the_one_runtime_uses(tmp_path: Path) -> None:
    a3sfile = tmp_path / "A3sfile.hcl"
    assert fast.socket_path(str(a3sfile)) == str(tmp_path / ".a3s" / "control.sock")
    assert runtime.paths_for(a3sfile).socket == Path(fast.socket_path(str(a3sfile)))


def test_get_json_without_a_listener_is_none(tmp_path: Path) -> None:
    assert fast.get_json(str(tmp_path / "nobody.sock"), "/v1/status") is None


def test_plain_table_aligns_columns_and_formats_uptime() -> None:
    rows = [
        {
            "name": "db",
            "state": "running",
            "pid": 41,
            "port": 5432,
            "health": "healthy",
            "uptime_s": 3725.0,
            "restarts": 2,
            "exit_code": None,
            "url": "http://127.0.0.1:5432",
        },
        {
            "name": "migrate",
            "state": "completed",
            "pid": None,
            "port": None,
            "health": None,
            "uptime_s": None,
            "restarts": 0,
            "exit_code": 0,
            "url": None,
        },
    ]
    lines = fast.render_plain(rows).splitlines()
    assert lines[0].split() == list(fast.COLUMNS)
    assert lines[1].split() == [
        "db",
        "running",
        "41",
        "5432",
        "healthy",
        "1h02m",
        "2",
        "http://127.0.0.1:5432",
    ]
    assert lines[2].split() == ["migrate", "completed", "0"]
    assert lines[1].index("running") == lines[0].index("STATE") == lines[2].index("completed")


def test_uptime_format() -> None:
    assert [fast.format_uptime(s) for s in (None, 5, 64, 3599, 7200, 90000)] == [
        "",
        "5s",
        "1m04s",
        "59m59s",
        "2h00m",
        "1d01h",
    ]


def test_json_output_has_exactly_the_spec_keys() -> None:
    out = io.StringIO()
    row = {k: None for k in fast.SPEC_KEYS} | {
        "name": "db",
        "state": "stopped",
        "restarts": 0,
        "reason": "x",
        "started_at": 1.0,
    }
    fast.render_status([row], as_json=True, out=out, color=False)
    assert list(json.loads(out.getvalue())[0]) == list(fast.SPEC_KEYS)


def test_status_fast_path_does_not_import_typer_or_aiohttp(tmp_path: Path) -> None:
    # No supervisor here, so after the fast path gives up the app would load: stop right there.
    code = (
        "import sys; from a3s_dev import fast; import io\n"
        "fast.try_status(['status'], io.StringIO())\n"
        "print(sorted(m for m in ('typer', 'aiohttp', 'anyio', 'hcl2', 'a3s_dev.config') if m in sys.modules))"
    )
    (tmp_path / "A3sfile.hcl").write_text("")
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False
    )
    assert out.stdout.strip() == "[]", out.stderr


def test_foreground_up_is_recognised_but_left_alone_without_a_supervisor(tmp_path: Path) -> None:
    assert fast.parse_up_detached_argv(["up", "api"]) == fast.UpArgs(
        None, ("api",), True, True, True, False, detach=False
    )
    (tmp_path / "A3sfile.hcl").write_text("")
    assert fast.try_up_detached(["-f", str(tmp_path / "A3sfile.hcl"), "up"]) is None


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["up", "-d"], fast.UpArgs(None, (), True, True, True, False)),
        (
            ["-f", "x.hcl", "--no-color", "up", "api", "--detach", "--no-deps"],
            fast.UpArgs("x.hcl", ("api",), False, True, True, True),
        ),
        (
            ["up", "-d", "--no-proxy", "--no-watch", "a", "b", "--file=y.hcl"],
            fast.UpArgs("y.hcl", ("a", "b"), True, False, False, False),
        ),
    ],
)
def test_plain_up_detached_command_lines_are_recognised(
    argv: list[str], expected: fast.UpArgs
) -> None:
    assert fast.parse_up_detached_argv(argv) == expected


@pytest.mark.parametrize(
    "argv",
    [["up", "-d", "--help"], ["up", "-dx"], ["status", "-d"], ["-d", "up"], ["down"]],
)
def test_unusual_up_forms_go_to_the_typer_app(argv: list[str]) -> None:
    assert fast.parse_up_detached_argv(argv) is None
