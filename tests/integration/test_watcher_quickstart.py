"""`a3s up` on examples/quickstart as a real process: editing the API's source restarts the API only, once."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import free_port, holds, kill_group, recorded_pgids, start_a3s, stop_a3s, wait_until

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"

pytestmark = pytest.mark.skipif(not QUICKSTART.is_dir(), reason="examples/quickstart not present")


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Callable[..., tuple[Path, Callable[[], str]]]]:
    """Copy the quickstart with fresh ports into tmp_path and run `a3s up` there; always end it."""
    procs: list[subprocess.Popen[str]] = []
    folder = tmp_path / "quickstart"

    def start(*args: str) -> tuple[Path, Callable[[], str]]:
        shutil.copytree(QUICKSTART, folder, ignore=shutil.ignore_patterns(".a3s", "data"))
        hcl = folder / "A3sfile.hcl"
        hcl.write_text(
            re.sub(r"\bport\s*=\s*\d+", lambda m: f"port = {free_port()}", hcl.read_text())
        )
        out = tmp_path / "out.txt"
        procs.append(start_a3s(folder, "up", *args, out=out, env={**os.environ, "A3S_PROXY_PORT": "0"}))
        return folder, lambda: out.read_text(errors="replace")

    yield start
    for proc in procs:
        stop_a3s(proc, signal.SIGINT, timeout=10)
    for pgid in recorded_pgids(folder):
        kill_group(pgid)


def status(folder: Path) -> dict[str, dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "a3s_dev", "status", "--json"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return {row["name"]: row for row in json.loads(done.stdout)}


def all_running(folder: Path) -> dict[str, dict[str, object]] | None:
    rows = status(folder)
    ok = all(rows[n]["state"] == "running" for n in ("api", "worker", "web"))
    return rows if ok else None


def test_editing_the_api_source_restarts_the_api_once_and_says_why(up) -> None:  # type: ignore[no-untyped-def]
    folder, output = up()
    before = wait_until(lambda: all_running(folder), timeout=30, message="the quickstart to be up")
    with open(folder / "api.py", "a") as f:
        f.write("\n# edited\n")
    line = "api: 1 file changed (api.py) → restarting"
    wait_until(lambda: line in output(), timeout=15, message=f"{line!r} in the log")
    after = wait_until(
        lambda: (
            (rows := all_running(folder)) and rows["api"]["pid"] != before["api"]["pid"] and rows
        ),
        timeout=15,
        message="a new api pid",
    )
    assert after["worker"]["pid"] == before["worker"]["pid"]
    assert after["web"]["pid"] == before["web"]["pid"]
    assert output().count("→ restarting") == 1


def test_no_watch_leaves_the_api_alone(up) -> None:  # type: ignore[no-untyped-def]
    folder, output = up("--no-watch")
    before = wait_until(lambda: all_running(folder), timeout=30, message="the quickstart to be up")
    with open(folder / "api.py", "a") as f:
        f.write("\n# edited\n")
    holds(lambda: "changed" not in output(), 1.5, message="no change noticed (debounce 0.5 s)")
    assert status(folder)["api"]["pid"] == before["api"]["pid"]


def test_an_edit_made_the_moment_the_ready_line_appears_restarts_the_service(up) -> None:  # type: ignore[no-untyped-def]
    """SPEC §8: the watcher used to attach up to 1 s after the ready line, missing such edits."""
    folder, output = up()
    wait_until(lambda: "services ready in" in output(), timeout=30, interval=0.002, message="the ready line")
    with open(folder / "api.py", "a") as f:
        f.write("\n# edited at once\n")
    line = "api: 1 file changed (api.py) → restarting"
    wait_until(lambda: line in output(), timeout=15, message=f"{line!r} in the log")
