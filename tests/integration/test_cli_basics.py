from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from a3s_dev import __version__


@pytest.mark.timeout(30)
def test_version_flag_prints_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "a3s_dev", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == f"a3s {__version__}"


@pytest.mark.timeout(30)
def test_unknown_command_is_a_usage_error_with_exit_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "a3s_dev", "bogus"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "No such command" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_shows_flags_without_type_placeholders() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "a3s_dev", "up", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "<bool>" not in out
    assert "-d, --detach" in out and "[SERVICE]..." in out and "--timeout DURATION" in out


@pytest.mark.parametrize("command", ["up", "down", "restart", "logs", "status", "validate", "proxy", "trust"])
def test_no_help_shows_typers_type_notation(command: str) -> None:
    """SPEC §16: `SERVICE <list[str]>`, `--port <int range>` read as noise to a user."""
    out = subprocess.run(
        [sys.executable, "-m", "a3s_dev", command, "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "<list[" not in out and "range>" not in out and "<int>" not in out, out


def test_no_color_is_accepted_after_any_command(tmp_path: Path) -> None:
    (tmp_path / "A3sfile.hcl").write_text('service "a" {\n  cmd = "true"\n}\n')
    for args in (["validate", "--no-color"], ["status", "--no-color"], ["logs", "--no-color"], ["down", "--no-color"]):
        proc = subprocess.run([sys.executable, "-m", "a3s_dev", *args], cwd=tmp_path, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, (args, proc.stderr)


def test_mcp_without_the_extra_says_how_to_install_it(tmp_path: Path) -> None:
    """A stand-in `mcp` package that is not there (as without the extra) comes first on the path."""
    shadow = tmp_path / "shadow" / "mcp"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'mcp'\", name='mcp')\n")
    (tmp_path / "A3sfile.hcl").write_text('service "a" { cmd = "true" }\n')
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "shadow")}
    proc = subprocess.run([sys.executable, "-m", "a3s_dev", "mcp"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=30, check=False)
    assert proc.returncode == 1 and proc.stderr.strip() == "a3s: a3s mcp needs the MCP SDK: pip install 'a3s-dev[mcp]'"
