"""Telling the truth (SPEC §16): what `status` says is what the proxy, the dashboard and the
error page say; a3s's own probe requests do not bury the user's lines. Real `up -d`
supervisors, the real shared proxy, real HTTP."""

from __future__ import annotations

import http.client
import json
import re
import socket
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support import free_port, wait_until
from support_control import SERVICE, Stack, proxied_stack, service_block, stack_in

pytestmark = pytest.mark.timeout(120)

# /health answers with the code written in health.txt (200 until the test says otherwise);
# every request is logged as an access line, the way uvicorn does.
FLIPPING = textwrap.dedent(
    """
    import os, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from pathlib import Path

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            code = int(Path("health.txt").read_text()) if self.path == "/health" else 200
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            print(f'127.0.0.1 - "GET {self.path} HTTP/1.1" {code}', flush=True)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
    """
)

A3SFILE = """
dev {{
  name = "truth"
  stop_timeout = "3s"
}}
service "api" {{
  cmd  = "exec {python} server.py"
  port = "auto"
  health {{
    path     = "/health"
    interval = "200ms"
    retries  = 100
  }}
}}
"""


@contextmanager
def flipping_stack(tmp_path: Path) -> Iterator[tuple[Stack, int]]:
    folder = tmp_path / "truth"
    folder.mkdir()
    (folder / "server.py").write_text(FLIPPING)
    (folder / "health.txt").write_text("200")
    (folder / "A3sfile.hcl").write_text(A3SFILE.format(python=sys.executable))
    with proxied_stack(folder) as (st, proxy):
        yield st, proxy


