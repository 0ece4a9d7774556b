"""`a3s validate` through typer's runner, the typer-free fast path, and a real `a3s` process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from a3s_dev.cli import argv as cli_argv
from a3s_dev.cli.app import app
from a3s_dev.cli.render import paint_diagnostic

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
GOOD = 'service "db" {\n  cmd = "x"\n  port = 5432\n}\nservice "api" {\n  cmd = "x"\n  depends_on = ["db"]\n}\n'
BAD = 'service "api" {\n  cmd = "x"\n  prot = 1\n  depends_on = ["dbb"]\n}\nservice "db" { cmd = "x" }\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "A3sfile.hcl"
    path.write_text(textwrap.dedent(text))
    return path


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m a3s_dev ARGS` (the console script's code path)."""
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "a3s_dev", *args], check=False, capture_output=True, text=True, cwd=cwd, env=env)


def typer_run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The same command line forced through the typer app (no fast path)."""
    code = f"from a3s_dev.cli.main import main; main({list(args)!r}, fast=False)"
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=cwd, env=env)


# ---------------------------------------------------------------- through typer's runner


def test_runner_valid_file_prints_count_and_start_order(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["-f", str(write(tmp_path, GOOD)), "validate"])
    assert result.exit_code == 0, result.output
    assert "valid, 2 services" in result.stdout
    assert "start order: db -> api" in result.stdout


def test_runner_invalid_file_exits_1_with_one_line_per_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", "--file", str(write(tmp_path, BAD))])
    assert result.exit_code == 1
    assert ':3: error: unknown attribute "prot" in service "api" (did you mean "port"?)' in result.output
    assert ':4: error: service "api": depends_on names unknown service "dbb" (did you mean "db"?)' in result.output
    assert "2 errors, nothing started" in result.output


def test_runner_json(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", "--json", "-f", str(write(tmp_path, GOOD))])
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["errors"] == [] and doc["start_order"] == ["db", "api"]


def test_runner_help_for_validate() -> None:
    result = CliRunner().invoke(app, ["validate", "--help"])
    assert result.exit_code == 0 and "--json" in result.output


# ---------------------------------------------------------------- the fast path


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["validate"], cli_argv.Validate(None, True, False)),
        (["validate", "--json"], cli_argv.Validate(None, True, True)),
        (["-f", "x.hcl", "validate"], cli_argv.Validate("x.hcl", True, False)),
        (["--file=x.hcl", "--no-color", "validate"], cli_argv.Validate("x.hcl", False, False)),
        (["validate", "--no-color"], cli_argv.Validate(None, False, False)),
        (["-f", "a.hcl", "validate", "--file", "b.hcl"], cli_argv.Validate("b.hcl", True, False)),
        (["validate", "-f", "b.hcl", "--json"], cli_argv.Validate("b.hcl", True, True)),
    ],
)
def test_fast_path_takes_plain_validate_command_lines(argv: list[str], expected: cli_argv.Validate) -> None:
    assert cli_argv.parse(argv) == expected


@pytest.mark.parametrize(
    "argv",
    [[], ["validate", "--help"], ["--help"], ["--version"], ["validate", "--jsn"], ["validate", "extra"],
     ["-f"], ["validate", "-f"], ["--json", "validate"], ["validate", "validate"]],
)
def test_anything_else_goes_to_typer(argv: list[str]) -> None:
    assert cli_argv.parse(argv) is None


@pytest.mark.parametrize("text", [GOOD, BAD, "service {"])
@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_fast_path_and_typer_print_the_same(tmp_path: Path, text: str, json_flag: list[str]) -> None:
    write(tmp_path, text)
    fast = run("validate", *json_flag, cwd=tmp_path)
    slow = typer_run("validate", *json_flag, cwd=tmp_path)
    assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr)


def test_fast_path_does_not_import_typer_or_heavy_modules(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    code = (
        "import sys\nfrom a3s_dev.cli import commands\n"
        "commands.validate(None, as_json=False, color=False)\n"
        "heavy = [m for m in ('typer', 'pydantic', 'aiohttp', 'httpx', 'watchfiles', 'rich', 'anyio')"
        " if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=tmp_path)
    assert "HEAVY []" in proc.stderr, proc.stderr


def test_colors_only_when_asked() -> None:
    line = "A3sfile.hcl:3: error: x"
    assert paint_diagnostic(line, False) == line
    assert paint_diagnostic(line, True) == f"\x1b[31m{line}\x1b[0m"


# ---------------------------------------------------------------- a real process


def test_real_a3s_validates_the_monorepo_example() -> None:
    exe = Path(sys.executable).with_name("a3s")
    if not exe.exists():
        pytest.skip("the a3s console script is not installed in this environment")
    proc = subprocess.run([str(exe), "validate"], check=False, capture_output=True, text=True, cwd=ROOT / "examples" / "monorepo")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "A3sfile.hcl: valid, 8 services",
        "start order: event -> power -> search -> lane -> box -> safeclaw -> os -> gateway",
    ]


def test_syntax_error_is_one_line_and_no_traceback(tmp_path: Path) -> None:
    write(tmp_path, 'service "a" {\n  cmd = "x"\n  port 80\n}\n')
    proc = run("validate", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0].startswith("A3sfile.hcl:3: error: syntax error at column")
    assert "Traceback" not in proc.stderr


def test_no_a3sfile_anywhere_is_one_line_exit_1(tmp_path: Path) -> None:
    proc = run("validate", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("a3s: no A3sfile.hcl in")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a3s_file_env_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    env = {**os.environ, "A3S_FILE": str(path)}
    proc = subprocess.run([sys.executable, "-m", "a3s_dev", "validate"], check=False, capture_output=True, text=True, cwd="/", env=env)
    assert proc.returncode == 0 and "valid, 2 services" in proc.stdout


def test_warnings_do_not_fail_validation(tmp_path: Path) -> None:
    write(tmp_path, 'service "a" {\n  cmd = "x"\n  dir = "missing"\n}\n')
    proc = run("validate", cwd=tmp_path)
    assert proc.returncode == 0
    assert 'A3sfile.hcl:3: warning: service "a": dir "missing" does not exist' in proc.stderr


@pytest.mark.parametrize("command", ["validate", "up", "down", "restart", "status", "logs"])
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output
