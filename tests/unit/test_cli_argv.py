"""The typer-free command line: argv.parse, finding the A3sfile and socket, rendering status."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from a3s_dev.cli import argv, render
from a3s_dev.control import table
from a3s_dev.control.client import ControlClient
from a3s_dev.errors import ConfigError
from a3s_dev.run import workspace
from a3s_dev.run.options import UpOptions


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (["status"], argv.Status(None, True, False)),
        (["status", "--json"], argv.Status(None, True, True)),
        (["-f", "x.hcl", "status"], argv.Status("x.hcl", True, False)),
        (["--no-color", "status", "--file", "y.hcl", "--json"], argv.Status("y.hcl", False, True)),
        (["status", "--file=z.hcl"], argv.Status("z.hcl", True, False)),
        (["status", "--no-color"], argv.Status(None, False, False)),
        (["validate", "--json", "-f", "a.hcl"], argv.Validate("a.hcl", True, True)),
        (["-f", "a.hcl", "validate", "--file", "b.hcl"], argv.Validate("b.hcl", True, False)),
    ],
)
def test_plain_status_and_validate_lines_are_read(line: list[str], expected: argv.Command) -> None:
    assert argv.parse(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        [],
        ["status", "--help"],
        ["--version"],
        ["status", "extra"],
        ["--json", "status"],
        ["status", "-f"],
        ["status", "-d"],
        ["status", "--detach"],
        ["up", "-d", "--help"],
        ["up", "-dx"],
        ["-d", "up"],
        ["down"],
        ["logs", "-f"],
        ["up", "--timeout", "soon"],
        ["up", "--timeout"],
    ],
)
def test_anything_else_goes_to_the_typer_app(line: list[str]) -> None:
    assert argv.parse(line) is None


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (["up"], argv.Up(None, True, UpOptions())),
        (["up", "-d"], argv.Up(None, True, UpOptions(detach=True))),
        (
            ["-f", "x.hcl", "--no-color", "up", "api", "--detach", "--no-deps"],
            argv.Up("x.hcl", False, UpOptions(("api",), deps=False, detach=True)),
        ),
        (
            ["up", "-d", "--no-proxy", "--no-watch", "a", "b", "--file=y.hcl"],
            argv.Up("y.hcl", True, UpOptions(("a", "b"), proxy=False, watch=False, detach=True)),
        ),
        (["up", "-d", "--timeout", "1m30s"], argv.Up(None, True, UpOptions(detach=True, timeout=90.0))),
        (["up", "--no-color", "--timeout=2s"], argv.Up(None, False, UpOptions(timeout=2.0))),
    ],
)
def test_plain_up_lines_are_read_into_the_one_options_record(line: list[str], expected: argv.Up) -> None:
    assert argv.parse(line) == expected


UP_LINES = [
    ["up"],
    ["up", "-d"],
    ["-f", "x.hcl", "--no-color", "up", "api", "--detach", "--no-deps"],
    ["up", "-d", "--no-proxy", "--no-watch", "a", "b", "--file=y.hcl"],
    ["up", "-d", "--timeout", "1m30s"],
    ["up", "--no-color", "--timeout=2s"],
    ["up", "-d", "--json", "web"],
]


@pytest.mark.parametrize("line", UP_LINES, ids=" ".join)
def test_the_fast_reader_and_typer_make_the_same_options(line: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The stdlib reader is a shortcut, never a second meaning: typer reads each line alike."""
    from typer.testing import CliRunner

    from a3s_dev.cli import app, commands

    seen: list[tuple[object, UpOptions, bool, bool]] = []

    def up(file: object, opts: UpOptions, *, color: bool, as_json: bool = False) -> int:
        seen.append((None if file is None else str(file), opts, color, as_json))
        return 0

    monkeypatch.setattr(commands, "up", up)
    monkeypatch.setenv("NO_COLOR", "")  # color is decided from the flags alone here
    result = CliRunner().invoke(app.app, line)
    assert result.exit_code == 0, result.output
    fast = argv.parse(line)
    assert isinstance(fast, argv.Up)
    assert seen == [(fast.file, fast.options, fast.color, fast.json)]


def test_find_file_searches_upward_and_honours_file_and_env(tmp_path: Path) -> None:
    (tmp_path / "A3sfile.hcl").write_text("")
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    assert workspace.find_file(None, sub, {}) == tmp_path / "A3sfile.hcl"
    other = tmp_path / "other.hcl"
    other.write_text("")
    assert workspace.find_file("../../other.hcl", sub, {}).resolve() == other
    assert workspace.find_file(None, sub, {"A3S_FILE": str(other)}) == other
    assert workspace.find_file(str(tmp_path), sub, {}) == tmp_path / "A3sfile.hcl"  # a folder
    with pytest.raises(ConfigError, match="missing.hcl: no such file"):
        workspace.find_file("missing.hcl", sub, {})


def test_socket_path_is_in_the_state_folder_beside_the_a3sfile(tmp_path: Path) -> None:
    a3sfile = tmp_path / "A3sfile.hcl"
    assert workspace.paths_for(a3sfile).socket == tmp_path / ".a3s" / "control.sock"


def test_a_client_without_a_listener_gets_none(tmp_path: Path) -> None:
    assert ControlClient(tmp_path / "nobody.sock").get_json("/v1/status") is None


def test_plain_table_aligns_columns_and_formats_uptime() -> None:
    rows = [
        {
            "name": "db",
            "state": "running",
            "pid": 41,
            "port": 5432,
            "health": "healthy",
            "cpu": 2.5,
            "rss": 48 * 1024 * 1024,
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
    lines = render.render_plain(rows).splitlines()
    assert lines[0].split() == ["NAME", "STATE", "PID", "PORT", "HEALTH", "CPU", "MEM", "UPTIME", "RESTARTS", "URL"]
    assert lines[1].split() == ["db", "running", "41", "5432", "healthy", "2.5%", "48M", "1h02m", "2",
                                "http://127.0.0.1:5432"]
    assert lines[2].split() == ["migrate", "completed", "0"]
    assert lines[1].index("running") == lines[0].index("STATE") == lines[2].index("completed")


def test_uptime_format() -> None:
    assert [table.format_uptime(s) for s in (None, 5, 64, 3599, 7200, 90000)] == [
        "",
        "5s",
        "1m04s",
        "59m59s",
        "2h00m",
        "1d01h",
    ]


# SPEC §2, §10 and §14, written out here rather than taken from the implementation.
SPEC_STATUS_KEYS = [
    "name", "state", "pid", "port", "health", "uptime_s", "restarts", "exit_code", "url", "probe", "project",
    "reason", "cpu", "rss", "image",
]


def test_json_output_has_exactly_the_spec_keys_in_order() -> None:
    out = io.StringIO()
    row = dict.fromkeys(reversed(SPEC_STATUS_KEYS)) | {
        "name": "db",
        "state": "stopped",
        "restarts": 0,
        "reason": "x",
        "started_at": 1.0,
    }
    render.render_status([row], as_json=True, out=out, color=False)
    assert list(json.loads(out.getvalue())[0]) == SPEC_STATUS_KEYS


def test_the_terminal_table_names_the_project_above_it() -> None:
    import io

    out = io.StringIO()
    render.render_rich([{"name": "web", "state": "running", "restarts": 0, "project": "shop"}], out, color=False)
    lines = out.getvalue().splitlines()
    assert lines[0] == "project shop"
    assert lines[1].split()[:2] == ["NAME", "STATE"]