def request(port: int, path: str, host: str = "a3s.localhost", token: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": f"{host}:{port}", **({"X-A3S-Token": token} if token else {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def proxy_probe(proxy: int) -> str | None:
    rows = json.loads(request(proxy, "/api/services")[1])
    return next(r["probe"] for r in rows if r["name"] == "api")


def test_a_changed_probe_result_reaches_status_the_dashboard_and_its_stream_within_a_second(tmp_path: Path) -> None:
    """With /health turning 500, `status` said `GET /health → 500` while the dashboard kept the
    last result a state change had carried: the probe text travels on its own now."""
    with flipping_stack(tmp_path) as (st, proxy):
        wait_until(lambda: proxy_probe(proxy) == "GET /health → 200", timeout=10, message="the first result")
        events = socket.create_connection(("127.0.0.1", proxy), timeout=10)
        events.sendall(f"GET /api/events HTTP/1.1\r\nHost: a3s.localhost:{proxy}\r\n\r\n".encode())
        received = b""
        while b"event: projects" not in received:
            received += events.recv(65536)

        (st.folder / "health.txt").write_text("500")
        wait_until(lambda: st.status()["api"]["probe"] == "GET /health → 500", timeout=10, message="status")
        said_at = time.monotonic()
        wait_until(lambda: proxy_probe(proxy) == "GET /health → 500", timeout=1.0, message="the dashboard's API")
        while time.monotonic() - said_at < 1.0:
            received += events.recv(65536)
            probes = [json.loads(d)["status"]["probe"] for d in re.findall(rb"event: state\ndata: (.*)\n", received)]
            if "GET /health → 500" in probes:
                break
        else:
            raise AssertionError("no state event carried the new probe result within 1 s")
        events.close()
        assert st.status()["api"]["state"] == "running"  # 100 retries: no state change carried it


def test_the_dashboards_logs_hide_a3s_probe_requests_unless_asked(tmp_path: Path) -> None:
    with flipping_stack(tmp_path) as (_, proxy):
        page = request(proxy, "/")[1]
        token = page.split(b'name="a3s-token" content="', 1)[1].split(b'"', 1)[0].decode()

        def history(query: str) -> bytes:
            return request(proxy, f"/api/truth/api/logs?{query}", token=token)[1]

        request(proxy, "/mine", host="api.truth.localhost")
        wait_until(lambda: b"GET /mine" in history("n=500&probes=1"), timeout=10,
                   message="the user's request in the history")
        everything = [line["text"] for line in json.loads(history("n=500&probes=1"))]
        shown = [line["text"] for line in json.loads(history("n=500"))]
        assert any("GET /health" in text for text in everything), "the probe's requests are in the file"
        assert not any("GET /health" in text for text in shown)
        assert any("GET /mine" in text for text in shown)


# ---------------------------------------------------------------------------- what up -d, down and status say


def test_up_d_names_every_failure_and_down_only_what_it_stopped(tmp_path: Path) -> None:
    """Two tasks fail; `web` waits behind one of them and never starts: `up -d` names both
    failures, `status` says why web is pending, `down` does not claim to have stopped web."""
    blocks = [
        'dev {\n  proxy_port = 0\n  stop_timeout = "3s"\n}\n',
        service_block("migrate", "echo migrating; exit 3", extra="oneshot = true"),
        service_block("seed", "echo seeding; exit 4", extra="oneshot = true"),
        service_block("api", f"exec {sys.executable} server.py", port=free_port()),
        service_block("web", f"exec {sys.executable} server.py", port=free_port(), depends_on=["migrate"]),
    ]
    (tmp_path / "server.py").write_text(SERVICE)
    (tmp_path / "A3sfile.hcl").write_text("\n".join(blocks))
    with stack_in(tmp_path) as st:
        result = st.a3s("up", "-d")
        assert result.code == 1
        assert "a3s: migrate failed: exit code 3" in result.err and "a3s: seed failed: exit code 4" in result.err
        assert "migrating" in result.err and "seeding" in result.err  # each one's last lines
        rows = st.status()
        assert rows["web"]["state"] == "pending" and rows["api"]["state"] == "running"
        table = st.a3s("status").out
        web_line = next(line for line in table.splitlines() if line.startswith("web "))
        assert "dependency migrate failed" in web_line, table
        down = st.a3s("down")
        assert down.code == 0 and down.out.strip() == "a3s: stopped api", down.out


def test_a_port_held_by_a_service_of_another_project_names_that_project_and_service(tmp_path: Path) -> None:
    port = free_port()
    notes, shop = tmp_path / "notes", tmp_path / "shop"
    for folder in (notes, shop):
        folder.mkdir()
        (folder / "server.py").write_text(SERVICE)
        (folder / "A3sfile.hcl").write_text(
            'dev {\n  proxy_port = 0\n  stop_timeout = "3s"\n}\n'
            + service_block("api", f"exec {sys.executable} server.py", port=port)
        )
    with stack_in(notes) as first, stack_in(shop) as second:
        assert first.a3s("up", "-d").code == 0
        pid = first.status()["api"]["pid"]
        refused = second.a3s("up", "-d")
        assert refused.code == 1
        assert f"port {port} is already in use by api of project notes (pid {pid})" in refused.err, refused.err


# ---------------------------------------------------------------------------- a changed A3sfile (SPEC §16)


def _block(name: str, port: int, *, depends_on: tuple[str, ...] = (), env: str = "") -> str:
    extra = f'env = {{ RECORD = "r"{env} }}'
    return service_block(name, f"exec {sys.executable} server.py", port=port, depends_on=depends_on, extra=extra)


def test_up_applies_a_changed_a3sfile_to_the_running_stack_and_touches_nothing_else(tmp_path: Path) -> None:
    folder = tmp_path / "edit"
    folder.mkdir()
    (folder / "server.py").write_text(SERVICE)
    proxy = free_port()
    api_port, web_port, extra_port, moved_port = free_port(), free_port(), free_port(), free_port()
    head = 'dev {\n  name = "edit"\n  stop_timeout = "3s"\n}\n'
    a3sfile = folder / "A3sfile.hcl"
    a3sfile.write_text(head + _block("api", api_port) + _block("web", web_port, depends_on=("api",)))
    with stack_in(folder, {"A3S_PROXY_PORT": str(proxy)}) as st:
        assert st.a3s("up", "-d").code == 0
        pids = {n: r["pid"] for n, r in st.status().items()}

        # added: started, and routed by the proxy; nothing else touched
        a3sfile.write_text(a3sfile.read_text() + _block("extra", extra_port))
        assert "changed since the stack applied it" in st.a3s("status").err
        result = st.a3s("up", "-d")
        assert result.code == 0, result.out + result.err
        assert "a3s: extra: new in the A3sfile, starting it" in result.out
        rows = st.status()
        assert rows["extra"]["state"] == "running" and {n: rows[n]["pid"] for n in pids} == pids
        assert "changed since" not in st.a3s("status").err
        wait_until(lambda: request(proxy, "/", host="extra.edit.localhost")[0] == 200, timeout=10,
                   message="the new service through the proxy")

        # changed env: that service restarts, its dependency does not
        a3sfile.write_text(a3sfile.read_text().replace(_block("web", web_port, depends_on=("api",)),
                                                       _block("web", web_port, depends_on=("api",), env=', COLOR = "blue"')))
        result = st.a3s("up", "-d")
        assert "a3s: web: changed (env), restarting it" in result.out, result.out
        rows = st.status()
        assert rows["web"]["pid"] != pids["web"] and rows["api"]["pid"] == pids["api"]
        assert rows["extra"]["state"] == "running"
        pids = {n: r["pid"] for n, r in rows.items()}

        # a moved port: the service and its dependent (whose A3S_API_URL changed) restart
        a3sfile.write_text(a3sfile.read_text().replace(f"port = {api_port}", f"port = {moved_port}"))
        result = st.a3s("up", "-d")
        assert "a3s: api: changed (port), restarting it" in result.out
        assert "a3s: web: a dependency's address changed, restarting it" in result.out
        rows = st.status()
        assert rows["api"]["port"] == moved_port and rows["api"]["pid"] != pids["api"]
        assert rows["web"]["pid"] != pids["web"] and rows["extra"]["pid"] == pids["extra"]
        pids = {n: r["pid"] for n, r in rows.items()}

        # removed: stopped and gone
        a3sfile.write_text(a3sfile.read_text().replace(_block("extra", extra_port), ""))
        result = st.a3s("up", "-d")
        assert "a3s: extra: removed from the A3sfile, stopping it" in result.out
        rows = st.status()
        assert "extra" not in rows and {n: rows[n]["pid"] for n in ("api", "web")} == {n: pids[n] for n in ("api", "web")}
        wait_until(lambda: not _listening(extra_port), timeout=10, message="the removed service's process gone")

        # invalid: the errors, exit 1, nothing touched
        a3sfile.write_text(a3sfile.read_text() + 'service "broken" {\n  prot = 1\n}\n')
        result = st.a3s("up", "-d")
        assert result.code == 1 and 'unknown attribute "prot"' in result.err and "has no cmd" in result.err
        assert {n: r["pid"] for n, r in st.status().items()} == {n: pids[n] for n in ("api", "web")}


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_up_d_succeeds_when_an_always_service_exits_0_after_it_was_ready(tmp_path: Path) -> None:
    """SPEC §16: `always failed: exit code 0, restarting in 1s` and exit 1, although every
    service became healthy (an always-service exiting 0 right after it was ready, beside a
    slower one)."""
    (tmp_path / "server.py").write_text(SERVICE)
    blocks = [
        'dev {\n  proxy_port = 0\n  stop_timeout = "3s"\n}\n',
        service_block("always", "echo up; sleep 0.5; exit 0", extra='restart = "always"'),
        service_block("slow", f"sleep 1.5; exec {sys.executable} server.py", port=free_port()),
    ]
    (tmp_path / "A3sfile.hcl").write_text("\n".join(blocks))
    with stack_in(tmp_path) as st:
        result = st.a3s("up", "-d")
        assert result.code == 0, result.out + result.err
        assert "failed" not in result.err
        wait_until(lambda: "always exited (exit code 0), restarting in" in st.a3s("logs", "a3s").out, timeout=10,
                   message="the clean exit said as an exit")


WRITES_ITS_OWN_WATCH_PATH = """
dev {{ stop_timeout = "2s" }}
service "writer" {{
  cmd = "exec {python} -c 'import pathlib, time; time.sleep(0.5); pathlib.Path(\\"data.json\\").write_text(str(time.time())); time.sleep(600)'"
  watch {{
    paths    = ["."]
    debounce = "100ms"
  }}
}}
"""


def test_status_repeats_the_restart_loop_warning_while_the_loop_goes_on(tmp_path: Path) -> None:
    """Issue 21: a service writing into its own watched folder restarted 8 times in 15 s with
    RESTARTS 0 and no warning where a developer looks after `up -d`: the warning went to the
    stream only, and `a3s logs writer` holds writer's lines only. `status` says it now."""
    from a3s_dev.agents import tools

    (tmp_path / "A3sfile.hcl").write_text(WRITES_ITS_OWN_WATCH_PATH.format(python=sys.executable))
    with stack_in(tmp_path) as st:
        assert st.a3s("up", "-d", "--no-proxy").code == 0
        (tmp_path / "data.json").write_text("edited")  # the first change; the service's own follow

        def warned() -> str | None:
            err = st.a3s("status").err
            return err if "restarted 6 times" in err else None

        said = wait_until(warned, timeout=40, message="the warning from status")
        assert 'data.json' in said and 'add `ignore = ["data.json"]` to its watch block' in said
        listed = st.a3s("status", "--json")
        assert json.loads(listed.out)[0]["restarts"] == 0 and "restarted 6 times" in listed.err
        assert "restarted 6 times" in tools.status(st.a3sfile)["warnings"]["writer"]
        assert st.a3s("down").code == 0
