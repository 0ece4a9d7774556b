from __future__ import annotations

import subprocess
import sys

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
