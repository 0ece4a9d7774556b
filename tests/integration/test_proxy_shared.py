"""One shared proxy for every project (SPEC §6): real `a3s up -d` supervisors, the real proxy
process, real HTTP through it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from support import free_port, holds, pid_alive, port_open, wait_until
from support_control import SERVICE, Stack, stack_in

from a3s_dev.link import proxy_process
from a3s_dev.link.protocol import PROTOCOL, encode

pytestmark = pytest.mark.timeout(120)

A3SFILE = """
dev {{
  {name}stop_timeout = "3s"
}}
service "web" {{
  cmd  = "exec {python} server.py"
  port = "auto"
}}
service "api" {{
  cmd  = "exec {python} server.py"
  port = "auto"
}}
"""


def fetch(port: int, host: str, path: str = "/") -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return 0, ""  # nothing listens (a proxy being replaced)


def project(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "server.py").write_text(SERVICE)
    (folder / "A3sfile.hcl").write_text(A3SFILE.format(python=sys.executable, name=f'name = "{name}"\n  '))
    return folder


@contextmanager
def projects(tmp_path: Path, *names: str) -> Iterator[tuple[int, dict[str, Stack]]]:
    """`a3s up -d` in one folder per name, every one on the same (free) proxy port."""
    proxy = free_port()
    with ExitStack() as stack:
        stacks = {
            name: stack.enter_context(stack_in(project(tmp_path / name, name), {"A3S_PROXY_PORT": str(proxy)}))
            for name in names
        }
        for name, st in stacks.items():
            result = st.a3s("up", "-d")
            assert result.code == 0, (name, result.out, result.err)
        yield proxy, stacks


def proxy_pid(port: int) -> int:
    pid = proxy_process.running_pid(port)
    assert pid is not None, "no proxy answers"
    return pid


def test_two_projects_share_one_proxy_and_each_is_reached_by_name(tmp_path: Path) -> None:
    with projects(tmp_path, "shop", "blog") as (proxy, stacks):
        rows = {name: st.status() for name, st in stacks.items()}
        for name in stacks:
            assert rows[name]["web"]["url"] == f"http://web.{name}.localhost:{proxy}"
            assert rows[name]["web"]["project"] == name
            status, text = fetch(proxy, f"web.{name}.localhost:{proxy}")
            assert (status, text.split()[0]) == (200, "web")
            assert text.split()[1] == str(rows[name]["web"]["pid"])  # that project's process
        # automatic ports: distinct, and kept by the services
        ports = {rows[n][s]["port"] for n in rows for s in ("web", "api")}
        assert len(ports) == 4
        # a subdomain in both projects: a page with both choices; in none: 404
        status, text = fetch(proxy, "web.localhost")
        assert status == 409
        assert f"http://web.shop.localhost:{proxy}/" in text and f"http://web.blog.localhost:{proxy}/" in text
        assert fetch(proxy, "nope.localhost")[0] == 404
        # the index lists both projects
        status, text = fetch(proxy, f"localhost:{proxy}")
        assert status == 200 and 'data-project="shop"' in text and 'data-project="blog"' in text
        # one proxy process for both
        assert proxy_pid(proxy) > 0
        out = (proxy_process.log_path(proxy)).read_text()
        assert out.count("serving http://localhost") == 1, out


def test_down_or_sigkill_of_one_project_leaves_the_other_served(tmp_path: Path) -> None:
    with projects(tmp_path, "shop", "blog", "docs") as (proxy, stacks):
        assert stacks["shop"].a3s("down").code == 0
        status, text = fetch(proxy, f"web.shop.localhost:{proxy}")
        assert status == 502 and "project shop is not running" in text
        assert fetch(proxy, f"web.blog.localhost:{proxy}")[0] == 200

        sup = stacks["blog"].supervisor_pid()
        assert sup is not None
        os.kill(sup, signal.SIGKILL)
        killed = time.monotonic()
        wait_until(lambda: "project blog is not running" in fetch(proxy, f"api.blog.localhost:{proxy}")[1],
                   timeout=5, message="blog's routes gone")
        assert time.monotonic() - killed < 1.0
        # docs is untouched, and now alone with a `web`: web.localhost is docs's
        status, text = fetch(proxy, f"web.localhost:{proxy}")
        assert status == 200 and text.startswith("web ")
        assert stacks["docs"].status()["web"]["restarts"] == 0


def test_a_killed_proxy_comes_back_and_every_project_registers_again(tmp_path: Path) -> None:
    with projects(tmp_path, "shop", "blog") as (proxy, stacks):
        before = {name: {s: r["pid"] for s, r in st.status().items()} for name, st in stacks.items()}
        old = proxy_pid(proxy)
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: not pid_alive(old), timeout=5, message="the proxy to die")
        for name in stacks:
            wait_until(lambda name=name: fetch(proxy, f"api.{name}.localhost:{proxy}")[0] == 200, timeout=10,
                       message=f"{name} served again")
        assert proxy_pid(proxy) != old
        after = {name: {s: r["pid"] for s, r in st.status().items()} for name, st in stacks.items()}
        assert after == before  # no service restarted
        log = (stacks["shop"].folder / ".a3s" / "logs" / "a3s.log").read_text()
        assert "registered with the proxy again" in log


def test_state_changes_reach_the_proxy_and_a_held_request_is_answered(tmp_path: Path) -> None:
    with projects(tmp_path, "shop") as (proxy, stacks):
        st = stacks["shop"]
        assert st.a3s("down", "web").code == 0
        status, text = fetch(proxy, f"web.shop.localhost:{proxy}")
        assert status == 502 and "web is stopped" in text
        assert "web got /" in text or "listening" in text  # the log tail, read from the project's logs
        # a request during a restart is held and answered by the new process
        restart = st.popen("restart", "api")
        try:
            status, text = fetch(proxy, f"api.shop.localhost:{proxy}")
        finally:
            restart.communicate(timeout=60)
        assert status == 200 and text.startswith("api ")


def test_the_proxy_exits_a_few_seconds_after_the_last_project_left(tmp_path: Path) -> None:
    with projects(tmp_path, "shop") as (proxy, stacks):
        pid = proxy_pid(proxy)
        assert stacks["shop"].a3s("down").code == 0
        holds(lambda: pid_alive(pid), 1.0, message="the proxy lingers a moment")
        wait_until(lambda: not pid_alive(pid), timeout=15, message="the proxy to exit")
        assert not port_open(proxy)
        assert not proxy_process.socket_path(proxy).exists()


def test_two_worktrees_of_one_repository_run_side_by_side_with_auto_ports(tmp_path: Path) -> None:
    """The same A3sfile in two checkouts, told apart by A3S_PROJECT (or their folder names)."""
    repo = project(tmp_path / "repo", "ignored")
    (repo / "A3sfile.hcl").write_text(A3SFILE.format(python=sys.executable, name=""))
    proxy = free_port()
    worktrees = {}
    for name in ("feature-a", "feature-b"):
        path = tmp_path / "worktrees" / name / "app"
        shutil.copytree(repo, path)
        worktrees[name] = path
    with ExitStack() as stack:
        stacks = {n: stack.enter_context(stack_in(p, {"A3S_PROXY_PORT": str(proxy), "A3S_PROJECT": n}))
                  for n, p in worktrees.items()}
        for st in stacks.values():
            assert st.a3s("up", "-d").code == 0
        pids = {n: st.status()["web"]["pid"] for n, st in stacks.items()}
        for name in stacks:
            status, text = fetch(proxy, f"web.{name}.localhost:{proxy}")
            assert status == 200 and text.split()[1] == str(pids[name])
        # the same name twice (no A3S_PROJECT: both folders are called "app") is refused
        third = tmp_path / "other" / "app"
        shutil.copytree(repo, third)
        with stack_in(third, {"A3S_PROXY_PORT": str(proxy), "A3S_PROJECT": "feature-a"}) as st:
            result = st.a3s("up", "-d")
            assert result.code == 1
            assert f'project "feature-a" is already running from {worktrees["feature-a"] / "A3sfile.hcl"}' in (
                result.out + result.err
            )
            assert "A3S_PROJECT=feature-a-2" in result.out + result.err


def test_a_proxy_port_of_another_program_is_an_error_naming_it_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with stack_in(project(tmp_path / "shop", "shop"), {"A3S_PROXY_PORT": str(port)}) as st:
            result = st.a3s("up", "-d")
            assert result.code == 1
            assert f"proxy: port {port} is already in use by pid {os.getpid()}" in result.out + result.err
            assert "Traceback" not in result.out + result.err
            assert not list((st.folder / ".a3s" / "logs").glob("[!a]*.log"))  # nothing spawned


def registry_connection(port: int) -> socket.socket:
    sock = proxy_process.connect(port)
    assert sock is not None
    return sock


def read_answer(sock: socket.socket) -> dict[str, object]:
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = sock.recv(65536)
        except ConnectionError:
            return {}
        if not chunk:
            return {}
        data += chunk
    answer: dict[str, object] = json.loads(data)
    return answer


def test_a_malformed_registration_is_refused_and_logged_and_the_proxy_keeps_serving(tmp_path: Path) -> None:
    with projects(tmp_path, "shop") as (proxy, _):
        hostile = [
            b"not json\n",
            b"[1, 2]\n",
            b'{"type": "register", "protocol": 1}\n',
            encode({"type": "register", "protocol": PROTOCOL, "project": "Bad Name!", "a3sfile": "/x/A3sfile.hcl",
                    "logs": "/x/.a3s/logs", "pid": 1, "services": [], "statuses": []}),
            encode({"type": "register", "protocol": PROTOCOL, "project": "evil", "a3sfile": "/x/A3sfile.hcl",
                    "logs": "/x/.a3s/logs", "pid": 1, "services": [{"name": "web", "port": 99999}], "statuses": []}),
            b"[" * 100000 + b"\n",
            b"x" * (2 << 20) + b"\n",
        ]
        for message in hostile:
            with registry_connection(proxy) as sock:
                with contextlib.suppress(ConnectionError):  # refused before it was all sent
                    sock.sendall(message)
                answer = read_answer(sock)
                assert answer.get("type") in ("refused", None), answer
        # a registered project sending garbage later loses only its own registration
        with registry_connection(proxy) as sock:
            sock.sendall(encode({"type": "register", "protocol": PROTOCOL, "project": "evil",
                                 "a3sfile": "/x/A3sfile.hcl", "logs": "/x/.a3s/logs", "pid": 1,
                                 "services": [{"name": "web", "port": 1}], "statuses": []}))
            assert read_answer(sock)["type"] == "registered"
            sock.sendall(b'{"type": "status", "status": {"name": "web", "state": "exploded"}}\n')
            assert read_answer(sock)["type"] == "refused"
        wait_until(lambda: fetch(proxy, f"web.evil.localhost:{proxy}")[0] == 502, timeout=5, message="evil gone")
        status, text = fetch(proxy, f"web.shop.localhost:{proxy}")
        assert status == 200 and text.startswith("web ")
        log = proxy_process.log_path(proxy).read_text()
        assert log.count("refused a registration message") >= len(hostile), log
        assert "Traceback" not in log


def test_another_user_cannot_reach_the_registration_socket(tmp_path: Path) -> None:
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as another user")
    with projects(tmp_path, "shop") as (proxy, _):
        path = proxy_process.socket_path(proxy)
        assert (os.stat(path).st_mode & 0o777) == 0o600
        probe = "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])"
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", probe, str(path)],
            capture_output=True, text=True, timeout=30, check=False,
        )
        assert result.returncode != 0 and "PermissionError" in result.stderr, result.stderr


OTHER_USER_CLIENT = """
import http.client, json, sys
port = int(sys.argv[1])
answers = []
for method, host, path in json.loads(sys.argv[2]):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, headers={"Host": host, "Origin": f"http://a3s.localhost:{port}", "X-A3S-Token": "x"})
    reply = conn.getresponse()
    answers.append([reply.status, reply.read().decode(errors="replace")])
    conn.close()
