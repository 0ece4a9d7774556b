"""`a3s up` end to end: the proxy comes up on A3S_PROXY_PORT and routes to the stack's services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from support import (
    a3s_command,
    free_port,
    kill_group,
    port_open,
    start_a3s,
    stop_a3s,
    wait_until,
    write_http_service,
)

from a3s_dev.config.model import dns_label

A3SFILE = """
dev {{
  proxy_port = 1  # overridden by A3S_PROXY_PORT
}}

service "api" {{
  cmd  = "exec {python} server.py"
  port = {api}
}}

service "web" {{
  cmd        = "exec {python} server.py"
  port       = {web}
  subdomain  = "www"
  depends_on = ["api"]
}}
"""


def fetch(port: int, host: str) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_up_serves_every_service_through_the_proxy_on_a3s_proxy_port(tmp_path: Path) -> None:
    write_http_service(tmp_path)
    api, web, proxy = free_port(), free_port(), free_port()
    (tmp_path / "A3sfile.hcl").write_text(A3SFILE.format(python=sys.executable, api=api, web=web))
    env = {**os.environ, "A3S_PROXY_PORT": str(proxy)}
    proc = start_a3s(tmp_path, "up", "--no-watch", env=env)
    try:
        wait_until(lambda: port_open(proxy) or proc.poll() is not None, timeout=30, message="the proxy port")
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        wait_until(lambda: fetch(proxy, "www.localhost")[0] == 200, timeout=30, message="web through the proxy")
        status, text = fetch(proxy, f"API.localhost:{proxy}")
        assert status == 200 and text.startswith("hello from api")
        status, text = fetch(proxy, f"www.localhost:{proxy}")
        assert status == 200 and text.startswith("hello from web")
        project = dns_label(tmp_path.name)
        status, text = fetch(proxy, "nope.localhost")
        assert status == 404 and f"http://www.{project}.localhost:{proxy}/" in text
        # `a3s status` shows the address through the proxy while it listens.
        rows = json.loads(subprocess.run([*a3s_command(), "status", "--json"], cwd=tmp_path, env=env, check=True,
                                         capture_output=True, text=True, timeout=30).stdout)
        urls = {row["name"]: row["url"] for row in rows}
        assert urls == {"api": f"http://api.{project}.localhost:{proxy}", "web": f"http://www.{project}.localhost:{proxy}"}
    finally:
        out = stop_a3s(proc)
    assert f"proxy on http://localhost:{proxy}: http://api.{project}.localhost:{proxy}, http://www.{project}.localhost:{proxy}" in out
    # the shared proxy outlives its last project by a few seconds, then exits
    wait_until(lambda: not port_open(proxy), timeout=15, message="the proxy to exit after the last project left")


def test_up_with_the_proxy_port_taken_says_so_in_one_line(tmp_path: Path) -> None:
    import socket

    write_http_service(tmp_path)
    (tmp_path / "A3sfile.hcl").write_text(A3SFILE.format(python=sys.executable, api=free_port(), web=free_port()))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = start_a3s(tmp_path, "up", "--no-watch", env={**os.environ, "A3S_PROXY_PORT": str(port)})
        try:
            out, _ = proc.communicate(timeout=30)
        finally:
            kill_group(proc.pid)
    assert proc.returncode == 1, out
    assert f"port {port} is already in use" in out
    assert "Traceback" not in out
    # Refused before anything was spawned: no service ever wrote a line.
    assert not list((tmp_path / ".a3s" / "logs").glob("[!a]*.log")), out
    assert "is healthy" not in out


SLOW_A3SFILE = """
dev {{
  proxy_port = 1  # overridden by A3S_PROXY_PORT
}}

service "slow" {{
  cmd  = "exec {python} server.py"
  port = {port}
  env  = {{ DELAY = "4" }}
}}
"""


def test_a_request_during_a_slow_start_is_held_until_the_service_is_ready(tmp_path: Path) -> None:
    """The proxy's port is open from the start of `a3s up`, before a slow service is ready,
    and a browser's request is held until the service answers instead of being refused."""
    write_http_service(tmp_path)
    port, proxy = free_port(), free_port()
    (tmp_path / "A3sfile.hcl").write_text(SLOW_A3SFILE.format(python=sys.executable, port=port))
    proc = start_a3s(tmp_path, "up", "--no-watch", env={**os.environ, "A3S_PROXY_PORT": str(proxy)})
    try:
        wait_until(lambda: port_open(proxy) or proc.poll() is not None, timeout=30, message="the proxy port")
        assert proc.poll() is None
        assert not port_open(port), "the service was already up: this test needs a slower start"
        status, text = fetch(proxy, "slow.localhost")
        assert status == 200 and text.startswith("hello from slow")
    finally:
        stop_a3s(proc)
