"""examples/fullstack for real (SPEC §5): Debian's Postgres and Redis, a migration, a web app
reading and writing both, a worker; up -d, a page through the proxy, down, a clean restart."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port, kill_group, pids_in_group, recorded_pgids, wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fullstack"
HAVE_POSTGRES = bool(glob.glob("/usr/lib/postgresql/*/bin/postgres")) or bool(shutil.which("postgres"))
HAVE_REDIS = bool(shutil.which("redis-server"))


def _drivers() -> bool:
    try:
        import psycopg  # noqa: F401
        import redis  # noqa: F401
    except ImportError:
        return False
    return True


pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        not (HAVE_POSTGRES and HAVE_REDIS and _drivers()),
        reason="needs postgresql, redis-server, psycopg and redis-py (.ci/run installs them)",
    ),
]


@pytest.fixture
def stack() -> Iterator[tuple[Path, dict[str, str], int]]:
    # Not under pytest's tmp_path: as root, Postgres runs as the postgres user, who must be able
    # to reach the folder (pytest's is 0700, root's).
    top = Path(tempfile.mkdtemp(prefix="a3s-fullstack-"))
    top.chmod(0o755)
    folder = top / "fullstack"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(".a3s", "data", "__pycache__"))
    hcl = folder / "A3sfile.hcl"
    hcl.write_text(re.sub(r"\bport(\s*)=(\s*)\d+", lambda m: f"port{m[1]}={m[2]}{free_port()}", hcl.read_text()))
    proxy_port = free_port()
    bindir = str(Path(sys.executable).parent)  # `python3` in the example is this one, with the drivers
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "A3S_PROXY_PORT": str(proxy_port), "NO_COLOR": "1"}
    try:
        yield folder, env, proxy_port
    finally:
        subprocess.run([sys.executable, "-m", "a3s_dev", "down"], check=False, cwd=folder, env=env, capture_output=True, timeout=60)
        for pgid in recorded_pgids(folder):
            kill_group(pgid)
        shutil.rmtree(top, ignore_errors=True)


def a3s(folder: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "a3s_dev", *args], check=False, cwd=folder, env=env, capture_output=True, text=True, timeout=150
    )


def page(proxy_port: int) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{proxy_port}/", headers={"Host": "web.localhost"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return str(r.read().decode())


def postgres_processes(folder: Path) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "postgres" in line and str(folder) in line]


def test_the_fullstack_example_comes_up_healthy_serves_both_stores_and_stops_clean(stack) -> None:  # type: ignore[no-untyped-def]
    folder, env, proxy_port = stack
    up = a3s(folder, env, "up", "-d")
    assert up.returncode == 0, up.stdout + up.stderr
    text = page(proxy_port)
    assert "visits in postgres: 1" in text and "hits in redis: 1" in text, text
    assert "migration runs: 1" in text, "the migration must run exactly once"
    status = a3s(folder, env, "status").stdout
    assert re.search(r"postgres\s+running\s+\d+\s+\d+\s+healthy\s.*127\.0\.0\.1:\d+$", status, re.MULTILINE), status
    assert "http://postgres" not in status and "http://redis" not in status
    groups = recorded_pgids(folder)

    down = a3s(folder, env, "down")
    assert down.returncode == 0, down.stderr
    wait_until(lambda: all(pids_in_group(g) == [] for g in groups), timeout=20, message="no process left")
    assert postgres_processes(folder) == []
    first_log = (folder / ".a3s" / "logs" / "postgres.log").read_text()
    assert "database system is shut down" in first_log  # SIGINT: the fast shutdown, not a kill

    again = a3s(folder, env, "up", "-d")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "visits in postgres: 2" in page(proxy_port)
    log = (folder / ".a3s" / "logs" / "postgres.log").read_text()
    assert "not properly shut down" not in log and "automatic recovery" not in log
    assert a3s(folder, env, "down").returncode == 0
    assert postgres_processes(folder) == []