print(json.dumps(answers))
"""


def test_another_user_gets_403_for_everything_and_learns_nothing(tmp_path: Path) -> None:
    """Issue 21: loopback TCP reaches every user of the machine. Another user read the
    dashboard (logs included), listed every route and restarted services through it."""
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as another user")
    with projects(tmp_path, "shop") as (proxy, stacks):
        pid = stacks["shop"].status()["web"]["pid"]
        asks = [
            ["GET", f"a3s.localhost:{proxy}", "/"],
            ["GET", f"a3s.localhost:{proxy}", "/api/services"],
            ["GET", f"a3s.localhost:{proxy}", "/api/shop/web/logs?n=50"],
            ["POST", f"a3s.localhost:{proxy}", "/api/shop/web/restart"],
            ["GET", f"nope.localhost:{proxy}", "/"],  # the 404 page lists every route
            ["GET", f"web.shop.localhost:{proxy}", "/"],
        ]
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", OTHER_USER_CLIENT,
             str(proxy), json.dumps(asks)],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert result.returncode == 0, result.stderr
        answers = json.loads(result.stdout)
        assert [status for status, _ in answers] == [403] * len(asks)
        assert all(text == "this a3s proxy serves the user who runs it only\n" for _, text in answers)
        holds(lambda: stacks["shop"].status()["web"]["pid"] == pid, 1.0, message="web was not restarted")
        assert fetch(proxy, f"a3s.localhost:{proxy}", "/api/services")[0] == 200  # its own user is served


def test_twenty_projects_coming_and_going_leave_no_route_and_no_descriptor_behind(tmp_path: Path) -> None:
    with projects(tmp_path, "shop") as (proxy, _):
        pid = proxy_pid(proxy)

        def fds() -> int:
            return len(os.listdir(f"/proc/{pid}/fd"))

        fetch(proxy, f"web.shop.localhost:{proxy}")
        baseline = fds()
        for round_ in range(3):
            socks = []
            for i in range(20):
                sock = registry_connection(proxy)
                sock.sendall(encode({"type": "register", "protocol": PROTOCOL, "project": f"p{i}",
                                     "a3sfile": f"/x/p{i}/A3sfile.hcl", "logs": f"/x/p{i}/.a3s/logs", "pid": 1,
                                     "services": [{"name": "web", "port": 1}],
                                     "statuses": [{"name": "web", "state": "running"}]}))
                assert read_answer(sock)["type"] == "registered"
                socks.append(sock)
            _, text = fetch(proxy, f"localhost:{proxy}")
            assert all(f'<section class="project" data-project="p{i}"' in text for i in range(20)), round_
            for sock in socks:
                sock.close()
            wait_until(lambda: 'data-project="p' not in fetch(proxy, f"localhost:{proxy}")[1], timeout=5,
                       message="every route gone")
        assert all(fetch(proxy, f"web.p{i}.localhost:{proxy}")[0] == 502 for i in range(20))
        wait_until(lambda: fds() <= baseline, timeout=5, message=f"the proxy's descriptors back to {baseline}")


def test_a3s_proxy_runs_in_the_foreground_and_a3s_proxy_stop_ends_it(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "A3S_PROXY_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "a3s_dev", "proxy"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_until(lambda: port_open(port) and proxy_process.running_pid(port) is not None, timeout=20,
                   message="the proxy to serve")
        assert fetch(port, "localhost")[0] == 200
        again = subprocess.run([sys.executable, "-m", "a3s_dev", "proxy"], env=env, capture_output=True,
                               text=True, timeout=30, check=False)
        assert again.returncode == 1 and f"a proxy already runs on port {port}" in again.stderr
        assert f"stop it with `a3s proxy stop --port {port}`" in again.stderr
        assert proxy_process.pid_path(port).exists()
        # a project registers with it, and leaving does not end a foreground proxy
        with stack_in(project(tmp_path / "shop", "shop"), {"A3S_PROXY_PORT": str(port)}) as st:
            assert st.a3s("up", "-d").code == 0
            assert fetch(port, f"web.shop.localhost:{port}")[0] == 200
            assert st.a3s("down").code == 0
        holds(lambda: proc.poll() is None, 4.0, message="a foreground proxy stays")
        stopped = subprocess.run([sys.executable, "-m", "a3s_dev", "proxy", "stop"], env=env, capture_output=True,
                                 text=True, timeout=30, check=False)
        assert stopped.returncode == 0 and f"stopped the proxy on port {port}" in stopped.stdout
        assert proc.wait(timeout=10) == 0
        assert not port_open(port)
        assert not proxy_process.pid_path(port).exists(), "the pid file of a proxy that exited"
        none = subprocess.run([sys.executable, "-m", "a3s_dev", "proxy", "stop"], env=env, capture_output=True,
                              text=True, timeout=30, check=False)
        assert none.returncode == 0 and f"no proxy is running on port {port}" in none.stdout
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)


def test_after_a3s_proxy_stop_the_next_change_brings_the_proxy_back(tmp_path: Path) -> None:
    with projects(tmp_path, "shop", "blog") as (proxy, stacks):
        st = stacks["shop"]
        pid = proxy_pid(proxy)
        env = {**os.environ, "A3S_PROXY_PORT": str(proxy)}
        stopped = subprocess.run([sys.executable, "-m", "a3s_dev", "proxy", "stop"], env=env, capture_output=True,
                                 text=True, timeout=30, check=False)
        assert stopped.returncode == 0 and f"(pid {pid})" in stopped.stdout
        assert not pid_alive(pid) and not port_open(proxy)
        # the supervisor does not fight the stop ...
        holds(lambda: not port_open(proxy), 1.0, message="the proxy stays stopped")
        # ... until something changes: then the proxy is started again, and serves the project
        assert st.a3s("restart", "api").code == 0
        wait_until(lambda: fetch(proxy, f"api.shop.localhost:{proxy}")[0] == 200, timeout=15,
                   message="the proxy back with the project's routes")
        # issue 21: every project comes back with it, not only the one whose state changed
        wait_until(lambda: fetch(proxy, f"web.blog.localhost:{proxy}")[0] == 200, timeout=5,
                   message="the other project registered with the proxy that came back")
        log = (st.folder / ".a3s" / "logs" / "a3s.log").read_text()
        assert "the proxy was stopped (a3s proxy stop)" in log
        assert "Traceback" not in proxy_process.log_path(proxy).read_text()


def test_idle_connections_do_not_lock_everyone_out_and_running_out_is_said_once(tmp_path: Path) -> None:
    """Issue 21: a proxy started from a shell kept its soft limit of open files (1,024 there),
    so a thousand idle connections from one process locked every project out, and asyncio
    logged each failed accept with its traceback (megabytes a second)."""
    import resource

    if shutil.which("prlimit") is None:
        pytest.skip("needs prlimit (util-linux)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1024:
        pytest.skip(f"the hard limit on open files here is {hard}")
    with ExitStack() as stack:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # what `a3s up` inherits
        try:
            proxy, _ = stack.enter_context(projects(tmp_path, "shop"))
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        pid = proxy_pid(proxy)
        limits = Path(f"/proc/{pid}/limits").read_text()
        row = next(line.split()[3:5] for line in limits.splitlines() if line.startswith("Max open files"))
        assert row[0] == row[1], f"the proxy's soft limit on open files is not its hard one: {row}"

        idle = [stack.enter_context(socket.create_connection(("127.0.0.1", proxy))) for _ in range(400)]
        assert fetch(proxy, f"web.shop.localhost:{proxy}")[0] == 200

        # now truly out of descriptors: said once, not once per try
        subprocess.run(["prlimit", "--pid", str(pid), "--nofile=64:64"], check=True)
        log = proxy_process.log_path(proxy)
        before = log.stat().st_size
        waiting = stack.enter_context(socket.create_connection(("127.0.0.1", proxy)))

        def said() -> str:
            with log.open("rb") as f:
                f.seek(before)
                return f.read().decode(errors="replace")

        wait_until(lambda: "cannot accept connections" in said(), timeout=10, message="running out said")
        holds(lambda: said().count("cannot accept connections") == 1 and "Traceback" not in said(), 2.5,
              message="said once, with no traceback")
        assert len(said()) < 1024

        # and it serves again once the descriptors are back
        for sock in [*idle, waiting]:
            sock.close()
        wait_until(lambda: fetch(proxy, f"web.shop.localhost:{proxy}")[0] == 200, timeout=10,
                   message="served again")


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the other end closed `sock` (readable, and nothing to read), without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


def test_past_its_cap_the_proxy_closes_the_oldest_idle_connections_first(tmp_path: Path) -> None:
    """Issue 21: one local process holding connections open (silent ones, or ones it asked a page
    on and kept) has its oldest closed once a quarter of the proxy's open files limit is open;
    the newest stay, every project stays reachable, and it is said once."""
    if shutil.which("prlimit") is None:
        pytest.skip("needs prlimit (util-linux)")
    with ExitStack() as stack:
        proxy, _ = stack.enter_context(projects(tmp_path, "shop"))
        pid = proxy_pid(proxy)
        subprocess.run(["prlimit", "--pid", str(pid), "--nofile=1024:1024"], check=True)  # a cap of 256
        log = proxy_process.log_path(proxy)
        before = log.stat().st_size

        # the oldest of all: a request whose body is still coming, which is never cut
        busy = stack.enter_context(socket.create_connection(("127.0.0.1", proxy)))
        busy.sendall(f"POST / HTTP/1.1\r\nHost: web.shop.localhost:{proxy}\r\nContent-Length: 10\r\n\r\n12345".encode())
        # 300 connections that each asked for a page (aiohttp's path) and were kept
        kept = []
        for _ in range(300):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", proxy)))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: nope.localhost\r\n\r\n")
            sock.settimeout(5)
            assert sock.recv(65536).startswith(b"HTTP/1.1 404"), len(kept)
            kept.append(sock)
        wait_until(lambda: closed_by_peer(kept[30]), timeout=10, message="the oldest kept ones closed")
        closed = [closed_by_peer(s) for s in kept]
        first_open = closed.index(False)
        assert 40 <= first_open <= 50 and not any(closed[first_open:]), closed

        # then 100 silent ones: the oldest kept ones go next, the silent ones stay
        silent = [stack.enter_context(socket.create_connection(("127.0.0.1", proxy))) for _ in range(100)]
        wait_until(lambda: closed_by_peer(kept[first_open + 90]), timeout=10, message="older ones closed for newer")
        holds(lambda: not any(closed_by_peer(s) for s in silent), 1.0, message="the newest kept open")
        assert fetch(proxy, f"web.shop.localhost:{proxy}")[0] == 200
        busy.sendall(b"67890")
        busy.settimeout(10)
        answer = busy.recv(65536)
        assert answer.startswith(b"HTTP/1.1 "), f"the request in flight was cut: {answer!r}"
        descriptors = len(os.listdir(f"/proc/{pid}/fd"))
        assert descriptors < 300, f"the proxy holds {descriptors} descriptors"

        with log.open("rb") as f:
            f.seek(before)
            said = f.read().decode(errors="replace")
        assert said.count("closing idle connections: more than 256 open") == 1, said
        assert "Traceback" not in said


LOOPING_SERVICE = """
import http.server, os, urllib.request

PROXY = int(os.environ["LOOP_PROXY_PORT"])


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open("hits.txt", "a") as f:
            f.write("hit\\n")
        # a naive dev-server proxy pointed at its own subdomain: every header passed on
        skip = {"connection", "keep-alive", "transfer-encoding", "content-length"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
        request = urllib.request.Request(f"http://127.0.0.1:{PROXY}{self.path}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=20) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as err:
            status, body = err.code, err.read()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def test_a_service_that_sends_requests_back_to_itself_gets_508_after_a_few_hops(tmp_path: Path) -> None:
    """Issue 21: one request to a service proxying to its own host turned into thousands (18,000
    descriptors in the proxy, 9,000 threads in the service) until the service's own timeout."""
    folder = tmp_path / "loop"
    folder.mkdir()
    (folder / "server.py").write_text(LOOPING_SERVICE)
    proxy = free_port()
    (folder / "A3sfile.hcl").write_text(
        f'service "web" {{\n  cmd = "exec {sys.executable} server.py"\n  port = "auto"\n'
        f'  env = {{ LOOP_PROXY_PORT = "{proxy}" }}\n}}\n'
    )
    with stack_in(folder, {"A3S_PROXY_PORT": str(proxy)}) as st:
        assert st.a3s("up", "-d").code == 0
        started = time.monotonic()
        status, body = fetch(proxy, f"web.loop.localhost:{proxy}")
        assert time.monotonic() - started < 5
        assert status == 508 and "web loops back to itself" in body
        hits = folder / "hits.txt"
        holds(lambda: len(hits.read_text().splitlines()) <= 8, 1.0, message="the loop ended")
        # the proxy itself is fine: no descriptor or thread storm left behind
        assert fetch(proxy, f"a3s.localhost:{proxy}", "/api/services")[0] == 200


def test_a_second_registration_of_a_running_project_is_refused_and_the_first_keeps_its_routes(tmp_path: Path) -> None:
    """Issue 21: a registration with the same name and A3sfile replaced the live project, and
    when it left, the real project stayed offline for good."""
    with projects(tmp_path, "shop") as (proxy, stacks):
        a3sfile = stacks["shop"].a3sfile.resolve()
        with registry_connection(proxy) as sock:
            sock.sendall(encode({"type": "register", "protocol": PROTOCOL, "project": "shop", "a3sfile": str(a3sfile),
                                 "logs": str(a3sfile.parent / ".a3s" / "logs"), "pid": os.getpid(),
                                 "services": [{"name": "web", "port": 1}], "statuses": []}))
            answer = read_answer(sock)
        assert answer["type"] == "refused"
        assert "is registered by its running supervisor" in str(answer["message"])
        holds(lambda: fetch(proxy, f"web.shop.localhost:{proxy}")[0] == 200, 1.0, message="shop kept its routes")


def test_a_connection_that_never_registers_does_not_hold_unknown_hosts(tmp_path: Path) -> None:
    """Issue 21: one silent connection to the registration socket made every unknown host's
    answer wait 60 s (the proxy waits briefly for registrations on their way)."""
    with projects(tmp_path, "shop") as (proxy, _), registry_connection(proxy):
        started = time.monotonic()
        status, _ = fetch(proxy, f"nobody.localhost:{proxy}")
        assert status == 404 and time.monotonic() - started < 5


def test_a3s_proxy_stop_ends_a_paused_proxy_and_never_says_stopped_for_one_still_there(tmp_path: Path) -> None:
    """Issue 21: `a3s proxy stop` said "stopped" for a proxy paused with SIGSTOP, which went on
    holding its port."""
    with projects(tmp_path, "shop") as (proxy, stacks):
        pid = proxy_pid(proxy)
        os.kill(pid, signal.SIGSTOP)
        try:
            stopped = stacks["shop"].a3s("proxy", "stop")
            assert stopped.code == 0 and f"stopped the proxy on port {proxy} (pid {pid})" in stopped.out
            wait_until(lambda: not pid_alive(pid), timeout=5, message="the paused proxy gone")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # a paused proxy would outlive the test

    # a "proxy" that takes the stop and does not go: said, with how to end it
    port = free_port()
    holder = subprocess.Popen(["sleep", "60"])
    server = socket.socket(socket.AF_UNIX)
    try:
        proxy_process.socket_path(port).parent.mkdir(parents=True, exist_ok=True)
        server.bind(str(proxy_process.socket_path(port)))
        server.listen()
        proxy_process.pid_path(port).write_text(f"{holder.pid}\n")
        from a3s_dev.errors import RuntimeFailure

        with pytest.raises(RuntimeFailure, match=rf"did not stop within 1 s; end it with: kill {holder.pid}"):
            proxy_process.stop(port, timeout=1.0)
    finally:
        server.close()
        proxy_process.socket_path(port).unlink(missing_ok=True)
        proxy_process.pid_path(port).unlink(missing_ok=True)
        holder.kill()
        holder.wait()
